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
