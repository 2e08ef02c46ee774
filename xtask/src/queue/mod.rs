//! The lab's task queue: a task document (one plan, as the CLI's own flags), the two
//! seams every backend fills ([`Queue`]: what any client does; [`Seat`]: what a runner
//! holding tasks does), and the backends. `dir.rs` is the embedded one: a directory of
//! `pending/`, `running/<runner>/`, `done/` and `failed/`, every file written atomically,
//! a task claimed by rename and held while its runner lives. `valkey.rs` is a Valkey
//! stream with a consumer group, for runners on several machines.
//!
//! A task from a shared queue is untrusted. Its flags are parsed by the same clap
//! definitions and checked by the same validation as the command line's (the runner
//! never hands them to a shell), and the flags that name a path on the machine that
//! queued it, or where results go, are refused: the runner chooses the run directory.

pub mod dir;
pub mod expand;
pub mod valkey;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The default queue: `queue/` at the project root.
pub fn default_root() -> std::path::PathBuf {
    crate::project::root().join("queue")
}

/// Opens the queue `--queue` names: `valkey://HOST[:PORT]/NAME` is a Valkey stream,
/// anything else a directory (default: `queue/` at the project root).
pub fn open(spec: Option<&str>) -> anyhow::Result<Box<dyn Queue>> {
    match spec {
        Some(url) if url.contains("://") => Ok(Box::new(valkey::ValkeyQueue::open(url)?)),
        Some(path) => Ok(Box::new(dir::DirQueue::open(std::path::Path::new(path))?)),
        None => Ok(Box::new(dir::DirQueue::open(&default_root())?)),
    }
}

/// A queue any client reads and changes: `queue add|list|show|cancel|retry|remove`, the
/// TUI.
pub trait Queue: Send + Sync {
    /// Where it is, for messages: a directory or `valkey://host:port/name`.
    fn location(&self) -> String;
    /// Queues `task`; refused if a task of that id is anywhere in the queue.
    fn add(&self, task: &Task) -> anyhow::Result<()>;
    /// Every task, by state and then age.
    fn list(&self) -> anyhow::Result<Vec<Entry>>;
    /// The task named `id`, wherever it is.
    fn find(&self, id: &str) -> anyhow::Result<Option<Entry>> {
        Ok(self.list()?.into_iter().find(|e| e.name == id))
    }
    /// A pending task goes to failed, "cancelled"; no runner can take it after.
    fn cancel(&self, id: &str) -> anyhow::Result<()>;
    /// A failed task is queued again, its deliveries and error cleared.
    fn retry(&self, id: &str) -> anyhow::Result<()>;
    /// A pending, done or failed task is deleted (not a running one).
    fn remove(&self, id: &str) -> anyhow::Result<()>;
    /// Joins as a runner whose heartbeat lasts `lease` unrenewed.
    fn join(&self, lease: Duration) -> anyhow::Result<Box<dyn Seat + '_>>;
}

/// A runner's place in a queue: it claims one task at a time, renews its heartbeat
/// while it runs (from another thread: `Sync`), reports its status, and files it.
pub trait Seat: Sync {
    fn id(&self) -> &str;
    /// How long the heartbeat lasts unrenewed.
    fn lease(&self) -> Duration;
    /// Renews the heartbeat. False when this runner no longer holds its task (its place
    /// was removed, or another runner took the task after the lease ran out): the task
    /// in hand must stop.
    fn renew(&self) -> anyhow::Result<bool>;
    /// Whether a heartbeat left unrenewed for the lease lets another runner take the held
    /// task, so that this one must stop it first (the Valkey queue). The directory queue
    /// knows a runner is alive by its `flock`, which no stall loses: there the lease is
    /// what `queue list` shows, and a failing renewal (a full disk) stops nothing.
    fn lease_fences(&self) -> bool {
        true
    }
    /// Takes the oldest pending task, if any; a task already delivered `max_deliveries`
    /// times fails (dead-lettered) instead of running again.
    fn claim(&self, max_deliveries: u32) -> anyhow::Result<Option<Claimed>>;
    /// Publishes the held task's live status (step, progress, last figures).
    fn report(&self, task: &Task, status: &Status) -> anyhow::Result<()>;
    /// Records how the held task ended. False when it was no longer this runner's to
    /// file (another runner took it): nothing was changed.
    fn finish(&self, task: Task, outcome: Outcome) -> anyhow::Result<bool>;
    /// Returns dead runners' tasks to pending; the ids returned.
    fn reclaim_dead(&self) -> anyhow::Result<Vec<String>>;
    /// Whether another runner holds a task (`--once` waits for it rather than stop: its
    /// runner may die and the task come back). A directory queue takes a dead runner's
    /// tasks back at once, and `--once` stops beside a live one's: never.
    fn held_elsewhere(&self) -> anyhow::Result<bool> {
        Ok(false)
    }
    /// Leaves the queue; a task still held goes back to pending.
    fn leave(self: Box<Self>) -> anyhow::Result<()>;
}

/// The queue could not be reached (a Valkey queue's server is down or restarting): a
/// runner waits and tries again; a client's command fails (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("queue {location} unreachable: {why}")]
pub struct Unreachable {
    pub location: String,
    pub why: String,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Running,
    Done,
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        [State::Pending, State::Running, State::Done, State::Failed]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// A task as listed: where it is, its document (or why it is not one), the runner
/// holding it, its live status and what a finished task left for every client to read.
#[derive(Debug)]
pub struct Entry {
    pub state: State,
    /// Its id (a directory queue's file name without `.json`).
    pub name: String,
    pub task: Result<Task, String>,
    pub runner: Option<String>,
    /// A running task's last heartbeat (ms since the epoch).
    pub heartbeat_ms: Option<u64>,
    /// A running task's step and progress.
    pub status: Option<Status>,
    /// A finished task's summary (its `summary.md` or `compare.md`), where the queue
    /// keeps it (a Valkey queue: every client reads it; a directory queue: the results
    /// directory has it).
    pub summary: Option<String>,
}

impl Entry {
    pub fn new(state: State, name: String, task: Result<Task, String>) -> Entry {
        Entry {
            state,
            name,
            task,
            runner: None,
            heartbeat_ms: None,
            status: None,
            summary: None,
        }
    }
}

/// The most measured seconds a status carries.
pub const MAX_STATUS_SECONDS: usize = 300;

/// What a running task is doing, as its run's events say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// `case 3/12 GET-64B-p16`, `trial 4 of GET-64B-p16`, `profiling ...`.
    pub step: String,
    /// Records (perf: repetitions; mem and sync: cases) or trials done, of `total` (0:
    /// not known yet).
    pub done: u64,
    pub total: u64,
    /// What `done` counts: `records`, `cases` or `trials`.
    pub unit: String,
    /// The last record's one-line summary, after its case.
    pub last: String,
    /// The last record's headline figures (perf: `ops_per_sec`, `p50_us`, `p99_us`; mem:
    /// `bytes_per_item`, `efficiency`; sync: `sync_secs`, ...), for a live chart.
    pub figures: std::collections::BTreeMap<String, f64>,
    /// The run's warnings so far (the last few), each as the run said it.
    pub warnings: Vec<String>,
    /// Where the task's servers and load run, when not all on the runner's machine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hosts: String,
    /// The run's last measured seconds (perf; at most [`MAX_STATUS_SECONDS`]):
    /// `[replies, p50 µs, p99 µs]` each, and how many it has measured in all, so a reader
    /// adds only the seconds it has not seen (a per-second chart growing a record at a
    /// time).
    pub seconds: Vec<[u64; 3]>,
    pub seconds_total: u64,
    /// When this status was made (ms since the epoch).
    pub updated_ms: u64,
}

/// A task a runner took.
#[derive(Debug)]
pub enum Claimed {
    /// Its document, delivered once more.
    Task(Task),
    /// A document that is no task (failed with why), or a task past its deliveries
    /// (dead-lettered).
    Failed { name: String, why: String },
}

/// What became of a task a runner ran.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It ran to its end; `summary` is what it left for readers of the queue.
    Done {
        summary: Option<String>,
    },
    Failed(String),
    /// Interrupted: back to pending, as it was.
    Requeued,
    /// Stopped because its runner lost its hold (the heartbeat went unrenewed): back to
    /// pending with this delivery counted, so a task that starves its own heartbeat ends
    /// dead-lettered after `--max-deliveries` instead of running forever.
    GivenBack,
}

/// The task document's version; a runner refuses any other.
pub const TASK_VERSION: u32 = 1;

/// What a task runs: the subcommand its flags belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Bench,
    Compare,
    Flamegraph,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Bench => "bench",
            TaskKind::Compare => "compare",
            TaskKind::Flamegraph => "flamegraph",
        }
    }
}

/// One queued plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub version: u32,
    /// Also its file name and its results directory's: `[A-Za-z0-9._-]`, 1-100 bytes.
    pub id: String,
    pub kind: TaskKind,
    /// The subcommand's flags, as the command line takes them.
    pub args: Vec<String>,
    /// When it was queued (UTC, RFC 3339).
    pub created: String,
    /// How many times a runner took it (a dead runner's task is taken again).
    #[serde(default)]
    pub deliveries: u32,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its run directory, once a runner started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<String>,
    /// When it ended (done or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// A compare's verdict: "no regression", "2 regression(s) found", "inconclusive: ...".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// Flags a task may not carry: where results go (the runner decides), paths on the
/// machine that queued it, and compiler flags.
const REFUSED_FLAGS: [(&str, &str); 8] = [
    (
        "--out",
        "the runner writes each task's results under its results directory",
    ),
    (
        "--markdown",
        "the runner writes a compare's summary into its results directory",
    ),
    (
        "--progress-json",
        "the runner records each task's progress itself",
    ),
    (
        "--suite-file",
        "a suite file is a path on the queueing machine",
    ),
    (
        "--valkey-src",
        "a source tree is a path on the queueing machine",
    ),
    (
        "--valkey-tarball",
        "a tarball is a path on the queueing machine",
    ),
    (
        "--cflags",
        "compiler flags can run programs (-wrapper) and write files (-MF) on the runner",
    ),
    (
        "--hosts",
        "a hosts file names addresses, users and keys: the runner's own, never a task's",
    ),
];

/// Flags a task gives a count with, never names: which hosts is the runner's choice.
const COUNT_FLAGS: [&str; 2] = ["--server-hosts", "--client-hosts"];

/// The largest task document read (a runner reads no more of a file than this).
pub const MAX_TASK_BYTES: usize = 1 << 20;

/// The most flags a task may carry, and the longest one.
const MAX_ARGS: usize = 256;
const MAX_ARG_BYTES: usize = 4096;

impl Task {
    /// A new task with a fresh id.
    pub fn new(kind: TaskKind, args: Vec<String>) -> Task {
        let now = chrono::Utc::now();
        let salt = (now.timestamp_subsec_nanos() ^ std::process::id().wrapping_mul(2_654_435_761))
            & 0xff_ffff;
        Task {
            version: TASK_VERSION,
            id: format!(
                "{}-{}-{salt:06x}",
                now.format("%Y%m%dT%H%M%S%.3fZ"),
                kind.name()
            ),
            kind,
            args,
            created: now.to_rfc3339(),
            deliveries: 0,
            error: None,
            results: None,
            finished: None,
            verdict: None,
        }
    }

    /// A campaign's tasks, in order, their ids one stem and `-001`, `-002`, ...
    pub fn batch(kind: TaskKind, list: Vec<Vec<String>>) -> Vec<Task> {
        let first = Task::new(kind, Vec::new());
        if list.len() == 1 {
            let args = list.into_iter().next().unwrap_or_default();
            return vec![Task { args, ..first }];
        }
        list.into_iter()
            .enumerate()
            .map(|(i, args)| Task {
                id: format!("{}-{:03}", first.id, i + 1),
                args,
                ..first.clone()
            })
            .collect()
    }

    /// Reads a task document, checking what does not depend on the subcommand: its
    /// version, id and flags' shape. Errors name the field.
    pub fn parse(bytes: &[u8]) -> Result<Task, String> {
        if bytes.len() > MAX_TASK_BYTES {
            return Err(format!(
                "not a task document: {} bytes, at most {MAX_TASK_BYTES}",
                bytes.len()
            ));
        }
        // The field that failed is named (`args[2]: invalid type: integer ...`).
        let task: Task =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
                .map_err(|e| match e.path().to_string() {
                    path if path == "." => format!("not a task document: {}", e.inner()),
                    path => format!("not a task document: {path}: {}", e.inner()),
                })?;
        if task.version != TASK_VERSION {
            return Err(format!(
                "version {}: this runner reads task documents of version {TASK_VERSION}",
                task.version
            ));
        }
        check_id(&task.id)?;
        check_args(&task.args)?;
        Ok(task)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a task serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Whether `text` is 1 to `max` letters, digits, `.`, `_` or `-`: a name that is the
/// same as a file name, a key part and a word on a command line.
pub fn safe_name(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// This machine's name reduced to safe bytes (at most 40), for runner ids.
pub fn host_name() -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    if host.is_empty() { "host".into() } else { host }
}

/// An id is a file name in the queue and a directory name under results: nothing that
/// could climb out of either.
pub fn check_id(id: &str) -> Result<(), String> {
    if safe_name(id, 100) && !id.starts_with('.') {
        Ok(())
    } else {
        Err(format!(
            "id {id:?}: 1-100 letters, digits, '.', '_' or '-', not starting with '.'"
        ))
    }
}

/// The flags' shape, and the flags a task may not carry.
pub fn check_args(args: &[String]) -> Result<(), String> {
    if args.len() > MAX_ARGS {
        return Err(format!("args: {} flags, at most {MAX_ARGS}", args.len()));
    }
    for arg in args {
        if arg.len() > MAX_ARG_BYTES || arg.contains('\0') {
            return Err(format!(
                "args: {:?}...: a flag is at most {MAX_ARG_BYTES} bytes, without NUL",
                arg.chars().take(40).collect::<String>()
            ));
        }
        let name = arg.split('=').next().unwrap_or(arg);
        if let Some((flag, why)) = REFUSED_FLAGS.iter().find(|(flag, _)| *flag == name) {
            return Err(format!("args: {flag} is not taken in a task: {why}"));
        }
    }
    for (i, arg) in args.iter().enumerate() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.as_str(), None),
        };
        if !COUNT_FLAGS.contains(&name) {
            continue;
        }
        let value = inline.or(args.get(i + 1).map(String::as_str)).unwrap_or("");
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "args: {name} {value}: a task asks for a count of hosts (e.g. {name} 2), never \
                 names: which hosts is its runner's choice (runner --hosts FILE)"
            ));
        }
        if !matches!(value.parse::<usize>(), Ok(1..=64)) {
            return Err(format!(
                "args: {name} {value}: give a count of hosts from 1 to 64"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_reads_back_and_its_id_is_a_safe_name() {
        let task = Task::new(TaskKind::Bench, vec!["--quick".into()]);
        assert!(check_id(&task.id).is_ok(), "{}", task.id);
        assert_eq!(Task::parse(&task.to_json()), Ok(task));
        for bad in ["", "../x", ".hidden", "a/b", "a b", &"x".repeat(101)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_documents_are_refused_with_the_field() {
        let mut task = Task::new(TaskKind::Bench, vec![]);
        task.version = 2;
        assert!(
            Task::parse(&task.to_json())
                .unwrap_err()
                .starts_with("version 2")
        );
        let text = String::from_utf8(Task::new(TaskKind::Bench, vec![]).to_json()).unwrap();
        let unknown = text.replacen("\"version\"", "\"shell\": \"rm -rf /\", \"version\"", 1);
        assert!(
            Task::parse(unknown.as_bytes())
                .unwrap_err()
                .contains("shell")
        );
        assert!(Task::parse(b"{").is_err());
        let typed = text.replacen("\"args\": []", "\"args\": [\"--quick\", 7]", 1);
        let err = Task::parse(typed.as_bytes()).unwrap_err();
        assert!(
            err.starts_with("not a task document: args[1]: invalid type"),
            "{err}"
        );
        let traversal = text.replacen("\"id\": \"", "\"id\": \"../../", 1);
        assert!(
            Task::parse(traversal.as_bytes())
                .unwrap_err()
                .starts_with("id")
        );
    }

    #[test]
    fn flags_naming_paths_or_outputs_are_refused() {
        for flag in [
            "--out",
            "--out=/etc",
            "--suite-file",
            "--valkey-src=/",
            "--progress-json",
        ] {
            let err = check_args(&[flag.to_string(), "x".into()]).unwrap_err();
            assert!(err.contains("is not taken in a task"), "{flag}: {err}");
        }
        assert!(check_args(&["--quick".into(), "--topology".into(), "cluster:3x0".into()]).is_ok());
        assert!(check_args(&["a\0b".into()]).is_err());
        assert!(check_args(&vec!["--quick".into(); MAX_ARGS + 1]).is_err());
    }

    #[test]
    fn a_task_asks_for_counts_of_hosts_never_names() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for ok in [
            &["--server-hosts", "2"][..],
            &["--server-hosts=1", "--client-hosts", "2"],
        ] {
            assert!(check_args(&args(ok)).is_ok(), "{ok:?}");
        }
        for bad in [
            &["--server-hosts", "h1"][..],
            &["--client-hosts=h1,h2"],
            &["--server-hosts"],
            &["--server-hosts", "1,2"],
            &["--server-hosts", "-1"],
        ] {
            let err = check_args(&args(bad)).unwrap_err();
            assert!(err.contains("never names"), "{bad:?}: {err}");
        }
        for bad in ["0", "65", "99999999999999999999"] {
            let err = check_args(&args(&["--server-hosts", bad])).unwrap_err();
            assert!(err.contains("from 1 to 64"), "{bad}: {err}");
        }
    }
}
