//! Cluster mode's rules: the hash slot of a key (CRC16, hash tags), the slot map read from
//! a node (`CLUSTER SHARDS`, or `CLUSTER SLOTS` on servers without it: `map.rs`), MOVED /
//! ASK redirects, and a control-plane client that routes each key to its owner
//! (`client.rs`).
//!
//! The slot of a key is on the generator's hot path: [`crc16`] is table-driven and
//! incremental, so a template's fixed key prefix is hashed once ([`SlotPrefix`]) and each
//! request hashes only its digits.

mod client;
mod map;

use std::net::SocketAddr;

pub use client::{ClusterClient, KeyedClient, Single};
pub use map::{ClusterError, Shard, SlotMap, from_shards, from_slots};

/// Hash slots in a Valkey cluster.
pub const SLOTS: usize = 16384;

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as the cluster specification
/// defines the key hash.
const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC16: [u16; 256] = crc16_table();

/// Continues a CRC16 over `data` from `crc` (0 to start).
#[inline]
pub fn crc16_update(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc = (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ b)];
    }
    crc
}

/// The CRC16 of `data`.
pub fn crc16(data: &[u8]) -> u16 {
    crc16_update(0, data)
}

/// The part of `key` that is hashed: the text between the first `{` and the next `}` when
/// that is non-empty, else the whole key.
pub fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// The hash slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) & (SLOTS as u16 - 1)
}

/// The slot of keys made of a fixed prefix and varying digits, the prefix hashed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotPrefix {
    /// The prefix has a hash tag: every key has this slot.
    Fixed(u16),
    /// The CRC16 state after the prefix; a key's digits continue it.
    Hashed(u16),
}

impl SlotPrefix {
    pub fn new(prefix: &[u8]) -> SlotPrefix {
        match hash_tag(prefix) {
            Some(tag) => SlotPrefix::Fixed(crc16(tag) & (SLOTS as u16 - 1)),
            None => SlotPrefix::Hashed(crc16(prefix)),
        }
    }

    /// Whether every key with this prefix has one slot.
    pub fn is_fixed(self) -> bool {
        matches!(self, SlotPrefix::Fixed(_))
    }

    /// The slot of the key `prefix + digits`. A `{` in the prefix with no `}` after it
    /// would let the digits close a tag; the digits are decimal, so they never do.
    #[inline]
    pub fn slot(self, digits: &[u8]) -> u16 {
        match self {
            SlotPrefix::Fixed(slot) => slot,
            SlotPrefix::Hashed(crc) => crc16_update(crc, digits) & (SLOTS as u16 - 1),
        }
    }
}

/// The slots of keys made of a hashed prefix and the last `width` decimal digits of an
/// index, without writing the digits: the generator's per-request slot.
///
/// CRC16 (XMODEM: initial value 0, no final xor) is linear over GF(2), and the digit `d` is
/// the byte `b'0' ^ d`, so a key's CRC is the CRC of the key with every digit `0`, xor one
/// term per digit that depends only on the digit and its position. Terms are tabled per
/// group of three digits (1000 values, 2 KiB a group), so a keyspace of up to 10^6 keys
/// takes two divisions, two loads and an empty loop: about 20 instructions a request under
/// callgrind. Tables per pair of digits (200 bytes each, three loads) measured 1.22-1.26x
/// standalone's user time against 1.05 for these, and the per-index table they replaced
/// (512 KiB for 2^18 keys) missed the cache on nearly every request.
#[derive(Clone, Debug)]
pub struct DigitSlots {
    /// The CRC of the key whose digits are all `0`.
    base: u16,
    /// The terms of the last three digits' values, and of the three before (zero past
    /// the width).
    low: [u16; 1000],
    mid: [u16; 1000],
    /// The terms of each further group of three digits, from the right.
    high: Box<[[u16; 1000]]>,
}

impl DigitSlots {
    /// `None` for a prefix with a hash tag (every key has its slot); `width` is capped at
    /// 20, a u64's digits.
    pub fn new(prefix: SlotPrefix, width: usize) -> Option<DigitSlots> {
        let SlotPrefix::Hashed(crc) = prefix else {
            return None;
        };
        let width = width.min(20);
        // The term of digit value `d` with `after` digits to its right: the CRC of the
        // byte `d` then `after` zero bytes (leading zero bytes leave a CRC at 0).
        let term = |d: usize, after: usize| {
            let mut message = [0u8; 20];
            message[0] = d as u8;
            crc16(&message[..=after])
        };
        let group = |group: usize| {
            let mut terms = [0u16; 1000];
            for (value, t) in terms.iter_mut().enumerate() {
                let digits = [value % 10, value / 10 % 10, value / 100];
                // The last group may be short: a digit past the width is not the key's.
                for (i, d) in digits.into_iter().enumerate() {
                    if 3 * group + i < width {
                        *t ^= term(d, 3 * group + i);
                    }
                }
            }
            terms
        };
        Some(DigitSlots {
            base: crc16_update(crc, &[b'0'; 20][..width]),
            low: group(0),
            mid: group(1),
            high: (2..width.div_ceil(3)).map(group).collect(),
        })
    }

    /// The slot of the key whose digits are `index`'s last `width`.
    #[inline]
    pub fn slot(&self, index: u64) -> u16 {
        let mut crc = self.base
            ^ self.low[(index % 1000) as usize]
            ^ self.mid[(index / 1000 % 1000) as usize];
        let mut n = index / 1_000_000;
        for terms in &self.high {
            crc ^= terms[(n % 1000) as usize];
            n /= 1000;
        }
        crc & (SLOTS as u16 - 1)
    }
}

/// Whether a command (upper case) only reads, so `--read-from replicas` may send it to a
/// replica. Anything not listed goes to the primary.
pub fn is_read_only(name: &str) -> bool {
    matches!(
        name,
        "GET"
            | "MGET"
            | "STRLEN"
            | "GETRANGE"
            | "EXISTS"
            | "TTL"
            | "PTTL"
            | "TYPE"
            | "HGET"
            | "HMGET"
            | "HGETALL"
            | "HLEN"
            | "HEXISTS"
            | "LRANGE"
            | "LLEN"
            | "LINDEX"
            | "SMEMBERS"
            | "SISMEMBER"
            | "SCARD"
            | "ZRANGE"
            | "ZSCORE"
            | "ZRANK"
            | "ZCARD"
            | "ZCOUNT"
    )
}

/// A redirect a cluster node answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub kind: RedirectKind,
    pub slot: u16,
    pub to: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RedirectKind {
    /// The slot has a new owner: update the map and send there from now on.
    Moved,
    /// The slot is being migrated and this key is already at the target: send there once,
    /// after `ASKING`.
    Ask,
}

impl RedirectKind {
    pub fn name(self) -> &'static str {
        match self {
            RedirectKind::Moved => "MOVED",
            RedirectKind::Ask => "ASK",
        }
    }
}

impl Redirect {
    /// Parses an error reply's text (without the leading `-`, up to its CRLF or not):
    /// `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381`. `None` for any other error
    /// or an address that is not `IP:PORT` (a hostname endpoint is resolved by the caller
    /// that allows it).
    pub fn parse(error: &[u8]) -> Option<Redirect> {
        let text = std::str::from_utf8(error).ok()?.trim_end();
        let mut words = text.split(' ');
        let kind = match words.next()? {
            "MOVED" => RedirectKind::Moved,
            "ASK" => RedirectKind::Ask,
            _ => return None,
        };
        let slot: u16 = words.next()?.parse().ok()?;
        let to: SocketAddr = words.next()?.parse().ok()?;
        (usize::from(slot) < SLOTS && words.next().is_none()).then_some(Redirect { kind, slot, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn crc16_matches_the_specification() {
        // The cluster specification's check value, and slots valkey-cli reports.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"key:000000000000"), key_slot(b"key:000000000000"));
    }
    #[test]
    fn hash_tags_follow_the_specification() {
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
        // An empty tag hashes the whole key; only the first `{` counts.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 16383);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(hash_tag(b"no tag"), None);
        assert_eq!(hash_tag(b"{open"), None);
    }
    #[test]
    fn a_prefix_hashed_once_gives_each_keys_slot() {
        let prefix = SlotPrefix::new(b"key:");
        for digits in ["000000000000", "000000000001", "000000009999"] {
            let key = format!("key:{digits}");
            assert_eq!(prefix.slot(digits.as_bytes()), key_slot(key.as_bytes()));
        }
        let tagged = SlotPrefix::new(b"{c7}key:");
        assert!(tagged.is_fixed());
        assert_eq!(tagged.slot(b"123"), key_slot(b"{c7}key:123"));
    }
    #[test]
    fn digit_slots_are_the_slots_of_the_keys_written_out() {
        for (prefix, width) in [
            (&b"key:"[..], 1),
            (b"key:0000", 8),
            (b"m", 5),
            (b"m", 6),
            (b"", 20),
        ] {
            let hashed = SlotPrefix::new(prefix);
            let slots = DigitSlots::new(hashed, width).unwrap();
            let mut indexes: Vec<u64> = (0..2_000).collect();
            // Beyond the width: only the last `width` digits are part of the key.
            indexes.extend([9_999_999, 123_456_789_012, u64::MAX]);
            for index in indexes {
                let digits = format!("{index:020}");
                let key = [prefix, &digits.as_bytes()[20 - width..]].concat();
                assert_eq!(slots.slot(index), key_slot(&key), "{key:?}");
            }
        }
        assert!(DigitSlots::new(SlotPrefix::new(b"{tag}k"), 6).is_none());
    }
    #[test]
    fn redirects_parse_and_other_errors_do_not() {
        assert_eq!(
            Redirect::parse(b"MOVED 3999 127.0.0.1:6381\r\n"),
            Some(Redirect {
                kind: RedirectKind::Moved,
                slot: 3999,
                to: "127.0.0.1:6381".parse().unwrap()
            })
        );
        assert_eq!(
            Redirect::parse(b"ASK 1 127.0.0.1:7000").map(|r| r.kind),
            Some(RedirectKind::Ask)
        );
        assert_eq!(Redirect::parse(b"ERR unknown command"), None);
        assert_eq!(Redirect::parse(b"MOVED 99999 127.0.0.1:1"), None);
        assert_eq!(Redirect::parse(b"MOVED 1 host-name:1"), None);
    }
}
