//! Templates compiled once from a command line, and the prepared fast path: requests
//! assembled from pre-encoded segments with their key digits written in place. The hot
//! path of request encoding lives here, in one module.

use super::*;

/// One piece of an encoded request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Segment {
    /// Pre-encoded bytes (array header, literal arguments, bulk headers of fixed-size keys).
    Literal(Vec<u8>),
    /// Key digits: `key_digits` zero-padded decimal digits of a key index, then CRLF.
    KeyDigits,
    /// `$len\r\n` + value bytes + CRLF.
    Value,
    /// Member digits (members are named like keys: a fixed prefix, then digits).
    MemberDigits,
    /// `$len\r\n` + score digits + CRLF.
    Score,
    /// A value whose first [`STAMP_DIGITS`] bytes are the send time (ns after the run's
    /// origin, zero-padded), then filler up to the value size.
    Stamp,
}

/// Digits of the send time at the start of a `{stamp}` value.
pub const STAMP_DIGITS: usize = 20;

/// The per-request values a template may need besides keys and members.
#[derive(Clone, Copy, Debug)]
pub struct Fill<'a> {
    /// Value bytes, at least as long as the largest value size; the first `value_len` are sent.
    pub value: &'a [u8],
    pub value_len: usize,
    /// The `{score}`.
    pub score: u64,
    /// The `{stamp}`: send time, ns after the run's origin.
    pub stamp: u64,
}

/// A compiled command template: what `encode` writes for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// Upper-case command name, the key of per-command statistics.
    pub name: String,
    /// How a reply tells a hit from a miss (for reads of a key or member).
    pub read: crate::resp::ReadKind,
    /// Whether the template has a `{score}` (so a score must be drawn).
    pub uses_score: bool,
    /// Which key decides where the request goes in a cluster.
    pub route: KeyRoute,
    segments: Vec<Segment>,
    key_digits: usize,
}

/// The key a cluster client routes a template's requests by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRoute {
    /// No key (PING): any node.
    None,
    /// A literal key word, the command's first argument (`LPUSH mylist ...`): one slot.
    Literal(Vec<u8>),
    /// The first argument is a `{key}` placeholder: the bytes before the digits, and how
    /// many keys a request has.
    Drawn { prefix: Vec<u8>, keys: usize },
}

impl Template {
    pub(crate) fn compile(command: &str, spec: &WorkloadSpec) -> Result<Template, String> {
        let text = BUILTIN
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(command))
            .map_or(command, |(_, template)| template);
        let words: Vec<&str> = text.split_whitespace().collect();
        let Some(first) = words.first() else {
            return Err("a command template cannot be empty".into());
        };
        let name = first.to_ascii_uppercase();
        if name.contains('{') {
            return Err("a template starts with the command name".into());
        }
        super::allowed::check(&name)?;
        let family = family(&name);
        let key_name = format!("{}{family}:", spec.key_prefix);
        let member_name = format!("{}m:", spec.key_prefix);
        let digits = spec.key_digits as usize;
        let mut segments = Vec::new();
        let mut literal = Vec::new();
        literal.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
        for word in &words {
            match *word {
                "{key}" | "{member}" => {
                    let prefix = if *word == "{key}" {
                        &key_name
                    } else {
                        &member_name
                    };
                    literal.extend_from_slice(
                        format!("${}\r\n{prefix}", prefix.len() + digits).as_bytes(),
                    );
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    segments.push(if *word == "{key}" {
                        Segment::KeyDigits
                    } else {
                        Segment::MemberDigits
                    });
                }
                "{value}" | "{score}" | "{stamp}" => {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    segments.push(match *word {
                        "{value}" => Segment::Value,
                        "{score}" => Segment::Score,
                        _ => Segment::Stamp,
                    });
                }
                w if w.contains('{') || w.contains('}') => {
                    return Err(format!(
                        "unknown placeholder {w:?}; use {{key}}, {{value}}, {{member}} or {{score}}"
                    ));
                }
                w => literal.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes()),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        let read = crate::resp::ReadKind::of(&name);
        let uses_score = segments.contains(&Segment::Score);
        let keys = words.iter().filter(|w| **w == "{key}").count();
        // The key is the first argument (`HSET myhash {key} ...` is routed by `myhash`).
        let route = match words.get(1) {
            Some(&"{key}") => KeyRoute::Drawn {
                prefix: key_name.into_bytes(),
                keys,
            },
            Some(w) if !w.contains('{') => KeyRoute::Literal(w.as_bytes().to_vec()),
            _ => KeyRoute::None,
        };
        Ok(Template {
            name,
            read,
            uses_score,
            route,
            segments,
            key_digits: digits,
        })
    }

    /// Appends one request to `out`. `key` and `member` draw indexes as the template
    /// needs them; `fill` carries the rest.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        key: &mut impl FnMut() -> u64,
        member: &mut impl FnMut() -> u64,
        fill: &Fill<'_>,
    ) {
        let Fill {
            value,
            value_len,
            score,
            stamp,
        } = *fill;
        for segment in &self.segments {
            match segment {
                Segment::Literal(bytes) => out.extend_from_slice(bytes),
                Segment::KeyDigits => push_padded(out, key(), self.key_digits),
                Segment::MemberDigits => push_padded(out, member(), self.key_digits),
                Segment::Value => {
                    out.push(b'$');
                    crate::resp::push_decimal(out, value_len as u64);
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&value[..value_len]);
                    out.extend_from_slice(b"\r\n");
                }
                Segment::Stamp => {
                    let len = value_len.max(STAMP_DIGITS);
                    out.push(b'$');
                    crate::resp::push_decimal(out, len as u64);
                    out.extend_from_slice(b"\r\n");
                    push_padded(out, stamp, STAMP_DIGITS);
                    out.truncate(out.len() - 2); // push_padded ends with CRLF
                    out.extend_from_slice(&value[..len - STAMP_DIGITS]);
                    out.extend_from_slice(b"\r\n");
                }
                Segment::Score => {
                    let mut digits = [0u8; 20];
                    let n = fill_decimal(&mut digits, score);
                    out.push(b'$');
                    crate::resp::push_decimal(out, n as u64);
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&digits[20 - n..]);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

impl Template {
    /// The slot of the key `index` of this template's drawn keys, `prefix` being
    /// `SlotPrefix::new` of its [`KeyRoute::Drawn`] prefix: the digits hashed as `encode`
    /// writes them.
    pub fn slot_of(&self, prefix: crate::cluster::SlotPrefix, index: u64) -> u16 {
        let mut digits = [b'0'; 64];
        let width = self.key_digits.min(64);
        let mut low = [b'0'; MAX_DIGITS];
        write_digits(&mut low, index);
        let take = width.min(MAX_DIGITS);
        digits[width - take..width].copy_from_slice(&low[MAX_DIGITS - take..]);
        prefix.slot(&digits[..width])
    }

    /// Of the key digits of indexes below `keyspace`: how many lead with a zero in every
    /// key, and how many vary (those of `keyspace - 1`, at most `key_digits`).
    pub fn varying_digits(&self, keyspace: u64) -> (usize, usize) {
        let mut varying = 1;
        let mut n = keyspace.saturating_sub(1);
        while n >= 10 {
            n /= 10;
            varying += 1;
        }
        let varying = varying.min(self.key_digits);
        (self.key_digits - varying, varying)
    }
}

impl Template {
    /// The request with every length fixed, for templates without a `{score}` (whose digit
    /// count varies) when values have one size (`value_len`, or `None` if they vary and the
    /// template has a value): the bytes once, and where the digits go. `None` when a length
    /// varies; `encode` handles every template.
    pub fn prepare(&self, value: &[u8], value_len: Option<usize>) -> Option<Prepared> {
        let has_value = self
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Value | Segment::Stamp));
        if self.uses_score || (has_value && value_len.is_none()) {
            return None;
        }
        let fill = Fill {
            value,
            value_len: value_len.unwrap_or(0),
            score: 0,
            stamp: 0,
        };
        let mut bytes = Vec::new();
        let mut patches = Vec::new();
        for segment in &self.segments {
            let at = bytes.len();
            let patch = match segment {
                Segment::KeyDigits => Some((Patch::Key, at, self.key_digits)),
                Segment::MemberDigits => Some((Patch::Member, at, self.key_digits)),
                // `$len\r\n` comes before the stamp's digits.
                Segment::Stamp => {
                    let header = 3 + fill.value_len.max(STAMP_DIGITS).to_string().len();
                    Some((Patch::Stamp, at + header, STAMP_DIGITS))
                }
                _ => None,
            };
            let one = Template {
                segments: vec![segment.clone()],
                ..self.clone()
            };
            one.encode(&mut bytes, &mut || 0, &mut || 0, &fill);
            if let Some((patch, at, width)) = patch {
                // Digits beyond a u64's 20 are always the zeros already in place.
                let skip = width.saturating_sub(MAX_DIGITS);
                patches.push((patch, at + skip, width - skip));
            }
        }
        Some(Prepared { bytes, patches })
    }
}

/// A template with fixed lengths, pre-encoded: a request is one copy and its digits.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    bytes: Vec<u8>,
    /// What to write where: (which number, offset, digits).
    patches: Vec<(Patch, usize, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Patch {
    Key,
    Member,
    Stamp,
}

impl Prepared {
    /// Appends one request: the bytes `Template::encode` writes for these numbers.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        key: &mut impl FnMut() -> u64,
        member: &mut impl FnMut() -> u64,
        stamp: u64,
    ) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        for &(patch, at, width) in &self.patches {
            let n = match patch {
                Patch::Key => key(),
                Patch::Member => member(),
                Patch::Stamp => stamp,
            };
            let mut digits = [b'0'; MAX_DIGITS];
            write_digits(&mut digits, n);
            out[start + at..start + at + width].copy_from_slice(&digits[MAX_DIGITS - width..]);
        }
    }
}

/// The key family of a command: strings share `key:` with valkey-benchmark.
pub(crate) fn family(command: &str) -> &'static str {
    match command.as_bytes().first() {
        _ if command == "PUBLISH" => "channel",
        _ if ["LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE", "LLEN", "LINDEX"].contains(&command) => {
            "list"
        }
        Some(b'S')
            if command != "SET"
                && command != "SETEX"
                && command != "SETNX"
                && command != "STRLEN" =>
        {
            "set"
        }
        Some(b'Z') => "zset",
        Some(b'H') => "hash",
        _ => "key",
    }
}

/// Writes `n` as exactly `width` zero-padded digits (its low digits if it has more), then
/// CRLF. This runs once per key of every request.
pub(crate) fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [b'0'; MAX_DIGITS];
    write_digits(&mut digits, n);
    if width > MAX_DIGITS {
        out.resize(out.len() + width - MAX_DIGITS, b'0');
    }
    out.extend_from_slice(&digits[MAX_DIGITS - width.min(MAX_DIGITS)..]);
    out.extend_from_slice(b"\r\n");
}

/// Digits of a u64: `u64::MAX` has 20.
pub(crate) const MAX_DIGITS: usize = 20;

/// Writes the decimal digits of `n` right-aligned into `buf` (leaving the rest as it was),
/// two digits per division.
pub(crate) fn write_digits(buf: &mut [u8; MAX_DIGITS], n: u64) {
    let (mut n, mut i) = (n, MAX_DIGITS);
    while n >= 10 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n > 0 {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
}

/// "00", "01", .. "99".
pub(crate) const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

pub(crate) fn fill_decimal(buf: &mut [u8; 20], mut n: u64) -> usize {
    let mut i = 20;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    20 - i
}
