//! The memory-efficiency suite's domain: the suite file, the cases, the populators that
//! write exactly the declared items, the cardinality check, and the settle rule.
//!
//! Key names have exactly `key_size` bytes (`k` + zero-padded digits), values exactly
//! `value_size` bytes, so "user bytes" is a known number, not an estimate.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::client::Value;
use crate::cluster::KeyedClient;
use crate::populate::{PopulateError, Populated};
use crate::topology::TopologySpec;

/// The default mem suite.
pub const DEFAULT_MEM: &str = include_str!("../suites/mem-default.toml");
/// The quick mem suite.
pub const QUICK_MEM: &str = include_str!("../suites/mem-quick.toml");

/// Commands per round trip while populating.
const BATCH: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    String,
    List,
    Set,
    Zset,
    Hash,
}

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::List => "list",
            DataType::Set => "set",
            DataType::Zset => "zset",
            DataType::Hash => "hash",
        }
    }

    /// The command that counts a key's items.
    fn count_command(self) -> &'static str {
        match self {
            DataType::String => "EXISTS",
            DataType::List => "LLEN",
            DataType::Set => "SCARD",
            DataType::Zset => "ZCARD",
            DataType::Hash => "HLEN",
        }
    }
}

/// The mem suite file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemSpecFile {
    /// `"mem"`.
    pub suite: String,
    /// Data types to measure.
    pub data_types: Vec<DataType>,
    /// Value sizes in bytes: string values, list elements, set / sorted-set members, hash values.
    pub value_sizes: Vec<u64>,
    /// Key size in bytes (at least enough digits for the keys, plus one).
    pub key_size: u64,
    /// Hash field size in bytes.
    #[serde(default = "default_field_size")]
    pub field_size: u64,
    /// Items per case.
    pub items: u64,
    /// Items per key for collections (strings have one item per key).
    pub elements_per_key: u64,
    /// With and/or without a TTL on every key.
    #[serde(default = "no_expiry")]
    pub expiry: Vec<bool>,
    /// Extra server configuration for every case (e.g. `"list-max-listpack-size" = "-2"`).
    #[serde(default)]
    pub server_config: BTreeMap<String, String>,
    /// Where the servers run: `[hosts]` (see `SuiteHosts`).
    #[serde(default)]
    pub hosts: Option<crate::placement::SuiteHosts>,
}

fn default_field_size() -> u64 {
    8
}
fn no_expiry() -> Vec<bool> {
    vec![false]
}

/// One case: everything fixed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemCase {
    /// Stable name, e.g. `string/k16/v32/ttl`.
    pub name: String,
    pub data_type: DataType,
    pub items: u64,
    pub keys: u64,
    pub key_size: u64,
    pub value_size: u64,
    pub field_size: u64,
    pub expiry: bool,
    pub server_config: BTreeMap<String, String>,
    /// Standalone, or a cluster whose primaries share the keys (the name ends with it).
    pub topology: TopologySpec,
    /// TLS only (the name ends with `/tls`).
    pub tls: Option<crate::transport::TlsMode>,
}

/// An invalid mem suite: field, value, fix.
#[derive(Clone, Debug, PartialEq)]
pub struct MemSpecError {
    pub field: String,
    pub value: String,
    pub fix: String,
}

impl fmt::Display for MemSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "suite field `{}`: invalid value {}; {}",
            self.field, self.value, self.fix
        )
    }
}

impl std::error::Error for MemSpecError {}

impl MemSpecFile {
    pub fn parse(text: &str) -> Result<Vec<MemCase>, String> {
        let file: MemSpecFile =
            toml::from_str(text).map_err(|e| format!("not a valid mem suite file: {e}"))?;
        file.expand().map_err(|e| e.to_string())
    }

    /// Validates and expands into cases (type × value size × expiry).
    pub fn expand(&self) -> Result<Vec<MemCase>, MemSpecError> {
        let err = |field: &str, value: String, fix: &str| MemSpecError {
            field: field.into(),
            value,
            fix: fix.into(),
        };
        for (key, value) in &self.server_config {
            crate::server_config::check(key, value)
                .map_err(|why| err(&format!("server_config.{key}"), format!("{value:?}"), &why))?;
        }
        if self.suite != "mem" {
            return Err(err(
                "suite",
                format!("{:?}", self.suite),
                "a mem suite file says suite = \"mem\"",
            ));
        }
        if self.data_types.is_empty() {
            return Err(err(
                "data_types",
                "[]".into(),
                "give at least one of string, list, set, zset, hash",
            ));
        }
        if self.value_sizes.is_empty() || self.value_sizes.iter().any(|&v| v == 0 || v > 16 << 20) {
            return Err(err(
                "value_sizes",
                format!("{:?}", self.value_sizes),
                "give sizes from 1 byte to 16 MiB",
            ));
        }
        if !(1..=100_000_000).contains(&self.items) {
            return Err(err(
                "items",
                self.items.to_string(),
                "use 1 to 100000000 items",
            ));
        }
        if !(1..=self.items).contains(&self.elements_per_key)
            || !self.items.is_multiple_of(self.elements_per_key)
        {
            return Err(err(
                "elements_per_key",
                self.elements_per_key.to_string(),
                "use a divisor of `items` (so every collection holds the same number of items)",
            ));
        }
        let needed = digits(self.items) + 1;
        if self.key_size < needed || self.key_size > 1024 {
            return Err(err(
                "key_size",
                self.key_size.to_string(),
                &format!("use {needed} to 1024 bytes for {} keys", self.items),
            ));
        }
        if !(1..=1024).contains(&self.field_size)
            || self.field_size < digits(self.elements_per_key) + 1
        {
            return Err(err(
                "field_size",
                self.field_size.to_string(),
                "use enough bytes for the field numbers, up to 1024",
            ));
        }
        if self.expiry.is_empty() {
            return Err(err(
                "expiry",
                "[]".into(),
                "give [false], [true] or [false, true]",
            ));
        }
        let mut cases = Vec::new();
        for &data_type in &self.data_types {
            for &value_size in &self.value_sizes {
                if matches!(data_type, DataType::Set | DataType::Zset)
                    && value_size < digits(self.elements_per_key) + 1
                {
                    continue; // members must be distinct: too small for a prefix and their number
                }
                for &expiry in &self.expiry {
                    let keys = if data_type == DataType::String {
                        self.items
                    } else {
                        self.items / self.elements_per_key
                    };
                    let ttl = if expiry { "/ttl" } else { "" };
                    cases.push(MemCase {
                        name: format!("{}/k{}/v{value_size}{ttl}", data_type.name(), self.key_size),
                        data_type,
                        items: self.items,
                        keys,
                        key_size: self.key_size,
                        value_size,
                        field_size: if data_type == DataType::Hash {
                            self.field_size
                        } else {
                            0
                        },
                        expiry,
                        server_config: self.server_config.clone(),
                        topology: TopologySpec::Standalone,
                        tls: None,
                    });
                }
            }
        }
        Ok(cases)
    }
}

fn digits(mut n: u64) -> u64 {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// `prefix` + `i` zero-padded to exactly `size` bytes (`size` must fit the digits).
pub fn fixed_name(prefix: u8, i: u64, size: u64) -> Vec<u8> {
    let mut name = vec![b'0'; size as usize];
    name[0] = prefix;
    let mut n = i;
    let mut pos = name.len();
    while n > 0 && pos > 1 {
        pos -= 1;
        name[pos] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    name
}

impl MemCase {
    /// Declared user bytes per item (see `MemMetrics::user_bytes_per_item`).
    pub fn user_bytes_per_item(&self) -> f64 {
        let per_item = match self.data_type {
            DataType::String => self.key_size + self.value_size,
            DataType::List | DataType::Set => self.value_size,
            DataType::Zset => self.value_size + 8,
            DataType::Hash => self.field_size + self.value_size,
        };
        let key_share = if self.data_type == DataType::String {
            0.0
        } else {
            (self.keys * self.key_size) as f64 / self.items as f64
        };
        per_item as f64 + key_share
    }

    /// Writes exactly the case's items on an empty server, pipelined.
    pub fn populate(&self, client: &mut dyn KeyedClient) -> Result<Populated, PopulateError> {
        let start = Instant::now();
        let per_key = self.items / self.keys;
        let mut queued = 0;
        let mut expect = Vec::with_capacity(BATCH);
        for k in 0..self.keys {
            let key = fixed_name(b'k', k, self.key_size);
            for e in 0..per_key {
                self.queue_item(client, &key, k, e);
                expect.push(self.data_type);
                queued += 1;
                if queued == BATCH {
                    flush(client, &mut expect)?;
                    queued = 0;
                }
            }
            if self.expiry && self.data_type != DataType::String {
                client.queue_keyed(&key, &[b"EXPIRE".as_slice(), &key, b"86400"]);
                queued += 1;
                expect.push(DataType::String); // EXPIRE replies :1 like a write
                if queued == BATCH {
                    flush(client, &mut expect)?;
                    queued = 0;
                }
            }
        }
        flush(client, &mut expect)?;
        Ok(Populated {
            items: self.items,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Sends every command [`populate`](Self::populate) sends once, on a scratch key that
    /// it then deletes. A server allocates some things on a command's first call, and they
    /// are not the items' memory: Valkey's per-command latency histogram (with
    /// `latency-tracking yes`, the default) is ~24 KB, which would add 24 bytes per item to
    /// a case of 1,000 items. Called before the first reading, so both readings have them.
    /// On a cluster each primary is warmed up with its own scratch key: `index` picks the
    /// key ([`warm_up_key`](Self::warm_up_key)).
    pub fn warm_up(&self, client: &mut dyn KeyedClient, index: u64) -> Result<(), PopulateError> {
        let key = self.warm_up_key(index);
        let mut expect = vec![self.data_type];
        self.queue_item(client, &key, 0, 0);
        if self.expiry && self.data_type != DataType::String {
            client.queue_keyed(&key, &[b"EXPIRE".as_slice(), &key, b"86400"]);
            expect.push(DataType::String);
        }
        client.queue_keyed(&key, &[b"DEL".as_slice(), &key]);
        expect.push(DataType::String); // DEL of the one key replies :1
        flush(client, &mut expect)
    }

    /// The scratch key `warm_up` writes and deletes, number `index`.
    pub fn warm_up_key(&self, index: u64) -> Vec<u8> {
        fixed_name(b'w', index, self.key_size)
    }

    /// Queues the write of item `e` of key number `k` (named `key`).
    fn queue_item(&self, client: &mut dyn KeyedClient, key: &[u8], k: u64, e: u64) {
        let value = fixed_name(b'v', e, self.value_size);
        match self.data_type {
            DataType::String => {
                if self.expiry {
                    client.queue_keyed(key, &[b"SET".as_slice(), key, &value, b"EX", b"86400"]);
                } else {
                    client.queue_keyed(key, &[b"SET".as_slice(), key, &value]);
                }
            }
            DataType::List => client.queue_keyed(key, &[b"RPUSH".as_slice(), key, &value]),
            DataType::Set => client.queue_keyed(key, &[b"SADD".as_slice(), key, &value]),
            DataType::Zset => {
                let score = e.to_string();
                client.queue_keyed(key, &[b"ZADD".as_slice(), key, score.as_bytes(), &value]);
            }
            DataType::Hash => {
                let field = fixed_name(b'f', e, self.field_size);
                let value = fixed_name(b'v', k, self.value_size);
                client.queue_keyed(key, &[b"HSET".as_slice(), key, &field, &value]);
            }
        }
    }

    /// Checks that the server holds exactly the keys and items written: DBSIZE, then the
    /// item count of every key (LLEN / SCARD / ZCARD / HLEN), pipelined.
    pub fn verify(&self, client: &mut dyn KeyedClient) -> Result<(), PopulateError> {
        let keys = client.dbsize()?;
        if keys != self.keys {
            return Err(PopulateError::Mismatch {
                what: "DBSIZE".into(),
                expected: self.keys,
                actual: keys,
            });
        }
        let command = self.data_type.count_command();
        let mut total = 0u64;
        let mut k = 0;
        while k < self.keys {
            let batch = (self.keys - k).min(BATCH as u64);
            for i in k..k + batch {
                let key = fixed_name(b'k', i, self.key_size);
                client.queue_keyed(&key, &[command.as_bytes(), &key]);
            }
            for reply in client.flush_all()? {
                match reply {
                    Value::Integer(n) => total += n as u64,
                    other => {
                        return Err(PopulateError::Reply {
                            command: "count",
                            reply: other,
                        });
                    }
                }
            }
            k += batch;
        }
        if total != self.items {
            return Err(PopulateError::Mismatch {
                what: format!("items counted with {command}"),
                expected: self.items,
                actual: total,
            });
        }
        Ok(())
    }

    /// A key to ask `OBJECT ENCODING` about.
    pub fn sample_key(&self) -> Vec<u8> {
        fixed_name(b'k', 0, self.key_size)
    }
}

fn flush(client: &mut dyn KeyedClient, expect: &mut Vec<DataType>) -> Result<(), PopulateError> {
    if expect.is_empty() {
        return Ok(());
    }
    let replies = client.flush_all()?;
    for (reply, data_type) in replies.into_iter().zip(expect.drain(..)) {
        let ok = match (data_type, &reply) {
            (DataType::String, Value::Simple(s)) => s == "OK",
            // Every collection write adds exactly one new item.
            (_, Value::Integer(n)) => *n >= 1,
            _ => false,
        };
        if !ok {
            return Err(PopulateError::Reply {
                command: "populate",
                reply,
            });
        }
    }
    Ok(())
}

/// Whether the last `window` samples of `used_memory` agree within `tolerance`
/// (relative spread: (max − min) / max).
pub fn is_settled(samples: &[u64], window: usize, tolerance: f64) -> bool {
    if samples.len() < window || window == 0 {
        return false;
    }
    let last = &samples[samples.len() - window..];
    let (min, max) = last
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    max == 0 || (max - min) as f64 / max as f64 <= tolerance
}

/// The scalar fields of a `MEMORY STATS` reply (a flat list of name, value pairs; nested
/// per-database maps are skipped).
pub fn memory_stats(reply: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Value::Array(Some(items)) = reply {
        for pair in items.chunks(2) {
            let [name, value] = pair else { continue };
            let name = match name {
                Value::Bulk(Some(n)) => String::from_utf8_lossy(n).into_owned(),
                Value::Simple(s) => s.clone(),
                _ => continue,
            };
            let number = match value {
                Value::Integer(n) => Some(*n as f64),
                Value::Bulk(Some(b)) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
                _ => None,
            };
            if let Some(n) = number {
                out.insert(name, n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_exactly_the_declared_size() {
        assert_eq!(fixed_name(b'k', 42, 8), b"k0000042");
        assert_eq!(fixed_name(b'v', 0, 1), b"v");
        assert_eq!(fixed_name(b'k', 99_999, 16).len(), 16);
    }

    #[test]
    fn default_suites_expand_with_user_bytes_as_declared() {
        let cases = MemSpecFile::parse(DEFAULT_MEM).unwrap();
        // 5 types × 8 sizes × 2 expiry settings; set and zset members must number 100
        // distinct values per key, which 8-byte members can.
        assert_eq!(cases.len(), 5 * 8 * 2);
        let string = cases.iter().find(|c| c.name == "string/k16/v32").unwrap();
        assert_eq!(string.keys, 100_000);
        assert_eq!(string.user_bytes_per_item(), 48.0);
        let zset = cases.iter().find(|c| c.name == "zset/k16/v64/ttl").unwrap();
        assert_eq!(zset.keys, 1000);
        assert!(
            (zset.user_bytes_per_item() - (64.0 + 8.0 + 16.0 * 1000.0 / 100_000.0)).abs() < 1e-9
        );
        let hash = cases.iter().find(|c| c.name == "hash/k16/v8").unwrap();
        assert_eq!(hash.field_size, 8);
        assert!(MemSpecFile::parse(QUICK_MEM).unwrap().len() == 10);
    }

    #[test]
    fn invalid_suites_name_the_field() {
        let check = |from: &str, to: &str, field: &str| {
            let err = MemSpecFile::parse(&DEFAULT_MEM.replace(from, to)).unwrap_err();
            assert!(err.contains(field), "{field}: {err}");
        };
        check("items = 100000", "items = 0", "`items`");
        check(
            "elements_per_key = 100",
            "elements_per_key = 7",
            "`elements_per_key`",
        );
        check("key_size = 16", "key_size = 3", "`key_size`");
        check("value_sizes = [8,", "value_sizes = [0,", "`value_sizes`");
        check("\"hash\"]", "\"tree\"]", "tree");
        check("expiry = [false, true]", "expiry = []", "`expiry`");
    }

    #[test]
    fn settling_needs_a_full_quiet_window() {
        assert!(!is_settled(&[100, 100], 3, 0.001));
        assert!(is_settled(&[5, 1000, 1000, 1000], 3, 0.001));
        assert!(!is_settled(&[1000, 1000, 1010], 3, 0.001));
        assert!(is_settled(&[1_000_000, 1_000_500, 1_000_900], 3, 0.001));
    }

    #[test]
    fn memory_stats_keeps_scalars() {
        let reply = Value::Array(Some(vec![
            Value::Bulk(Some(b"peak.allocated".to_vec())),
            Value::Integer(1000),
            Value::Bulk(Some(b"db.0".to_vec())),
            Value::Array(Some(vec![])),
            Value::Bulk(Some(b"dataset.percentage".to_vec())),
            Value::Bulk(Some(b"42.5".to_vec())),
        ]));
        let stats = memory_stats(&reply);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats["dataset.percentage"], 42.5);
    }
}
