//! The Valkey queue (`--queue valkey://HOST[:PORT]/NAME`): runners on several machines
//! share one ordinary Valkey server. Every key is under the hash tag `{NAME}` (one slot,
//! so a cluster works too):
//!
//! - `{NAME}:stream`: the work, one entry (`id <task id>`) per delivery, read by the
//!   consumer group `runners`, each runner a consumer;
//! - `{NAME}:task:<id>`: the task's hash: `doc` (the queued document, never rewritten),
//!   `state`, `deliveries`, `entry` (its stream entry while pending or running), `runner`,
//!   `heartbeat_ms`, the live status (`step`, `done`, `total`, `last`, `figures`, `warnings`, `status_ms`), and
//!   once finished `error`, `results`, `verdict`, `summary`, `finished_ms`: what every
//!   client reads;
//! - `{NAME}:ids`: the ids by the time they were queued;
//! - `{NAME}:dead`: the dead-letter stream (tasks past their deliveries, entries that name
//!   no task), each with its reason;
//! - `{NAME}:runner:<runner>`: a runner's heartbeat, expiring after its lease.
//!
//! A runner claims with XREADGROUP and marks the task running in the same script that
//! checks it is still pending (a cancel is one script too, so one of them wins). While it
//! runs, the heartbeat (a third of the lease) re-claims its own entry with XCLAIM JUSTID,
//! which resets the entry's idle time without counting a delivery, and renews its key. A
//! dead runner's entries go idle: XAUTOCLAIM with the lease as the idle time (three
//! heartbeats) takes them, and they go back to pending unless their runner's key still
//! lives, in which case they are handed back to it. The entry is acknowledged only when the
//! task is filed, after its results are on disk (appended with fsync, `task.json` written
//! atomically). Every transition is one Lua script: atomic on the server.
//!
//! Nothing read from the server reaches a shell or a path: an id is checked
//! ([`check_id`]) before it names a key, the document is parsed as any task's, and the
//! other fields are only shown.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use bench_core::client::{Client, ClientError, Value};

use super::{Entry, Queue, Seat, State, Status, Task, Unreachable, check_id, now_ms};
use crate::error::UsageError;
use access::{Access, QueueUrl, parse_url};
use scripts::{ADD, CANCEL, PAGE, REMOVE, RETRY};
use seat::StreamSeat;

pub mod access;
mod scripts;
mod seat;

/// The consumer group every runner reads through.
const GROUP: &str = "runners";

/// How long a connect, a read or a write to the queue server may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a finished task's summary kept in the queue, and the most of any field
/// but the document read from it.
const MAX_SUMMARY_BYTES: usize = 64 * 1024;

/// A stream entry's fields as read: how many names and values (32 fields), and how long
/// each (`scripts::read`).
const ENTRY_FIELDS: usize = 64;
const ENTRY_FIELD_BYTES: usize = 256;

/// Tasks listed per round trip: each at most a document and 64 KiB a field.
const PAGE_TASKS: usize = 50;

/// Queue names: one hash tag, nothing a key pattern or a URL would read differently.
fn check_name(name: &str) -> Result<(), String> {
    if super::safe_name(name, 64) {
        Ok(())
    } else {
        Err(format!(
            "queue name {name:?}: 1-64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// One connection to the queue server, made again after it broke (the name resolved
/// again each time: a server that moved is found).
struct Conn {
    location: String,
    hostport: String,
    /// TLS and AUTH, from the environment (`access.rs`).
    access: Access,
    /// For a connect, a read, a write; a runner sets it below its lease.
    timeout: Mutex<Duration>,
    client: Mutex<Option<Client>>,
}

/// Server errors that say "not now" (loading after a restart, a script running long, a
/// replica read-only during a failover, no room for one more client): waited out like a
/// server that cannot be reached.
const TRANSIENT: [&str; 7] = [
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
    "ERR max number of clients",
];

impl Conn {
    fn unreachable(&self, why: impl std::fmt::Display) -> anyhow::Error {
        Unreachable {
            location: self.location.clone(),
            why: why.to_string(),
        }
        .into()
    }

    fn connect(&self) -> anyhow::Result<Client> {
        let timeout = *self.timeout.lock().unwrap_or_else(|e| e.into_inner());
        let addrs: Vec<SocketAddr> = self
            .hostport
            .to_socket_addrs()
            .map_err(|e| self.unreachable(format!("{}: {e}", self.hostport)))?
            .collect();
        let mut last = format!("{}: no address", self.hostport);
        for addr in addrs {
            match Client::connect(addr, self.access.tls.as_ref(), timeout) {
                Ok(client) => return self.authenticate(client),
                // A certificate that does not verify, or a TLS client on a plain port,
                // stays so however long a runner waits: the user's to fix (exit 2).
                Err(ClientError::Tls { why, .. }) => {
                    return Err(UsageError(format!(
                        "{}: TLS with the queue server failed ({why}); check {} and the server's \
                         certificate and TLS port",
                        self.location,
                        access::CA
                    ))
                    .into());
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(self.unreachable(last))
    }

    /// AUTH as the configured user, if any. A refusal is the user's error (exit 2), not an
    /// outage a runner would wait out; the password is never part of a message.
    fn authenticate(&self, mut client: Client) -> anyhow::Result<Client> {
        let Some(auth) = &self.access.auth else {
            return Ok(client);
        };
        match client.call(&["AUTH", &auth.user, auth.password()]) {
            Ok(_) => Ok(client),
            // A full or loading server answers the first command so: not a refusal.
            Err(ClientError::Server { message, .. })
                if TRANSIENT.iter().any(|t| message.starts_with(t))
                    || message.contains("max number of clients") =>
            {
                Err(self.unreachable(format!("the server answers {message:?}")))
            }
            Err(ClientError::Server { message, .. }) => Err(UsageError(format!(
                "{}: the queue server refused AUTH as user {:?} ({message}); check {} or {}",
                self.location,
                auth.user,
                access::PASSWORD_FILE,
                access::PASSWORD
            ))
            .into()),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    /// Sends one command; a broken connection is dropped (the next call reconnects) and
    /// reported as [`Unreachable`], as are the server's "not now" errors.
    fn call<A: AsRef<[u8]>>(&self, args: &[A]) -> anyhow::Result<Value> {
        self.with_client(|client| client.call(args))
    }

    /// Runs one of the scripts of `scripts.rs` (by its digest, loaded when the server
    /// lacks it), as [`Conn::call`] runs a command.
    fn script(&self, script: &str, keys: &[&str], args: &[&str]) -> anyhow::Result<Value> {
        self.with_client(|client| client.script(script, keys, args))
    }

    fn with_client(
        &self,
        request: impl FnOnce(&mut Client) -> Result<Value, ClientError>,
    ) -> anyhow::Result<Value> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(self.connect()?);
        }
        let client = slot.as_mut().expect("connected above");
        match request(client) {
            Ok(value) => Ok(value),
            Err(ClientError::Server { message, .. })
                if TRANSIENT.iter().any(|t| message.starts_with(t)) =>
            {
                Err(self.unreachable(format!("the server answers {message:?}")))
            }
            Err(ClientError::Server { message, .. }) if message.starts_with("NOAUTH") => {
                Err(UsageError(format!(
                    "{}: the queue server requires AUTH ({message}); set {} and {}=FILE",
                    self.location,
                    access::USER,
                    access::PASSWORD_FILE
                ))
                .into())
            }
            Err(ClientError::Server { message, .. })
                if message.starts_with("MOVED") || message.starts_with("ASK") =>
            {
                anyhow::bail!(
                    "{}: the server is a cluster node that does not hold this queue's slot \
                     ({message}); give a standalone Valkey (or a cluster's node that owns it)",
                    self.location
                )
            }
            Err(e @ ClientError::Server { .. }) => Err(e.into()),
            Err(e) => {
                *slot = None;
                Err(self.unreachable(e))
            }
        }
    }

    /// Reads and writes take at most `timeout` from now on.
    fn set_timeout(&self, timeout: Duration) {
        *self.timeout.lock().unwrap_or_else(|e| e.into_inner()) = timeout;
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Simple(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(Some(items)) => items,
        _ => &[],
    }
}

/// The fields of a task's hash `list` reads: all but the summary.
const LISTED: [&str; 21] = [
    "doc",
    "state",
    "deliveries",
    "runner",
    "heartbeat_ms",
    "error",
    "results",
    "verdict",
    "finished_ms",
    "step",
    "done",
    "total",
    "last",
    "figures",
    "warnings",
    "status_ms",
    "unit",
    "seconds",
    "seconds_total",
    "hosts",
    "entry",
];

/// A Valkey queue: the server's address and the queue's name.
pub struct ValkeyQueue {
    conn: Conn,
    name: String,
}

impl ValkeyQueue {
    /// Parses the URL; the server is reached at the first command (a bad URL is the
    /// user's error, exit 2; a server out of reach is [`Unreachable`]).
    pub fn open(url: &str) -> anyhow::Result<ValkeyQueue> {
        let QueueUrl {
            hostport,
            host,
            name,
            tls,
        } = parse_url(url).map_err(UsageError)?;
        let access =
            Access::from_env(tls, &host, &|k| std::env::var(k).ok()).map_err(UsageError)?;
        let scheme = if tls { "valkeys" } else { "valkey" };
        Ok(ValkeyQueue {
            conn: Conn {
                location: format!("{scheme}://{hostport}/{name}"),
                hostport,
                access,
                timeout: Mutex::new(TIMEOUT),
                client: Mutex::new(None),
            },
            name,
        })
    }

    /// The stream and its consumer group (again after a server that lost its data).
    fn ensure_group(&self) -> anyhow::Result<()> {
        match self.conn.call(&[
            "XGROUP",
            "CREATE",
            &self.key("stream"),
            GROUP,
            "0",
            "MKSTREAM",
        ]) {
            Ok(_) => Ok(()),
            Err(e) if format!("{e}").contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn key(&self, what: &str) -> String {
        format!("{{{}}}:{what}", self.name)
    }

    fn task_key(&self, id: &str) -> String {
        self.key(&format!("task:{id}"))
    }

    /// Runs a script that answers `ok` or the state that stopped it (`only` says which
    /// state the action takes). A refusal is the user's error (exit 2).
    fn transition(
        &self,
        script: &str,
        id: &str,
        only: &str,
        keys: &[&str],
        args: &[&str],
    ) -> anyhow::Result<()> {
        check_id(id).map_err(UsageError)?;
        let reply = self.conn.script(script, keys, args)?;
        let refused = match text(&reply).as_deref() {
            Some("ok") => return Ok(()),
            Some("missing") => format!("no task {id} in {}", self.location()),
            Some(state) => match state.split_once(' ') {
                Some(("running", runner)) => {
                    format!("task {id} is running (runner {runner}); {only}")
                }
                _ => format!("task {id} is {state}; {only}"),
            },
            None => anyhow::bail!("task {id}: the queue replied {reply:?}"),
        };
        Err(UsageError(refused).into())
    }

    /// The tasks of ranks `first..=last` in `{NAME}:ids` with `fields` (none: all), each
    /// cut to size on the server (`scripts::PAGE`); ids that are not ours skipped.
    fn page(&self, first: usize, last: usize, fields: &[&str]) -> anyhow::Result<Vec<Entry>> {
        let (doc_cap, cap, n) = (
            (super::MAX_TASK_BYTES + 1).to_string(),
            MAX_SUMMARY_BYTES.to_string(),
            fields.len().to_string(),
        );
        let (first, last) = (first.to_string(), last.to_string());
        let mut args = vec![first.as_str(), &last, &doc_cap, &cap, &n];
        args.extend_from_slice(fields);
        let reply = self.conn.script(PAGE, &[&self.key("ids")], &args)?;
        Ok(items(&reply)
            .iter()
            .filter_map(|row| {
                let id = items(row).first().and_then(text)?;
                check_id(&id).ok()?;
                self.entry(&id, items(row).get(1).map(items).unwrap_or(&[]))
            })
            .collect())
    }

    /// One task's hash as an entry (`None`: no such task).
    fn entry(&self, id: &str, fields: &[Value]) -> Option<Entry> {
        let mut map = std::collections::HashMap::new();
        for pair in fields.chunks(2) {
            if let [k, v] = pair
                && let (Some(k), Some(v)) = (text(k), text(v))
            {
                map.insert(k, v);
            }
        }
        let get = |k: &str| map.get(k).cloned();
        let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
        let state = State::parse(&get("state")?)?;
        let task = match get("doc") {
            None => Err("the task's hash has no document".to_string()),
            Some(doc) => Task::parse(doc.as_bytes()).and_then(|mut task| {
                if task.id != id {
                    return Err(format!("id {:?} is not its key's ({id})", task.id));
                }
                task.deliveries = num("deliveries").unwrap_or(0) as u32;
                task.error = get("error");
                task.results = get("results");
                task.verdict = get("verdict");
                task.finished = num("finished_ms").and_then(|ms| {
                    chrono::DateTime::from_timestamp_millis(ms as i64).map(|t| t.to_rfc3339())
                });
                Ok(task)
            }),
        };
        let status = get("step").map(|step| Status {
            step,
            done: num("done").unwrap_or(0),
            total: num("total").unwrap_or(0),
            unit: get("unit").unwrap_or_default(),
            seconds: get("seconds")
                .and_then(|f| serde_json::from_str(&f).ok())
                .unwrap_or_default(),
            seconds_total: num("seconds_total").unwrap_or(0),
            last: get("last").unwrap_or_default(),
            updated_ms: num("status_ms").unwrap_or(0),
            figures: get("figures")
                .and_then(|f| serde_json::from_str(&f).ok())
                .unwrap_or_default(),
            warnings: get("warnings")
                .and_then(|f| serde_json::from_str(&f).ok())
                .unwrap_or_default(),
            hosts: get("hosts").unwrap_or_default(),
        });
        Some(Entry {
            runner: get("runner"),
            heartbeat_ms: num("heartbeat_ms"),
            status,
            summary: get("summary"),
            ..Entry::new(state, id.to_string(), task)
        })
    }
}

impl Queue for ValkeyQueue {
    fn location(&self) -> String {
        self.conn.location.clone()
    }

    fn add(&self, task: &Task) -> anyhow::Result<()> {
        check_id(&task.id).map_err(anyhow::Error::msg)?;
        self.ensure_group()?;
        let doc = String::from_utf8(task.to_json()).expect("JSON is UTF-8");
        let queued = now_ms().to_string();
        let (hash, ids, stream) = (self.task_key(&task.id), self.key("ids"), self.key("stream"));
        let reply = self
            .conn
            .script(ADD, &[&hash, &ids, &stream], &[&task.id, &doc, &queued])?;
        match text(&reply) {
            None => Ok(()),
            Some(state) => anyhow::bail!("task {} is already {state}", task.id),
        }
    }

    fn list(&self) -> anyhow::Result<Vec<Entry>> {
        let total = match self.conn.call(&["ZCARD", &self.key("ids")])? {
            Value::Integer(n) => n.max(0) as usize,
            _ => 0,
        };
        // From the last page to the first (the script trims as it reads), every field but
        // the summary (`find` reads it).
        let mut pages = Vec::new();
        let mut end = total;
        while end > 0 {
            let start = end.saturating_sub(PAGE_TASKS);
            pages.push(self.page(start, end - 1, &LISTED)?);
            end = start;
        }
        let mut entries: Vec<Entry> = pages.into_iter().rev().flatten().collect();
        entries.sort_by_key(|e| e.state);
        Ok(entries)
    }

    fn find(&self, id: &str) -> anyhow::Result<Option<Entry>> {
        check_id(id).map_err(UsageError)?;
        let rank = self.conn.call(&["ZRANK", &self.key("ids"), id])?;
        let Value::Integer(rank) = rank else {
            return Ok(None);
        };
        let rank = rank.max(0) as usize;
        Ok(self
            .page(rank, rank, &[])?
            .into_iter()
            .find(|e| e.name == id))
    }

    fn cancel(&self, id: &str) -> anyhow::Result<()> {
        let (hash, stream) = (self.task_key(id), self.key("stream"));
        self.transition(
            CANCEL,
            id,
            "only a pending task is cancelled",
            &[&hash, &stream],
            &[&now_ms().to_string()],
        )
    }

    fn retry(&self, id: &str) -> anyhow::Result<()> {
        let (hash, stream) = (self.task_key(id), self.key("stream"));
        self.transition(
            RETRY,
            id,
            "only a failed task is queued again",
            &[&hash, &stream],
            &[id],
        )
    }

    fn remove(&self, id: &str) -> anyhow::Result<()> {
        let (hash, stream, ids) = (self.task_key(id), self.key("stream"), self.key("ids"));
        self.transition(
            REMOVE,
            id,
            "stop its runner first",
            &[&hash, &stream, &ids],
            &[id],
        )
    }

    fn join(&self, lease: Duration) -> anyhow::Result<Box<dyn Seat + '_>> {
        // A random suffix: pids repeat across machines (1 in every container).
        let salt = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            now_ms(),
        );
        let id = format!(
            "{}-{}-{:012x}",
            super::host_name(),
            std::process::id(),
            salt & 0xffff_ffff_ffff
        );
        // Every call well inside a heartbeat, so one slow reply cannot outlast the lease.
        self.conn
            .set_timeout((lease / 4).clamp(Duration::from_millis(250), TIMEOUT));
        self.ensure_group()?;
        let seat = StreamSeat::new(self, id, lease);
        seat.renew()?;
        Ok(Box::new(seat))
    }
}
