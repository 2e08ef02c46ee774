//! RESP2 encoding of commands and parsing of replies straight from a read buffer.
//!
//! The parser borrows from the buffer and distinguishes "need more bytes" from "this is not
//! RESP", so a reader can keep appending to one buffer until a whole reply is there.

use std::fmt;

mod encode;
mod parse;
mod scan;

pub use encode::*;
pub use parse::*;
#[cfg(test)]
use scan::MAX_DEPTH;
pub use scan::*;

/// Why a buffer does not (yet) hold a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer ends inside a reply; read more and try again.
    Incomplete,
    /// The bytes at this offset are not RESP.
    Invalid { offset: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Incomplete => f.write_str("incomplete reply"),
            ParseError::Invalid { offset } => write!(f, "invalid RESP at byte {offset}"),
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Frame<'_>) {
        let (frame, used) = parse(input).expect("a whole reply");
        assert_eq!(frame, expected);
        assert_eq!(used, input.len());
        // Every strict prefix must ask for more bytes, never misparse.
        for cut in 0..input.len() {
            assert_eq!(
                parse(&input[..cut]),
                Err(ParseError::Incomplete),
                "prefix {cut}"
            );
        }
    }

    #[test]
    fn parses_each_kind_and_every_prefix_is_incomplete() {
        check(b"+PONG\r\n", Frame::Simple(b"PONG"));
        check(b"-ERR no\r\n", Frame::Error(b"ERR no"));
        check(b":-42\r\n", Frame::Integer(-42));
        check(b"$3\r\nabc\r\n", Frame::Bulk(Some(b"abc")));
        check(b"$0\r\n\r\n", Frame::Bulk(Some(b"")));
        check(b"$-1\r\n", Frame::Bulk(None));
        check(b"_\r\n", Frame::Bulk(None));
        check(b"*-1\r\n", Frame::Array(None));
        check(
            b"*2\r\n$1\r\na\r\n:7\r\n",
            Frame::Array(Some(vec![Frame::Bulk(Some(b"a")), Frame::Integer(7)])),
        );
        // A bulk string may contain CRLF.
        check(b"$4\r\n\r\n\r\n\r\n", Frame::Bulk(Some(b"\r\n\r\n")));
    }

    #[test]
    fn rejects_what_is_not_resp() {
        assert_eq!(parse(b"?x\r\n"), Err(ParseError::Invalid { offset: 0 }));
        assert_eq!(parse(b":x\r\n"), Err(ParseError::Invalid { offset: 0 }));
        assert_eq!(
            parse(b"$1\r\nab\r\n"),
            Err(ParseError::Invalid { offset: 5 })
        );
        assert_eq!(parse(b"+a\rb\r\n"), Err(ParseError::Invalid { offset: 2 }));
    }

    #[test]
    fn parses_back_to_back_replies_from_one_buffer() {
        let buf = b"+OK\r\n:1\r\n$2\r\nhi\r\n";
        let mut pos = 0;
        let mut frames = Vec::new();
        while pos < buf.len() {
            let (frame, used) = parse(&buf[pos..]).unwrap();
            frames.push(frame);
            pos += used;
        }
        assert_eq!(
            frames,
            vec![
                Frame::Simple(b"OK"),
                Frame::Integer(1),
                Frame::Bulk(Some(b"hi"))
            ]
        );
    }

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &["SET", "k", ""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let (frame, used) = parse(&out).unwrap();
        assert_eq!(used, out.len());
        assert!(matches!(frame, Frame::Array(Some(items)) if items.len() == 3));
    }

    fn check_scan(input: &[u8], expected: Reply) {
        assert_eq!(
            scan(input),
            Ok((expected, input.len())),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        // Split anywhere, the scanner asks for more rather than misreading.
        for cut in 0..input.len() {
            assert_eq!(
                scan(&input[..cut]),
                Err(ParseError::Incomplete),
                "prefix {cut}"
            );
        }
    }

    #[test]
    fn scans_resp2_and_resp3_replies_from_every_split() {
        check_scan(b"+OK\r\n", Reply::Scalar);
        check_scan(b":12\r\n", Reply::Scalar);
        check_scan(b",3.5\r\n", Reply::Scalar);
        check_scan(b"#t\r\n", Reply::Scalar);
        check_scan(b"-WRONGTYPE x\r\n", Reply::Error);
        check_scan(b"!3\r\nERR\r\n", Reply::Error);
        check_scan(b"$5\r\nhello\r\n", Reply::Bulk(5));
        check_scan(b"=7\r\ntxt:abc\r\n", Reply::Bulk(7));
        check_scan(b"$-1\r\n", Reply::Null);
        check_scan(b"_\r\n", Reply::Null);
        check_scan(b"*-1\r\n", Reply::Null);
        check_scan(b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", Reply::Aggregate(2));
        check_scan(b"%1\r\n+k\r\n$1\r\nv\r\n", Reply::Aggregate(2));
        check_scan(b"~2\r\n+a\r\n+b\r\n", Reply::Aggregate(2));
        check_scan(
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n",
            Reply::Push(3),
        );
        check_scan(b"|1\r\n+ttl\r\n:3\r\n$2\r\nhi\r\n", Reply::Bulk(2));
    }

    #[test]
    fn scan_agrees_with_parse_on_lengths() {
        let replies: [&[u8]; 4] = [
            b"+PONG\r\n",
            b"$3\r\nabc\r\n",
            b"*2\r\n:1\r\n$-1\r\n",
            b"-ERR x\r\n",
        ];
        let stream: Vec<u8> = replies.concat();
        let (mut a, mut b) = (0, 0);
        while a < stream.len() {
            a += scan(&stream[a..]).unwrap().1;
            b += parse(&stream[b..]).unwrap().1;
            assert_eq!(a, b);
        }
    }

    #[test]
    fn scan_refuses_garbage_and_runaway_nesting() {
        assert_eq!(scan(b"?\r\n"), Err(ParseError::Invalid { offset: 0 }));
        assert_eq!(
            scan(b"$2\r\nabc\r\n"),
            Err(ParseError::Invalid { offset: 6 })
        );
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(matches!(
            scan(deep.as_bytes()),
            Err(ParseError::Invalid { .. })
        ));
    }

    /// A small deterministic generator (xorshift), so the property test needs no crate and
    /// every failure is reproducible from its seed.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below
        }
    }

    fn random_reply(rng: &mut Xorshift, depth: u32, out: &mut Vec<u8>) {
        let kind = if depth > 2 { rng.next(5) } else { rng.next(7) };
        match kind {
            0 => out.extend_from_slice(b"+OK\r\n"),
            1 => out.extend_from_slice(
                format!(":{}\r\n", rng.next(1 << 40) as i64 - (1 << 39)).as_bytes(),
            ),
            2 => out.extend_from_slice(b"-ERR no\r\n"),
            3 => out.extend_from_slice(b"$-1\r\n"),
            4 => {
                let len = rng.next(40) as usize;
                out.extend_from_slice(format!("${len}\r\n").as_bytes());
                out.extend((0..len).map(|i| {
                    if i % 7 == 3 {
                        b'\r'
                    } else {
                        b'a' + (i % 26) as u8
                    }
                }));
                out.extend_from_slice(b"\r\n");
            }
            _ => {
                let n = rng.next(4);
                out.extend_from_slice(format!("*{n}\r\n").as_bytes());
                for _ in 0..n {
                    random_reply(rng, depth + 1, out);
                }
            }
        }
    }

    #[test]
    fn streams_split_at_random_points_scan_like_whole_buffers() {
        for seed in 1..200u64 {
            let mut rng = Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut stream = Vec::new();
            let mut lengths = Vec::new();
            for _ in 0..1 + rng.next(20) {
                let start = stream.len();
                random_reply(&mut rng, 0, &mut stream);
                lengths.push(stream.len() - start);
            }
            // Feed the stream in random chunks, as reads would deliver it.
            let mut buf = Vec::new();
            let mut fed = 0;
            let mut seen = Vec::new();
            while fed < stream.len() {
                let chunk = 1 + rng.next(17) as usize;
                let end = (fed + chunk).min(stream.len());
                buf.extend_from_slice(&stream[fed..end]);
                fed = end;
                loop {
                    match scan(&buf) {
                        Ok((_, used)) => {
                            assert_eq!(parse(&buf).map(|(_, n)| n), Ok(used), "seed {seed}");
                            seen.push(used);
                            buf.drain(..used);
                        }
                        Err(ParseError::Incomplete) => break,
                        Err(e) => panic!("seed {seed}: {e}"),
                    }
                }
            }
            assert!(buf.is_empty(), "seed {seed}: bytes left over");
            assert_eq!(seen, lengths, "seed {seed}");
        }
    }

    #[test]
    fn finds_message_payloads_only_in_messages() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nch:1\r\n$5\r\nhello\r\n";
        assert_eq!(message_payload(msg), Some(&b"hello"[..]));
        let push = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n";
        assert_eq!(message_payload(push), Some(&b""[..]));
        let confirm = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n";
        assert_eq!(message_payload(confirm), None);
        assert_eq!(message_payload(b"+OK\r\n"), None);
    }

    #[test]
    fn integers_parse_like_the_standard_library() {
        for text in [
            "0",
            "7",
            "-1",
            "42",
            "-9223372036854775808",
            "9223372036854775807",
            "123456789012345678",
        ] {
            assert_eq!(parse_int(text.as_bytes()), text.parse().ok(), "{text}");
        }
        for bad in ["", "-", "1a", "+1", " 1", "99999999999999999999"] {
            assert_eq!(parse_int(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn push_decimal_matches_to_string() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    /// Replies of every shape, each fed to a `Scanner` split at every byte (one more byte
    /// per call), must give what `scan` gives on the whole reply.
    #[test]
    fn the_resuming_scanner_agrees_with_scan_at_every_split() {
        let replies: [&[u8]; 12] = [
            b"+OK\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n",
            b"*2\r\n*2\r\n+a\r\n+b\r\n*0\r\n",
            b"%2\r\n+k\r\n:1\r\n+l\r\n*1\r\n+x\r\n",
            b"|1\r\n+key\r\n+val\r\n*2\r\n:1\r\n:2\r\n",
            b"*2\r\n|1\r\n+a\r\n+b\r\n:5\r\n:6\r\n",
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n",
            b"-ERR wrong\r\n",
        ];
        for reply in replies {
            let whole = scan(reply).unwrap();
            let mut scanner = Scanner::default();
            for cut in 1..reply.len() {
                assert_eq!(
                    scanner.scan(&reply[..cut]),
                    Err(ParseError::Incomplete),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(reply)
                );
            }
            assert_eq!(
                scanner.scan(reply),
                Ok(whole),
                "{:?}",
                String::from_utf8_lossy(reply)
            );
            // Ready for the next reply, from its first byte.
            assert_eq!(scanner.scan(b":1\r\n"), Ok((Reply::Scalar, 4)));
        }
    }

    #[test]
    fn the_resuming_scanner_refuses_what_scan_refuses() {
        let mut scanner = Scanner::default();
        assert!(matches!(
            scanner.scan(b"*2\r\n?x\r\n"),
            Err(ParseError::Invalid { .. })
        ));
        assert_eq!(
            scanner.scan(b"+OK\r\n"),
            Ok((Reply::Scalar, 5)),
            "reset after an error"
        );
        // A bad count inside an aggregate, and a bad line end in a header: reset too.
        for bad in [b"*1\r\n*x\r\n".as_slice(), b"*1\r\n*1\rx"] {
            assert!(
                matches!(scanner.scan(bad), Err(ParseError::Invalid { .. })),
                "{bad:?}"
            );
            assert_eq!(scanner.scan(b"+OK\r\n"), Ok((Reply::Scalar, 5)), "{bad:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            scanner.scan(deep.as_bytes()),
            Err(ParseError::Invalid { .. })
        ));
    }

    #[test]
    fn the_scanner_answers_the_same_however_a_deep_reply_is_cut() {
        let attribute = "|1\r\n+a\r\n+b\r\n";
        for raw in [
            "*1\r\n".repeat(MAX_DEPTH) + "*0\r\n",
            attribute.repeat(70) + "+OK\r\n",
            "*1\r\n".repeat(MAX_DEPTH - 1) + attribute + "*1\r\n:1\r\n",
        ] {
            let raw = raw.as_bytes();
            let whole = Scanner::default().scan(raw);
            let mut cut = Scanner::default();
            assert_eq!(cut.scan(&raw[..raw.len() / 2]), Err(ParseError::Incomplete));
            assert_eq!(cut.scan(raw), whole, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn a_reset_scanner_forgets_the_cut_reply() {
        let mut scanner = Scanner::default();
        assert_eq!(
            scanner.scan(b"*3\r\n$1\r\na\r\n"),
            Err(ParseError::Incomplete)
        );
        // The connection dropped: the rest of that reply never comes.
        scanner.reset();
        assert_eq!(scanner.scan(b"+OK\r\n"), Ok((Reply::Scalar, 5)));
        // Without the reset it would resume inside the old array and misread the reply.
        let mut stale = Scanner::default();
        let _ = stale.scan(b"*3\r\n$1\r\na\r\n");
        assert_ne!(stale.scan(b"+OK\r\n"), Ok((Reply::Scalar, 5)));
    }

    #[test]
    fn hits_and_misses_follow_each_command() {
        let check = |command: &str, raw: &[u8], expected: (u64, u64)| {
            let (reply, _) = scan(raw).unwrap();
            assert_eq!(
                hits_and_misses(ReadKind::of(command), reply, raw),
                expected,
                "{command} {:?}",
                String::from_utf8_lossy(raw)
            );
        };
        check("GET", b"$3\r\nabc\r\n", (1, 0));
        check("GET", b"$-1\r\n", (0, 1));
        check("GET", b"_\r\n", (0, 1));
        check("SISMEMBER", b":1\r\n", (1, 0));
        check("SISMEMBER", b":0\r\n", (0, 1));
        check("LRANGE", b"*0\r\n", (0, 1));
        check("LRANGE", b"*1\r\n$1\r\na\r\n", (1, 0));
        check("HGETALL", b"%0\r\n", (0, 1));
        check("MGET", b"*3\r\n$1\r\na\r\n$-1\r\n_\r\n", (1, 2));
        check("SET", b"+OK\r\n", (0, 0));
        check("GET", b"-ERR x\r\n", (0, 0));
    }
}
