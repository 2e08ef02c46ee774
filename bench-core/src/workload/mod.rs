//! Workloads: a weighted mix of command templates over a keyspace, with key and value
//! distributions and a master seed. Presets are workloads with a name.
//!
//! A template is a command line with placeholders: `{key}`, `{value}`, `{member}`,
//! `{score}`. Keys are named per data-type family, so a mix of GET and HGET never hits a
//! WRONGTYPE: strings are `key:NNNNNNNNNNNN` (the names valkey-benchmark and our populator
//! use), lists `list:...`, sets `set:...`, sorted sets `zset:...`, hashes `hash:...`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::distribution::{KeyDistribution, ValueSize};

pub mod allowed;
mod presets;
mod template;

pub use presets::*;
pub use template::*;

/// A workload file, or a preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Name, recorded with results.
    #[serde(default = "custom")]
    pub name: String,
    /// Master seed: the same seed replays the same request sequence per worker.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Distinct keys per family.
    #[serde(default = "default_keyspace")]
    pub keyspace: u64,
    /// Prepended to every key and member name.
    #[serde(default)]
    pub key_prefix: String,
    /// Digits of the key number (zero-padded). Default 12, as valkey-benchmark.
    #[serde(default = "default_key_digits")]
    pub key_digits: u32,
    #[serde(default = "default_keys")]
    pub keys: KeyDistribution,
    #[serde(default = "default_values")]
    pub values: ValueSize,
    pub commands: Vec<WeightedCommand>,
    /// Pub/sub: connections that SUBSCRIBE to every channel (`keyspace` channels named
    /// `channel:N`) before the run starts, and time each message from its publish (the
    /// payload carries the send time: `PUBLISH {key} {stamp}`). Default 0.
    #[serde(default)]
    pub subscribers: u32,
}

/// One entry of the mix: a built-in command name or a template, and its weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCommand {
    /// A built-in command (`GET`, `HSET`, ...), or a template such as
    /// `"SET {key} {value} EX 100"`.
    pub command: String,
    /// Relative frequency (≥ 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn custom() -> String {
    "custom".into()
}
fn default_seed() -> u64 {
    1
}
fn default_keyspace() -> u64 {
    100_000
}
fn default_key_digits() -> u32 {
    12
}
fn default_keys() -> KeyDistribution {
    KeyDistribution::Uniform
}
fn default_values() -> ValueSize {
    ValueSize::Fixed { bytes: 32 }
}
fn one() -> u32 {
    1
}

impl WorkloadSpec {
    /// The name the generator gives key `i` of `family` (`key`, `list`, `set`, `zset`,
    /// `hash`): what a preload must write for the workload's reads to hit. Like the
    /// encoder, it keeps the low `key_digits` digits.
    pub fn key_name(&self, family: &str, i: u64) -> String {
        let digits = self.key_digits as usize;
        let full = format!("{i:0digits$}");
        let low = &full[full.len() - digits.min(full.len())..];
        format!("{}{family}:{low}", self.key_prefix)
    }

    /// Whether a command of the mix needs its string values to be integers (`INCR` on
    /// `xxxx` would measure the error path).
    pub fn needs_integers(&self) -> bool {
        self.commands.iter().any(|c| {
            let name = c.command.split_whitespace().next().unwrap_or("");
            ["INCR", "DECR", "INCRBY", "DECRBY", "INCRBYFLOAT"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// The preset called `name`, or an error listing them.
    pub fn preset(name: &str) -> Result<(WorkloadSpec, u32), WorkloadError> {
        let p = PRESETS
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| WorkloadError {
                field: "workload".into(),
                value: format!("{name:?}"),
                fix: format!(
                    "use a preset ({}) or a workload file",
                    preset_names().join(", ")
                ),
            })?;
        let spec = WorkloadSpec {
            name: p.name.into(),
            seed: default_seed(),
            keyspace: p.keyspace,
            key_prefix: String::new(),
            key_digits: default_key_digits(),
            keys: KeyDistribution::Uniform,
            values: ValueSize::Fixed {
                bytes: p.value_bytes,
            },
            commands: p
                .mix
                .iter()
                .map(|&(command, weight)| WeightedCommand {
                    command: command.into(),
                    weight,
                })
                .collect(),
            subscribers: p.subscribers,
        };
        Ok((spec, p.pipeline))
    }

    /// One command at weight 1: `--command GET --keyspace N --value-size B`.
    pub fn single(command: &str, keyspace: u64, value_bytes: u32) -> WorkloadSpec {
        WorkloadSpec {
            name: command.to_ascii_uppercase(),
            seed: default_seed(),
            keyspace,
            key_prefix: String::new(),
            key_digits: default_key_digits(),
            keys: KeyDistribution::Uniform,
            values: ValueSize::Fixed { bytes: value_bytes },
            commands: vec![WeightedCommand {
                command: command.into(),
                weight: 1,
            }],
            subscribers: 0,
        }
    }

    pub fn from_toml(text: &str) -> Result<WorkloadSpec, WorkloadError> {
        let spec: WorkloadSpec = toml::from_str(text).map_err(|e| WorkloadError {
            field: "workload file".into(),
            value: String::new(),
            fix: e.to_string(),
        })?;
        spec.compile()?;
        Ok(spec)
    }

    /// Checks every field and turns the templates into their encoded form.
    pub fn compile(&self) -> Result<Vec<Template>, WorkloadError> {
        let err = |field: &str, value: String, fix: &str| WorkloadError {
            field: field.into(),
            value,
            fix: fix.into(),
        };
        if self.commands.is_empty() {
            return Err(err("commands", "[]".into(), "give at least one command"));
        }
        if self.subscribers > 10_000 || (self.subscribers > 0 && self.keyspace > 10_000) {
            return Err(err(
                "subscribers",
                self.subscribers.to_string(),
                "use at most 10000 subscribers, on at most 10000 channels (keyspace)",
            ));
        }
        if !(1..=100_000_000_000).contains(&self.keyspace) {
            return Err(err(
                "keyspace",
                self.keyspace.to_string(),
                "use 1 to 10^11 keys",
            ));
        }
        let needed = digits(self.keyspace - 1);
        if self.key_digits < needed || self.key_digits > 64 {
            return Err(err(
                "key_digits",
                self.key_digits.to_string(),
                &format!("use {needed} to 64 (the keyspace needs {needed} digits)"),
            ));
        }
        if self.key_prefix.len() > 1024
            || self
                .key_prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(err(
                "key_prefix",
                format!("{:?}", self.key_prefix),
                "use up to 1024 bytes without spaces or control characters",
            ));
        }
        match &self.keys {
            KeyDistribution::Zipf { s } if !(s.is_finite() && *s > 0.0) => {
                return Err(err(
                    "keys.s",
                    s.to_string(),
                    "the Zipf exponent must be > 0 (0.99 is typical)",
                ));
            }
            KeyDistribution::Gaussian { mean, stddev }
                if !(mean.is_finite() && stddev.is_finite() && *stddev > 0.0) =>
            {
                return Err(err(
                    "keys.stddev",
                    stddev.to_string(),
                    "mean and stddev are fractions of the keyspace; stddev > 0",
                ));
            }
            _ => {}
        }
        let max_value = 512 * 1024 * 1024;
        match &self.values {
            ValueSize::Fixed { bytes } if *bytes > max_value => {
                return Err(err(
                    "values.bytes",
                    bytes.to_string(),
                    "use at most 512 MiB",
                ));
            }
            ValueSize::Uniform { min, max } if min > max || *max > max_value => {
                return Err(err(
                    "values",
                    format!("min {min}, max {max}"),
                    "use min ≤ max ≤ 512 MiB",
                ));
            }
            ValueSize::Weighted { sizes }
                if sizes.is_empty() || sizes.iter().any(|s| s.1 == 0 || s.0 > max_value) =>
            {
                return Err(err(
                    "values.sizes",
                    format!("{sizes:?}"),
                    "give [bytes, weight] pairs with weight ≥ 1",
                ));
            }
            _ => {}
        }
        self.commands
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if c.weight == 0 {
                    return Err(err(
                        &format!("commands[{i}].weight"),
                        "0".into(),
                        "use a weight of at least 1",
                    ));
                }
                Template::compile(&c.command, self).map_err(|why| {
                    err(
                        &format!("commands[{i}].command"),
                        format!("{:?}", c.command),
                        &why,
                    )
                })
            })
            .collect()
    }
}

pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

fn digits(mut n: u64) -> u32 {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// An invalid workload: which field, which value, how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadError {
    pub field: String,
    pub value: String,
    pub fix: String,
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.field, self.fix)
        } else {
            write!(
                f,
                "workload field `{}`: invalid value {}; {}",
                self.field, self.value, self.fix
            )
        }
    }
}

impl std::error::Error for WorkloadError {}

/// Per-command weights, for reporting.
pub fn weights(spec: &WorkloadSpec) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for c in &spec.commands {
        *out.entry(c.command.to_ascii_uppercase()).or_default() += c.weight;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{self, Frame};
    use rand::Rng;

    fn encode(spec: &WorkloadSpec, index: usize, key: u64, value_len: usize) -> Vec<u8> {
        let templates = spec.compile().unwrap();
        let mut out = Vec::new();
        let value = vec![b'v'; 64];
        templates[index].encode(
            &mut out,
            &mut || key,
            &mut || 7,
            &Fill {
                value: &value,
                value_len,
                score: 42,
                stamp: 123,
            },
        );
        out
    }

    #[test]
    fn a_templates_slot_is_the_slot_of_the_key_it_encodes() {
        use crate::cluster::{DigitSlots, SlotPrefix, key_slot};
        for digits in [4, 12, 24] {
            let spec = WorkloadSpec {
                key_digits: digits,
                key_prefix: "app:".into(),
                ..WorkloadSpec::single("GET {key}", 10_000, 8)
            };
            let t = &spec.compile().unwrap()[0];
            let KeyRoute::Drawn { prefix, keys: 1 } = &t.route else {
                panic!("{:?}", t.route)
            };
            let (zeros, width) = t.varying_digits(spec.keyspace);
            assert_eq!(
                (zeros + width, width),
                (digits as usize, 4),
                "{digits} digits"
            );
            let mut fixed = prefix.clone();
            fixed.resize(fixed.len() + zeros, b'0');
            let slots = DigitSlots::new(SlotPrefix::new(&fixed), width).unwrap();
            for key in [0, 7, 9_999] {
                let name = args(&encode(&spec, 0, key, 0))[1].clone();
                let slot = key_slot(name.as_bytes());
                assert_eq!(t.slot_of(SlotPrefix::new(prefix), key), slot);
                assert_eq!(slots.slot(key), slot);
            }
        }
        let routes = |command: &str| {
            WorkloadSpec::single(command, 10, 8).compile().unwrap()[0]
                .route
                .clone()
        };
        assert_eq!(routes("PING"), KeyRoute::None);
        assert_eq!(
            routes("LPUSH mylist {value}"),
            KeyRoute::Literal(b"mylist".to_vec())
        );
        assert!(matches!(routes("MSET"), KeyRoute::Drawn { keys: 10, .. }));
        assert_eq!(
            routes("HSET myhash {key} {value}"),
            KeyRoute::Literal(b"myhash".to_vec()),
            "the first argument is the key"
        );
    }

    fn args(bytes: &[u8]) -> Vec<String> {
        let (frame, used) = resp::parse(bytes).unwrap();
        assert_eq!(used, bytes.len());
        let Frame::Array(Some(items)) = frame else {
            panic!("not an array")
        };
        items
            .iter()
            .map(|f| match f {
                Frame::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn prepared_requests_match_encode_for_every_template() {
        let mut rng = crate::distribution::worker_rng(7, 0);
        let value = vec![b'v'; 1024];
        let mut commands: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        commands.push("SET {key} {value} EX 60".into());
        commands.push("HSET {key} {member} {value} f2 {stamp}".into());
        let mut prepared_some = 0;
        for command in &commands {
            for (digits, value_len) in [(12, 32), (3, 5), (20, 0), (64, 1000)] {
                let mut spec = WorkloadSpec::single(command, 1000, value_len as u32);
                spec.key_digits = digits;
                spec.key_prefix = "p:".into();
                let template = &spec.compile().unwrap()[0];
                let Some(prepared) = template.prepare(&value, Some(value_len)) else {
                    assert!(template.uses_score, "{command} is not prepared");
                    continue;
                };
                prepared_some += 1;
                for _ in 0..50 {
                    let (key, member, stamp) = (
                        rng.random::<u64>() >> rng.random_range(0..64),
                        rng.random::<u64>() >> 40,
                        rng.random::<u64>() >> 3,
                    );
                    let fill = Fill {
                        value: &value,
                        value_len,
                        score: 0,
                        stamp,
                    };
                    let (mut want, mut got) = (b"prefix".to_vec(), b"prefix".to_vec());
                    template.encode(&mut want, &mut || key, &mut || member, &fill);
                    prepared.encode(&mut got, &mut || key, &mut || member, stamp);
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want),
                        "{command} digits {digits} value {value_len}"
                    );
                }
            }
        }
        assert!(prepared_some > 80, "only {prepared_some} prepared");
        // Variable value sizes cannot be prepared for templates that carry a value.
        let spec = WorkloadSpec::single("SET", 10, 5);
        assert_eq!(spec.compile().unwrap()[0].prepare(&value, None), None);
        let spec = WorkloadSpec::single("GET", 10, 5);
        assert!(spec.compile().unwrap()[0].prepare(&value, None).is_some());
    }

    #[test]
    fn push_padded_writes_exactly_width_low_digits() {
        let mut rng = crate::distribution::worker_rng(1, 0);
        let mut numbers: Vec<u64> = vec![0, 1, 9, 10, 99, 100, 101, 999, 1000, u64::MAX];
        numbers.extend((0..2000).map(|_| {
            rand::Rng::random::<u64>(&mut rng) >> (rand::Rng::random_range(&mut rng, 0..64))
        }));
        for n in numbers {
            for width in [1, 2, 3, 7, 12, 19, 20, 21, 64] {
                let mut out = b"x".to_vec();
                push_padded(&mut out, n, width);
                let full = format!("{n:064}");
                let want = format!("x{}\r\n", &full[64 - width..]);
                assert_eq!(String::from_utf8(out).unwrap(), want, "n={n} width={width}");
            }
        }
    }

    #[test]
    fn key_names_are_the_ones_the_encoder_writes() {
        let mut spec = WorkloadSpec::single("GET", 100_000, 5);
        assert_eq!(
            args(&encode(&spec, 0, 123, 5))[1],
            spec.key_name("key", 123)
        );
        spec.key_prefix = "bench:".into();
        spec.key_digits = 6;
        assert_eq!(args(&encode(&spec, 0, 123, 5))[1], "bench:key:000123");
        assert_eq!(spec.key_name("key", 123), "bench:key:000123");
        assert_eq!(spec.key_name("key", 1_234_567), "bench:key:234567");
        assert!(!spec.needs_integers());
        assert!(WorkloadSpec::single("incr", 10, 5).needs_integers());
    }

    #[test]
    fn builtins_encode_valid_resp_with_family_keys() {
        let spec = WorkloadSpec::single("GET", 100_000, 5);
        assert_eq!(args(&encode(&spec, 0, 123, 5)), ["GET", "key:000000000123"]);
        let spec = WorkloadSpec::single("set", 100_000, 5);
        assert_eq!(
            args(&encode(&spec, 0, 0, 5)),
            ["SET", "key:000000000000", "vvvvv"]
        );
        let spec = WorkloadSpec::single("ZADD", 10, 5);
        assert_eq!(
            args(&encode(&spec, 0, 9, 5)),
            ["ZADD", "zset:000000000009", "42", "m:000000000007"]
        );
        let spec = WorkloadSpec::single("HSET", 10, 3);
        assert_eq!(
            args(&encode(&spec, 0, 1, 3)),
            ["HSET", "hash:000000000001", "m:000000000007", "vvv"]
        );
        let spec = WorkloadSpec::single("SISMEMBER", 10, 3);
        assert_eq!(args(&encode(&spec, 0, 1, 3))[1], "set:000000000001");
        let spec = WorkloadSpec::single("MGET", 10, 3);
        assert_eq!(args(&encode(&spec, 0, 1, 3)).len(), 11);
    }

    #[test]
    fn publish_carries_the_send_time_in_a_value_of_the_declared_size() {
        let spec = WorkloadSpec::single("PUBLISH", 10, 30);
        let a = args(&encode(&spec, 0, 3, 30));
        assert_eq!(a[0], "PUBLISH");
        assert_eq!(a[1], "channel:000000000003");
        assert_eq!(a[2].len(), 30);
        assert_eq!(&a[2][..STAMP_DIGITS], "00000000000000000123");
        // A value smaller than the stamp grows to hold it.
        assert_eq!(args(&encode(&spec, 0, 3, 4))[2].len(), STAMP_DIGITS);
    }

    #[test]
    fn templates_take_literals_prefixes_and_digit_widths() {
        let mut spec = WorkloadSpec::single("SET {key} {value} EX 100", 1000, 0);
        spec.key_prefix = "app:".into();
        spec.key_digits = 4;
        assert_eq!(
            args(&encode(&spec, 0, 999, 2)),
            ["SET", "app:key:0999", "vv", "EX", "100"]
        );
        assert_eq!(
            args(&encode(&spec, 0, 0, 0)),
            ["SET", "app:key:0000", "", "EX", "100"]
        );
    }

    #[test]
    fn every_preset_compiles() {
        for name in preset_names() {
            let (spec, pipeline) = WorkloadSpec::preset(name).unwrap();
            assert!(pipeline >= 1);
            assert!(!spec.compile().unwrap().is_empty(), "{name}");
        }
        let err = WorkloadSpec::preset("nope").err().unwrap().to_string();
        assert!(err.contains("basic_rw"), "{err}");
    }

    #[test]
    fn invalid_workloads_name_the_field() {
        let check = |text: &str, field: &str| {
            let err = WorkloadSpec::from_toml(text).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        };
        check("commands = []", "`commands`");
        check(
            "commands = [{ command = \"GET\", weight = 0 }]",
            "commands[0].weight",
        );
        check(
            "commands = [{ command = \"GET {nope}\" }]",
            "commands[0].command",
        );
        check(
            "keyspace = 1000\nkey_digits = 2\ncommands = [{ command = \"GET\" }]",
            "key_digits",
        );
        check(
            "commands = [{ command = \"GET\" }]\n[keys]\nkind = \"zipf\"\ns = 0.0",
            "keys.s",
        );
        check(
            "commands = [{ command = \"GET\" }]\n[values]\nkind = \"uniform\"\nmin = 5\nmax = 1",
            "`values`",
        );
        check("comands = []", "comands");
        let ok = WorkloadSpec::from_toml(
            "seed = 9\ncommands = [{ command = \"GET\", weight = 3 }, { command = \"SET\" }]\n[keys]\nkind = \"zipf\"\ns = 0.99\n[values]\nkind = \"weighted\"\nsizes = [[8, 1], [512, 3]]",
        )
        .unwrap();
        assert_eq!(ok.seed, 9);
        assert_eq!(weights(&ok)["GET"], 3);
    }
}
