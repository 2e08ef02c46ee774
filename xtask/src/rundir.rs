//! The results directory of a run: `results.jsonl` (appended atomically) and `summary.md`.
//!
//! "Atomically" means a reader never sees a partial line: each record is one `write` of a
//! whole line to the file opened with `O_APPEND`, under a lock file that serializes
//! writers, then one `fdatasync`. A line a crash tore (no final newline) is cut off before
//! the next append and skipped by readers, so the file only ever holds whole records.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bench_core::result::Record;

#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `dir` (and its parents) for a new run. A directory that already holds
    /// results is refused ([`check_unused`]): its records would be mixed into this run's
    /// medians. Nothing is ever truncated.
    pub fn create(dir: &Path) -> anyhow::Result<RunDir> {
        if let Err(why) = check_unused(dir) {
            anyhow::bail!(why);
        }
        fs::create_dir_all(dir)
            .with_context(|| format!("creating the results directory {}", dir.display()))?;
        Ok(RunDir {
            path: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn results_file(&self) -> PathBuf {
        self.path.join("results.jsonl")
    }

    /// Appends one record as one line.
    pub fn append<P: serde::Serialize, M: serde::Serialize>(
        &self,
        record: &Record<P, M>,
    ) -> anyhow::Result<()> {
        self.append_serialized(record)
    }

    /// Appends any serializable value as one JSON line.
    pub fn append_serialized<T: serde::Serialize>(&self, record: &T) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(record).context("serializing a record")?;
        line.push('\n');
        let lock = File::create(self.path.join(".results.lock"))?;
        lock.lock()?;
        let path = self.results_file();
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        cut_torn_tail(&mut file).with_context(|| format!("repairing {}", path.display()))?;
        // One write of the whole line: with O_APPEND it lands at the end, in one piece.
        file.write_all(line.as_bytes())
            .with_context(|| format!("appending to {}", path.display()))?;
        file.sync_data()
            .with_context(|| format!("syncing {}", path.display()))?;
        Ok(())
    }

    /// Every record in `results.jsonl`, as the suite's record type.
    pub fn read<R: serde::de::DeserializeOwned>(&self) -> anyhow::Result<Vec<R>> {
        read_records(&self.results_file())
    }

    pub fn write_file(&self, name: &str, text: &str) -> anyhow::Result<()> {
        write_atomically(&self.path.join(name), text.as_bytes())
    }
}

/// Whether `dir` may hold a new run: it must not exist, or hold no results yet.
pub fn check_unused(dir: &Path) -> Result<(), String> {
    let results = dir.join("results.jsonl");
    let lines = fs::read_to_string(&results)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    if lines > 0 {
        return Err(format!(
            "--out {}: already holds {lines} record(s) of an earlier run ({}), which would be \
             mixed into this run's figures; give a new directory or remove that one",
            dir.display(),
            results.display()
        ));
    }
    Ok(())
}

/// Cuts a last line a crash left without its newline: it never was a whole record.
fn cut_torn_tail(file: &mut File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the end of the last whole line (rare: only after a crash mid-write).
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    file.set_len(keep as u64)
}

/// Now, as records write it: RFC 3339, UTC, milliseconds.
/// `run.json`: how the run was started, for the report's "reproduce" line.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The command line, as a user would type it (`cargo xtask bench --quick`).
    pub command: String,
    /// When the run started, RFC 3339 UTC.
    pub started: String,
}

/// The command a queued task stands for, while a runner runs it (see [`as_command`]).
static TASK_COMMAND: std::sync::Mutex<Option<Vec<String>>> = std::sync::Mutex::new(None);

/// This process's command line as the user typed it: `cargo xtask` for the binary, each
/// argument quoted for a POSIX shell where it needs it. While a runner runs a queued task
/// it is the task's command (`cargo xtask bench --quick ...`), not the runner's: what
/// reproduces the run.
pub fn command_line() -> String {
    let task = TASK_COMMAND
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let args = task.unwrap_or_else(|| std::env::args().skip(1).collect());
    let mut words = vec!["cargo".to_string(), "xtask".to_string()];
    words.extend(args.iter().map(|a| shell_quote(a)));
    words.join(" ")
}

/// Runs `f` with [`command_line`] saying `args` (a queued task's subcommand and flags).
pub fn as_command<T>(args: Vec<String>, f: impl FnOnce() -> T) -> T {
    *TASK_COMMAND.lock().unwrap_or_else(|e| e.into_inner()) = Some(args);
    let result = f();
    *TASK_COMMAND.lock().unwrap_or_else(|e| e.into_inner()) = None;
    result
}

/// `a` as one word of a POSIX shell command.
pub fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// Writes `run.json` into `dir`.
pub fn write_manifest(dir: &Path) -> anyhow::Result<()> {
    let manifest = Manifest {
        command: command_line(),
        started: timestamp(),
    };
    write_atomically(
        &dir.join("run.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )
}

pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn read_records<R: serde::de::DeserializeOwned>(file: &Path) -> anyhow::Result<Vec<R>> {
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    // A last line without its newline is being written, or was torn by a crash: not a
    // record yet.
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a result record", file.display(), i + 1))
        })
        .collect()
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path`,
/// and syncs the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("a file path has a parent directory")?;
    // 0666 less the umask, like any file the user creates (tempfile's default is 0600).
    let mut tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// A new run's directory: `out`, else `results/<run_id>` at the project root, created
/// with its `run.json`. The one place a run's directory is chosen; the records go in
/// through [`RunDir::create`] (here, or in a compare's side directories).
pub fn new_run(run_id: &str, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::project::results_dir().join(run_id));
    // Before run.json is written: an earlier run's directory keeps its own.
    check_unused(&dir).map_err(anyhow::Error::msg)?;
    fs::create_dir_all(&dir)
        .with_context(|| format!("creating the results directory {}", dir.display()))?;
    write_manifest(&dir)?;
    Ok(dir)
}

/// `20261122T223000Z-perf-1a2b`: sorts by time; the suffix separates runs started in the
/// same second.
pub fn run_id(suite: &str) -> String {
    let now = chrono::Utc::now();
    let salt =
        (now.timestamp_subsec_nanos() ^ std::process::id().wrapping_mul(2_654_435_761)) & 0xffff;
    format!("{}-{suite}-{salt:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_where_needed() {
        assert_eq!(shell_quote("--quick"), "--quick");
        assert_eq!(shell_quote("GET/32B/P16,SET"), "GET/32B/P16,SET");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(x)"), "'$(x)'");
    }

    #[test]
    fn a_new_run_in_an_earlier_runs_directory_is_refused_and_keeps_its_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        assert_eq!(new_run("x", Some(&dir)).unwrap(), dir);
        let first = fs::read_to_string(dir.join("run.json")).unwrap();
        RunDir::create(&dir)
            .unwrap()
            .append_serialized(&serde_json::json!({"case": "a"}))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let refused = new_run("y", Some(&dir)).unwrap_err().to_string();
        assert!(refused.contains("already holds 1 record(s)"), "{refused}");
        assert_eq!(fs::read_to_string(dir.join("run.json")).unwrap(), first);
    }

    #[test]
    fn written_files_follow_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let written = dir.path().join("report.md");
        write_atomically(&written, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // Under the usual umask 022 that is 0644, not tempfile's private 0600.
        assert_eq!(mode(&written), mode(&plain), "as a file the user creates");
    }
    use bench_core::result::{ResultRecord, SCHEMA_VERSION};

    fn record(case: &str) -> ResultRecord {
        let line = format!(
            r#"{{"schema":{SCHEMA_VERSION},"run_id":"r","suite":"perf","case":"{case}","repetition":1,
            "timestamp":"t","valkey":{{"version":"8.1.1","source_id":"s","build":{{"tls":false,"malloc":"jemalloc","cflags":""}}}},
            "host":{{"hostname":"h","cpus":2,"model":"m","kernel":"k","memory_bytes":1}},
            "params":{{"command":"GET","value_size":32,"pipeline":1,"clients":1,"client_threads":1,"io_threads":1,
            "keyspace":1,"requests":1,"warmup_requests":1,"preloaded_items":1,"server_config":{{}}}},
            "metrics":{{"ops_per_sec":1.0,"requests":1,"wall_secs":1.0,"avg_us":null,"min_us":null,"p50_us":1.0,
            "p90_us":null,"p95_us":null,"p99_us":null,"p99_9_us":null,"max_us":null}},
            "engine":{{"name":"e","version":"v","argv":[]}}}}"#
        );
        serde_json::from_str(&line.replace('\n', "")).unwrap()
    }

    #[test]
    fn appends_keep_earlier_lines_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run")).unwrap();
        run.append(&record("a")).unwrap();
        run.append(&record("b")).unwrap();
        let cases: Vec<_> = run
            .read::<ResultRecord>()
            .unwrap()
            .into_iter()
            .map(|r| r.case)
            .collect();
        assert_eq!(cases, ["a", "b"]);
        let text = fs::read_to_string(run.results_file()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        let names: Vec<_> = fs::read_dir(run.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}"); // results.jsonl and the lock file
        // A directory that holds results is not a new run's.
        let err = RunDir::create(run.path()).unwrap_err().to_string();
        assert!(err.contains("already holds 2 record(s)"), "{err}");
        assert_eq!(
            run.read::<ResultRecord>().unwrap().len(),
            2,
            "nothing was lost"
        );
    }

    #[test]
    fn a_line_torn_by_a_crash_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run")).unwrap();
        run.append(&record("a")).unwrap();
        let mut torn = fs::read_to_string(run.results_file()).unwrap();
        torn.push_str("{\"schema\":5,\"run_id\"");
        fs::write(run.results_file(), torn).unwrap();
        run.append(&record("b")).unwrap();
        let cases: Vec<_> = run
            .read::<ResultRecord>()
            .unwrap()
            .into_iter()
            .map(|r| r.case)
            .collect();
        assert_eq!(cases, ["a", "b"]);
    }

    #[test]
    fn a_corrupt_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("results.jsonl");
        fs::write(
            &file,
            format!("{}{{\"schema\":\n", record("a").to_json_line()),
        )
        .unwrap();
        let err = format!("{:#}", read_records::<ResultRecord>(&file).unwrap_err());
        assert!(err.contains("results.jsonl:2"), "{err}");
    }
}
