//! The load generator's side: replies skipped in place without allocating (`scan`, the
//! resuming `Scanner`), what a read's reply says about hits and misses, and pub/sub
//! payloads. The hot path of reply handling, kept in one module.

use super::ParseError;

/// What the load generator needs to know about a reply, found without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+`, `:`, `,`, `#`, `(`: a scalar.
    Scalar,
    /// `-` or `!`: an error reply.
    Error,
    /// `$` or `=`: a string of this many bytes.
    Bulk(usize),
    /// `$-1`, `*-1` or `_`: null (a miss, for reads).
    Null,
    /// `*`, `%`, `~`, `|`: an aggregate with this many top-level elements (map pairs count
    /// as two).
    Aggregate(usize),
    /// `>`: a RESP3 push (pub/sub messages) with this many elements.
    Push(usize),
}

/// Skips one reply at the start of `buf` without building it; returns its summary and
/// its length in bytes. Handles RESP2 and RESP3. An error reply's first bytes can be read
/// from `buf` by the caller (after the type byte) to classify it.
pub fn scan(buf: &[u8]) -> Result<(Reply, usize), ParseError> {
    let (reply, end) = scan_at(buf, 0, 0)?;
    Ok((reply, end))
}

/// How a read command's reply says whether it found what it asked for. Each command has
/// its own way: a null (`GET`), an empty aggregate (`LRANGE`, `HGETALL`: an absent key
/// reads as empty), an integer 0 (`SISMEMBER`), or a null per key (`MGET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// Not a read: no hits or misses.
    NotRead,
    /// A null reply is a miss, anything else a hit.
    Null,
    /// An empty array or map is a miss.
    Empty,
    /// `:0` is a miss, any other integer a hit.
    Zero,
    /// Each null element of the array is a miss and each other element a hit: hits and
    /// misses count keys, not requests.
    PerElement,
}

impl ReadKind {
    /// The kind for an upper-case command name.
    pub fn of(name: &str) -> ReadKind {
        match name {
            "GET" | "LPOP" | "RPOP" | "ZSCORE" | "ZRANK" | "HGET" => ReadKind::Null,
            "LRANGE" | "ZRANGE" | "HGETALL" | "SMEMBERS" => ReadKind::Empty,
            "SISMEMBER" | "EXISTS" => ReadKind::Zero,
            "MGET" => ReadKind::PerElement,
            _ => ReadKind::NotRead,
        }
    }
}

/// A reply scanner that resumes where the last call stopped. `scan` starts every call at
/// the reply's first byte, so a large aggregate (LRANGE, HGETALL) arriving over many reads
/// is rescanned from its start each time: quadratic in its size. `Scanner` keeps the
/// position and the open aggregates between calls, so each byte is looked at about once.
/// Give it the same reply (its first byte at `buf[0]`, more bytes appended) until it
/// returns `Ok`; it is then ready for the next reply. Allocation-free after the first
/// nested aggregate (its stack keeps its capacity).
#[derive(Debug, Default)]
pub struct Scanner {
    /// Where the next element starts, relative to the reply's first byte.
    pos: usize,
    /// Open aggregates, outermost first.
    open: Vec<Open>,
}

#[derive(Clone, Copy, Debug)]
struct Open {
    /// Elements still to come (map pairs count as two).
    remaining: usize,
    elements: usize,
    kind: u8,
}

impl Scanner {
    /// Like [`scan`], resuming a reply that was incomplete last time.
    #[inline]
    pub fn scan(&mut self, buf: &[u8]) -> Result<(Reply, usize), ParseError> {
        // The common case, a whole reply and no resumption, is the plain scan: the
        // stack's bookkeeping cost ~60 instructions per reply on top of it. An aggregate
        // it does not return whole goes to `resume`: cut short, it is resumed later (its
        // bytes so far scanned twice, once); refused, `resume` decides, as it would for
        // the same bytes cut anywhere (`scan_at` counts nesting more strictly).
        if self.pos == 0 && self.open.is_empty() {
            let found = scan_at(buf, 0, 0);
            if found.is_ok() || !matches!(buf.first(), Some(b'*' | b'%' | b'~' | b'|' | b'>')) {
                return found;
            }
        }
        self.resume(buf)
    }

    fn resume(&mut self, buf: &[u8]) -> Result<(Reply, usize), ParseError> {
        loop {
            let start = self.pos;
            let Some(&kind) = buf.get(start) else {
                return Err(ParseError::Incomplete);
            };
            let mut value = match kind {
                b'*' | b'%' | b'~' | b'|' | b'>' => {
                    let invalid = ParseError::Invalid { offset: start };
                    let (line, after_line) = match line_at(buf, start + 1) {
                        Ok(found) => found,
                        Err(e) => {
                            if matches!(e, ParseError::Invalid { .. }) {
                                self.reset();
                            }
                            return Err(e);
                        }
                    };
                    let Some(n) = parse_int(line) else {
                        self.reset();
                        return Err(invalid);
                    };
                    self.pos = after_line;
                    if n < 0 {
                        Reply::Null
                    } else {
                        let elements = if kind == b'%' || kind == b'|' {
                            n as usize * 2
                        } else {
                            n as usize
                        };
                        if elements > 0 || kind == b'|' {
                            if self.open.len() >= MAX_DEPTH {
                                self.reset();
                                return Err(invalid);
                            }
                            self.open.push(Open {
                                remaining: elements,
                                elements,
                                kind,
                            });
                            if elements > 0 {
                                continue;
                            }
                        }
                        if kind == b'>' {
                            Reply::Push(0)
                        } else {
                            Reply::Aggregate(0)
                        }
                    }
                }
                _ => match scan_at(buf, start, MAX_DEPTH) {
                    Ok((reply, end)) => {
                        self.pos = end;
                        reply
                    }
                    Err(e) => {
                        if matches!(e, ParseError::Invalid { .. }) {
                            self.reset();
                        }
                        return Err(e);
                    }
                },
            };
            // Close every aggregate this element completed.
            loop {
                let Some(top) = self.open.last_mut() else {
                    let end = self.pos;
                    self.reset();
                    return Ok((value, end));
                };
                if top.kind == b'|' && top.remaining == 0 {
                    // An attribute is done: the reply it describes follows, in its place.
                    self.open.pop();
                    break;
                }
                top.remaining -= 1;
                if top.remaining > 0 {
                    break;
                }
                if top.kind == b'|' {
                    self.open.pop();
                    break;
                }
                let done = self.open.pop().expect("an open aggregate was just seen");
                value = if done.kind == b'>' {
                    Reply::Push(done.elements)
                } else {
                    Reply::Aggregate(done.elements)
                };
            }
        }
    }

    /// Forgets a partly scanned reply (its bytes are gone), keeping the stack's capacity.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.open.clear();
    }
}

/// Hits and misses of one reply to a read, by the command's own rule (`reply` and its
/// bytes `raw`, as [`scan`] returned them). For `PerElement` (MGET) they count keys.
#[inline]
pub fn hits_and_misses(kind: ReadKind, reply: Reply, raw: &[u8]) -> (u64, u64) {
    match (kind, reply) {
        (ReadKind::NotRead, _) | (_, Reply::Error) => (0, 0),
        (ReadKind::Null, Reply::Null) => (0, 1),
        (ReadKind::Null, _) => (1, 0),
        (ReadKind::Empty, Reply::Null | Reply::Aggregate(0)) => (0, 1),
        (ReadKind::Empty, _) => (1, 0),
        (ReadKind::Zero, _) if raw.starts_with(b":0\r\n") => (0, 1),
        (ReadKind::Zero, Reply::Null) => (0, 1),
        (ReadKind::Zero, _) => (1, 0),
        (ReadKind::PerElement, Reply::Aggregate(n)) => {
            let Ok((_, mut pos)) = line_at(raw, 1) else {
                return (0, 0);
            };
            let mut misses = 0;
            for _ in 0..n {
                match scan_at(raw, pos, 1) {
                    Ok((Reply::Null, end)) => {
                        misses += 1;
                        pos = end;
                    }
                    Ok((_, end)) => pos = end,
                    Err(_) => break,
                }
            }
            (n as u64 - misses, misses)
        }
        (ReadKind::PerElement, Reply::Null) => (0, 1),
        (ReadKind::PerElement, _) => (1, 0),
    }
}

/// The payload of a pub/sub `message` push (`*3` in RESP2, `>3` in RESP3:
/// `message`, channel, payload), given one whole reply; `None` for anything else
/// (subscribe confirmations, pattern messages). Allocation-free.
pub fn message_payload(reply: &[u8]) -> Option<&[u8]> {
    let (header, mut pos) = line_at(reply, 1).ok()?;
    if !matches!(reply.first(), Some(b'*' | b'>')) || header != b"3" {
        return None;
    }
    let bulk = |pos: &mut usize| -> Option<&[u8]> {
        if reply.get(*pos) != Some(&b'$') {
            return None;
        }
        let (len, start) = line_at(reply, *pos + 1).ok()?;
        let end = start + usize::try_from(parse_int(len)?).ok()?;
        *pos = end + 2;
        reply.get(start..end)
    };
    if bulk(&mut pos)? != b"message" {
        return None;
    }
    bulk(&mut pos)?;
    bulk(&mut pos)
}

/// Aggregates nested deeper than this are refused rather than recursed into.
pub(crate) const MAX_DEPTH: usize = 64;

pub(crate) fn scan_at(
    buf: &[u8],
    start: usize,
    depth: usize,
) -> Result<(Reply, usize), ParseError> {
    let Some(&kind) = buf.get(start) else {
        return Err(ParseError::Incomplete);
    };
    let (line, after_line) = line_at(buf, start + 1)?;
    let invalid = ParseError::Invalid { offset: start };
    let count = |line: &[u8]| parse_int(line).ok_or(invalid);
    match kind {
        b'+' | b':' | b',' | b'#' | b'(' => Ok((Reply::Scalar, after_line)),
        b'-' => Ok((Reply::Error, after_line)),
        b'_' => Ok((Reply::Null, after_line)),
        b'$' | b'=' | b'!' => {
            let len = count(line)?;
            if len < 0 {
                return Ok((Reply::Null, after_line));
            }
            let end = after_line + len as usize;
            if buf.len() < end + 2 {
                return Err(ParseError::Incomplete);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ParseError::Invalid { offset: end });
            }
            let reply = if kind == b'!' {
                Reply::Error
            } else {
                Reply::Bulk(len as usize)
            };
            Ok((reply, end + 2))
        }
        b'*' | b'%' | b'~' | b'|' | b'>' => {
            let n = count(line)?;
            if n < 0 {
                return Ok((Reply::Null, after_line));
            }
            if depth >= MAX_DEPTH {
                return Err(invalid);
            }
            let elements = if kind == b'%' || kind == b'|' {
                n as usize * 2
            } else {
                n as usize
            };
            let mut pos = after_line;
            for _ in 0..elements {
                pos = scan_at(buf, pos, depth + 1)?.1;
            }
            if kind == b'|' {
                // An attribute precedes the reply it describes.
                return scan_at(buf, pos, depth + 1);
            }
            let reply = if kind == b'>' {
                Reply::Push(elements)
            } else {
                Reply::Aggregate(elements)
            };
            Ok((reply, pos))
        }
        _ => Err(invalid),
    }
}

/// Returns the bytes up to the next CRLF at or after `from`, and the offset after the CRLF.
pub(crate) fn line_at(buf: &[u8], from: usize) -> Result<(&[u8], usize), ParseError> {
    let rest = buf.get(from..).ok_or(ParseError::Incomplete)?;
    match rest.iter().position(|&b| b == b'\r') {
        Some(i) if i + 1 < rest.len() => {
            if rest[i + 1] != b'\n' {
                return Err(ParseError::Invalid { offset: from + i });
            }
            Ok((&rest[..i], from + i + 2))
        }
        _ => Err(ParseError::Incomplete),
    }
}

/// A RESP integer line: optional `-`, then 1..=18 decimal digits (lengths and counts never
/// need more). Hand-written: this runs for every reply on the hot path.
pub(crate) fn parse_int(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 {
        return if digits.len() > 18 {
            std::str::from_utf8(line).ok()?.parse().ok()
        } else {
            None
        };
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(b - b'0');
    }
    Some(if negative { -n } else { n })
}
