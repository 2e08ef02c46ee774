//! The commands the perf suite measures, and what each needs before it can be measured.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A command of the perf matrix. Key and member names follow valkey-benchmark's built-in
/// tests, so both engines touch the same data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Ping,
    Set,
    Get,
    Incr,
    Lpush,
    Rpush,
    Lpop,
    Rpop,
    Sadd,
    Hset,
    Zadd,
    Mset,
}

/// What a fresh server must hold before a command measures what it claims to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preload {
    /// Nothing: the command writes.
    None,
    /// Every key `key:NNNNNNNNNNNN` of the keyspace holds a value of the case's size, so
    /// every read is a hit.
    Strings,
    /// The list `mylist` holds at least as many elements as the run pops, so no pop
    /// returns nil.
    List,
}

impl Command {
    pub const ALL: [Command; 12] = [
        Command::Ping,
        Command::Set,
        Command::Get,
        Command::Incr,
        Command::Lpush,
        Command::Rpush,
        Command::Lpop,
        Command::Rpop,
        Command::Sadd,
        Command::Hset,
        Command::Zadd,
        Command::Mset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Command::Ping => "PING",
            Command::Set => "SET",
            Command::Get => "GET",
            Command::Incr => "INCR",
            Command::Lpush => "LPUSH",
            Command::Rpush => "RPUSH",
            Command::Lpop => "LPOP",
            Command::Rpop => "RPOP",
            Command::Sadd => "SADD",
            Command::Hset => "HSET",
            Command::Zadd => "ZADD",
            Command::Mset => "MSET",
        }
    }

    /// Whether the value size changes what the command does. PING, INCR, SADD and ZADD
    /// carry no value (valkey-benchmark's SADD/ZADD members are `element:N`), so the
    /// matrix does not multiply them by value sizes.
    pub fn uses_value_size(self) -> bool {
        !matches!(
            self,
            Command::Ping | Command::Incr | Command::Sadd | Command::Zadd
        )
    }

    /// Whether its keys are string keys drawn from the keyspace, so the keyspace is its
    /// working set (the perf matrix multiplies these by keyspaces).
    pub fn keys_from_keyspace(self) -> bool {
        matches!(
            self,
            Command::Set | Command::Get | Command::Incr | Command::Mset
        )
    }

    /// Whether the keyspace shapes its requests: its keys, or the members it adds to its
    /// one collection (SADD, HSET, ZADD).
    pub fn uses_keyspace(self) -> bool {
        self.keys_from_keyspace() || matches!(self, Command::Sadd | Command::Hset | Command::Zadd)
    }

    /// What must exist before it runs. Commands on string keys find every key of the
    /// keyspace written: reads hit, and writes overwrite from the first request, so a
    /// faster build does not do a different mix of inserts and overwrites.
    pub fn preload(self) -> Preload {
        match self {
            c if c.keys_from_keyspace() => Preload::Strings,
            Command::Lpop | Command::Rpop => Preload::List,
            _ => Preload::None,
        }
    }

    /// Keys written per request (MSET writes ten, as in valkey-benchmark).
    pub fn keys_per_request(self) -> u64 {
        if self == Command::Mset { 10 } else { 1 }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Command {
    type Err = String;

    fn from_str(s: &str) -> Result<Command, String> {
        Command::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Command::ALL.iter().map(|c| c.name()).collect();
                format!("unknown command {s:?}; known: {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for c in Command::ALL {
            assert_eq!(c.name().parse::<Command>(), Ok(c));
            assert_eq!(c.name().to_lowercase().parse::<Command>(), Ok(c));
        }
        let err = "GETT".parse::<Command>().unwrap_err();
        assert!(err.contains("GETT") && err.contains("HSET"), "{err}");
    }
}
