//! The pipelined populator: fills a fresh server with exactly the data a case declares,
//! then checks that it is all there.
//!
//! Key names match valkey-benchmark's (`key:` + 12 zero-padded digits), so reads by either
//! engine hit.

use std::time::Instant;

use crate::client::{Client, ClientError, Value};
use crate::cluster::{KeyedClient, Single};

/// Commands sent per round trip.
const BATCH: usize = 1000;
/// Value bytes sent per round trip, at most (about): 1000 MSETs of 100 values of 64 KiB
/// would be 6.4 GB in the write buffer.
const BATCH_BYTES: usize = 8 << 20;
/// Keys per MSET when every key lives on one node: the server's per-command cost (read,
/// parse, dispatch, reply) is paid once per this many keys.
const KEYS_PER_MSET: usize = 100;
/// List elements per RPUSH.
const ELEMENTS_PER_PUSH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum PopulateError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{what}: expected {expected} after populating, the server holds {actual}")]
    Mismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("`{command}` during populate replied {reply:?}")]
    Reply { command: &'static str, reply: Value },
}

/// What a populate wrote and how fast.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Populated {
    pub items: u64,
    pub seconds: f64,
}

impl Populated {
    pub fn items_per_sec(&self) -> f64 {
        self.items as f64 / self.seconds.max(1e-9)
    }
}

/// The key valkey-benchmark uses for random index `i`.
pub fn benchmark_key(i: u64) -> String {
    format!("key:{i:012}")
}

/// SETs every key of `0..keyspace` to a value of `value_size` bytes, then checks DBSIZE.
/// The server must be empty.
pub fn strings(
    client: &mut Client,
    keyspace: u64,
    value_size: u64,
) -> Result<Populated, PopulateError> {
    let value = vec![b'x'; value_size as usize];
    set_keys(&mut Single::new(client), keyspace, benchmark_key, |_| {
        &value
    })
}

/// SETs every string key a workload reads, named as its generator names them (its
/// `key_prefix` and `key_digits`), with values of its largest size, or `0` when a command
/// of the mix needs integers (INCR). The server (or the cluster: each key goes to its
/// slot's primary) must be empty.
pub fn workload_strings(
    client: &mut dyn KeyedClient,
    spec: &crate::workload::WorkloadSpec,
) -> Result<Populated, PopulateError> {
    let value = if spec.needs_integers() {
        b"0".to_vec()
    } else {
        vec![b'x'; spec.values.max() as usize]
    };
    set_keys(
        client,
        spec.keyspace,
        |i| spec.key_name("key", i),
        |_| &value,
    )
}

/// Like [`strings`], but every value is a different slice of a seeded random pool, so the
/// data does not compress (RDB files and replication transfers keep their size).
pub fn random_strings(
    client: &mut Client,
    keyspace: u64,
    value_size: u64,
    seed: u64,
) -> Result<Populated, PopulateError> {
    let size = value_size as usize;
    // A pool one MiB larger than a value: key i takes the slice at a pseudo-random offset.
    let pool_len = (1 << 20) + size;
    let mut pool = Vec::with_capacity(pool_len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while pool.len() < pool_len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pool.extend_from_slice(&x.to_le_bytes());
    }
    set_keys(&mut Single::new(client), keyspace, benchmark_key, |i| {
        let offset = (i.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 20) as usize % (1 << 20);
        &pool[offset..offset + size]
    })
}

/// Writes `name(N)` = `value(N)` for every N in `0..keyspace`, pipelined, then checks
/// DBSIZE: [`KEYS_PER_MSET`] keys per MSET on one node, one SET per key on a cluster
/// (each key to its slot's owner).
fn set_keys<'v>(
    client: &mut dyn KeyedClient,
    keyspace: u64,
    name: impl Fn(u64) -> String,
    value: impl Fn(u64) -> &'v [u8],
) -> Result<Populated, PopulateError> {
    let start = Instant::now();
    let per_command = if client.one_node() { KEYS_PER_MSET } else { 1 };
    // At most BATCH commands, and about BATCH_BYTES of values, per round trip.
    let value_bytes = value(0).len().max(1);
    let per_batch = (BATCH * per_command)
        .min(BATCH_BYTES / value_bytes)
        .max(per_command) as u64;
    let mut next = 0u64;
    while next < keyspace {
        let end = (next + per_batch).min(keyspace);
        let mut i = next;
        while i < end {
            let last = (i + per_command as u64).min(end);
            let keys: Vec<String> = (i..last).map(&name).collect();
            if per_command == 1 {
                client.queue_keyed(
                    keys[0].as_bytes(),
                    &[b"SET".as_slice(), keys[0].as_bytes(), value(i)],
                );
            } else {
                let mut args: Vec<&[u8]> = Vec::with_capacity(1 + 2 * keys.len());
                args.push(b"MSET");
                for (n, key) in (i..last).zip(&keys) {
                    args.push(key.as_bytes());
                    args.push(value(n));
                }
                client.queue_keyed(keys[0].as_bytes(), &args);
            }
            i = last;
        }
        check_replies(
            client.flush_all()?,
            if per_command == 1 { "SET" } else { "MSET" },
            |r| matches!(r, Value::Simple(s) if s == "OK"),
        )?;
        next = end;
    }
    let actual = client.dbsize()?;
    if actual != keyspace {
        return Err(PopulateError::Mismatch {
            what: "DBSIZE".into(),
            expected: keyspace,
            actual,
        });
    }
    Ok(Populated {
        items: keyspace,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// RPUSHes `count` elements of `value_size` bytes onto `key`, then checks LLEN.
/// The list must not exist yet.
pub fn list(
    client: &mut dyn KeyedClient,
    key: &str,
    count: u64,
    value_size: u64,
) -> Result<Populated, PopulateError> {
    let start = Instant::now();
    let value = vec![b'x'; value_size as usize];
    let mut pushed = 0u64;
    while pushed < count {
        let mut commands = 0;
        while pushed < count && commands < BATCH / 10 {
            let n = (count - pushed).min(ELEMENTS_PER_PUSH as u64) as usize;
            let mut args: Vec<&[u8]> = Vec::with_capacity(n + 2);
            args.push(b"RPUSH");
            args.push(key.as_bytes());
            args.extend(std::iter::repeat_n(value.as_slice(), n));
            client.queue_keyed(key.as_bytes(), &args);
            pushed += n as u64;
            commands += 1;
        }
        check_replies(client.flush_all()?, "RPUSH", |r| {
            matches!(r, Value::Integer(_))
        })?;
    }
    let actual = match client.call_keyed(key.as_bytes(), &[b"LLEN", key.as_bytes()])? {
        Value::Integer(n) => n as u64,
        reply => {
            return Err(PopulateError::Reply {
                command: "LLEN",
                reply,
            });
        }
    };
    if actual != count {
        return Err(PopulateError::Mismatch {
            what: format!("LLEN {key}"),
            expected: count,
            actual,
        });
    }
    Ok(Populated {
        items: count,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn check_replies(
    replies: Vec<Value>,
    command: &'static str,
    ok: impl Fn(&Value) -> bool,
) -> Result<(), PopulateError> {
    match replies.into_iter().find(|r| !ok(r)) {
        Some(reply) => Err(PopulateError::Reply { command, reply }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_valkey_benchmark() {
        assert_eq!(benchmark_key(0), "key:000000000000");
        assert_eq!(benchmark_key(99_999), "key:000000099999");
    }
}
