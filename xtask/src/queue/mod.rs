//! The lab's task queue: a task document (one plan, as the CLI's own flags) and its
//! backends. `dir.rs` is the embedded one: a directory of `pending/`, `running/<runner>/`,
//! `done/` and `failed/`, every file written atomically, a task claimed by rename and held
//! by its runner's lease.
//!
//! A task from a shared queue is untrusted. Its flags are parsed by the same clap
//! definitions and checked by the same validation as the command line's (the runner
//! never hands them to a shell), and the flags that name a path on the machine that
//! queued it, or where results go, are refused: the runner chooses the run directory.

pub mod dir;
pub mod expand;

use serde::{Deserialize, Serialize};

/// The default queue: `queue/` at the project root.
pub fn default_root() -> std::path::PathBuf {
    crate::project::root().join("queue")
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
const REFUSED_FLAGS: [(&str, &str); 7] = [
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
];

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
        let task: Task =
            serde_json::from_slice(bytes).map_err(|e| format!("not a task document: {e}"))?;
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

/// An id is a file name in the queue and a directory name under results: nothing that
/// could climb out of either.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
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
}
