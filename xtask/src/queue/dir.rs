//! The directory queue: `pending/<id>.json`, `running/<runner>/<id>.json`, `done/<id>.json`
//! and `failed/<id>.json` under one root, every document written atomically (a temporary
//! file renamed into place).
//!
//! - A runner joins by renaming a prepared directory into `running/`: it holds an
//!   exclusive `flock` on the directory's `lock` file for as long as its process lives
//!   (the kernel drops it when the process dies, however it dies), and renews a `lease`
//!   file beside it (its heartbeat: who, which pid, until when).
//! - It claims a task by renaming `pending/<id>.json` into its directory: of runners
//!   racing for one task, one rename succeeds. The claim counts a delivery; past the
//!   queue's limit the task fails instead of running again.
//! - A runner whose lock another runner can take is dead: that runner, holding the lock
//!   so no third one interferes, returns the dead runner's tasks to pending (or drops a
//!   held copy already filed as done or failed) and removes its directory. A live runner,
//!   however slow or stopped, keeps its tasks: a task is never run twice at once.
//! - A file in `pending/` that is no task document, no regular file, larger than
//!   [`MAX_TASK_BYTES`](super::MAX_TASK_BYTES), or a task whose id is already done or
//!   failed, fails with why (its bytes kept under `failed/`, the reason beside them) and
//!   the runner goes on.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{
    Claimed, Entry, MAX_TASK_BYTES, Outcome, Queue, Seat, State, Status, Task, check_id, now_ms,
};
use crate::rundir::write_atomically;
use crate::untrusted;

/// A runner's lease: who holds it, when it was renewed and until when (milliseconds
/// since the epoch).
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    runner: String,
    pid: u32,
    #[serde(default)]
    renewed_ms: u64,
    expires_ms: u64,
}

pub struct DirQueue {
    root: PathBuf,
}

/// The task files (`*.json` regular files, not hidden) of a directory, sorted by name
/// (ids start with their time, so oldest first).
fn task_files(dir: &Path) -> io::Result<Named> {
    let (files, _) = dir_entries(dir)?;
    Ok(files)
}

/// Directory entries by name.
type Named = Vec<(String, PathBuf)>;

/// A directory's task files, and the other entries that are not hidden (a symlink, a
/// directory, a name without `.json`): what a claim fails as no task.
fn dir_entries(dir: &Path) -> io::Result<(Named, Named)> {
    let (mut files, mut odd) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // temporary files of atomic writes
        }
        match name.strip_suffix(".json") {
            Some(stem) if entry.file_type()?.is_file() => {
                files.push((stem.to_string(), entry.path()));
            }
            _ => odd.push((name, entry.path())),
        }
    }
    files.sort();
    odd.sort();
    Ok((files, odd))
}

/// How old an interrupted write's temporary file must be before a joining runner removes it.
const LEFTOVER_AGE: Duration = Duration::from_secs(600);

/// A failed task being queued again by `retry` (`failed/.retry-<id>.json`).
const RETRYING: &str = ".retry-";

/// The longest name the queue keeps a failed entry under: with `.duplicate-XXXX.error`
/// or `.odd-` around it, a name stays under the file system's 255 bytes.
const MAX_KEPT_NAME: usize = 200;

/// `name`, or when it is longer than [`MAX_KEPT_NAME`] bytes its first 100 bytes and a
/// hash of the whole (`long-name…-1f2e3d4c5b6a7980`): a 250-byte name in pending/ once
/// overflowed the name of its `.error` file and stopped the runner.
fn kept_name(name: &str) -> String {
    use sha2::Digest;
    if name.len() <= MAX_KEPT_NAME {
        return name.to_string();
    }
    let mut cut = 100;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = sha2::Sha256::digest(name.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &name[..cut])
}

/// A task document whose id is its file's name, less `.json`.
fn read_task(path: &Path) -> Result<Task, String> {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    read_task_of(path, stem.as_deref().unwrap_or_default())
}

/// A task document whose id must be `id`.
fn read_task_of(path: &Path, id: &str) -> Result<Task, String> {
    let size = fs::symlink_metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_TASK_BYTES as u64 {
        return Err(format!(
            "not a task document: {size} bytes, at most {MAX_TASK_BYTES}"
        ));
    }
    let bytes = untrusted::read_limited(path, MAX_TASK_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let task = Task::parse(&bytes)?;
    if task.id != id {
        return Err(format!("id {:?} is not its file's name", task.id));
    }
    Ok(task)
}

impl DirQueue {
    /// Opens the queue at `root`, creating its directories.
    pub fn open(root: &Path) -> anyhow::Result<DirQueue> {
        for state in ["pending", "running", "done", "failed"] {
            let dir = root.join(state);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(DirQueue {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, state: State) -> PathBuf {
        self.root.join(state.name())
    }

    /// Queues `task`; refused if a task of that id is anywhere in the queue.
    pub fn add(&self, task: &Task) -> anyhow::Result<()> {
        check_id(&task.id).map_err(anyhow::Error::msg)?;
        if let Some(state) = self.where_is(&task.id)? {
            anyhow::bail!("task {} is already {}", task.id, state.name());
        }
        write_atomically(
            &self.dir(State::Pending).join(format!("{}.json", task.id)),
            &task.to_json(),
        )
    }

    /// Every task, by state and then age.
    pub fn list(&self) -> anyhow::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for state in [State::Pending, State::Done, State::Failed] {
            let (files, odd) = dir_entries(&self.dir(state))?;
            if state == State::Failed {
                // What failed as no task file (a symlink, a directory), its reason beside.
                for (name, path) in odd.iter().filter(|(n, _)| !n.ends_with(".error")) {
                    let why = untrusted::read_small_text(&path.with_extension("error"))
                        .map_or_else(|_| "not a task file".to_string(), |w| w.trim_end().into());
                    let name = name.strip_suffix(".json").unwrap_or(name).to_string();
                    entries.push(Entry::new(state, name, Err(why)));
                }
            }
            for (name, path) in files {
                let task = read_task(&path).map_err(|e| match state {
                    State::Failed => untrusted::read_small_text(&path.with_extension("error"))
                        .map(|why| why.trim_end().to_string())
                        .unwrap_or(e),
                    _ => e,
                });
                entries.push(Entry::new(state, name, task));
            }
        }
        for (runner, dir) in self.runner_dirs()? {
            let lease: Option<Lease> =
                untrusted::read_limited(&dir.join("lease"), untrusted::MAX_SMALL)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            for (name, path) in task_files(&dir)? {
                let status =
                    untrusted::read_limited(&path.with_extension("status"), untrusted::MAX_SMALL)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                entries.push(Entry {
                    runner: Some(runner.clone()),
                    heartbeat_ms: lease.as_ref().map(|l| l.renewed_ms),
                    status,
                    ..Entry::new(State::Running, name, read_task(&path))
                });
            }
        }
        entries.sort_by(|a, b| (a.state, &a.name).cmp(&(b.state, &b.name)));
        Ok(entries)
    }

    /// The task named `id`, wherever it is.
    pub fn find(&self, id: &str) -> anyhow::Result<Option<Entry>> {
        Ok(self.list()?.into_iter().find(|e| e.name == id))
    }

    /// Where a file named for `id` is, by its name alone (no document read: what `add`
    /// asks of every task of a campaign).
    fn where_is(&self, id: &str) -> anyhow::Result<Option<State>> {
        let name = format!("{id}.json");
        for state in [State::Pending, State::Done, State::Failed] {
            if fs::symlink_metadata(self.dir(state).join(&name)).is_ok() {
                return Ok(Some(state));
            }
        }
        for (_, dir) in self.runner_dirs()? {
            if fs::symlink_metadata(dir.join(&name)).is_ok() {
                return Ok(Some(State::Running));
            }
        }
        Ok(None)
    }

    /// The runners' directories under `running/` (not the ones being set up or reclaimed).
    fn runner_dirs(&self) -> anyhow::Result<Vec<(String, PathBuf)>> {
        let mut dirs = Vec::new();
        for entry in fs::read_dir(self.dir(State::Running))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type()?.is_dir() {
                dirs.push((name, entry.path()));
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// A pending task is cancelled: it moves to failed, "cancelled" its error. It is taken
    /// out of pending by a rename, as a runner claims, so a runner cannot take it too.
    pub fn cancel(&self, id: &str) -> anyhow::Result<()> {
        self.expect(id, State::Pending)?;
        let failed = self.dir(State::Failed).join(format!("{id}.json"));
        match fs::rename(self.dir(State::Pending).join(format!("{id}.json")), &failed) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                anyhow::bail!("task {id} is no longer pending: a runner took it")
            }
            other => other?,
        }
        let mut task = read_task(&failed).map_err(anyhow::Error::msg)?;
        task.error = Some("cancelled".into());
        task.finished = Some(chrono::Utc::now().to_rfc3339());
        write_atomically(&failed, &task.to_json())
    }

    /// A failed task is queued again, its deliveries and error cleared.
    pub fn retry(&self, id: &str) -> anyhow::Result<()> {
        let task = self.expect(id, State::Failed)?;
        // Out of failed first (hidden), so a second retry finds nothing to queue; reset
        // in place; then one rename into pending. A crash before that rename leaves the
        // aside copy, which the next runner to join finishes queueing (`sweep_leftovers`).
        let aside = self.dir(State::Failed).join(format!("{RETRYING}{id}.json"));
        fs::rename(self.dir(State::Failed).join(format!("{id}.json")), &aside)
            .with_context(|| format!("taking task {id} out of failed"))?;
        self.requeue_aside(task, &aside)
    }

    /// Resets a failed task's document at `aside` (its deliveries, error and results) and
    /// moves it into pending.
    fn requeue_aside(&self, mut task: Task, aside: &Path) -> anyhow::Result<()> {
        task.deliveries = 0;
        task.error = None;
        task.results = None;
        task.finished = None;
        write_atomically(aside, &task.to_json())?;
        fs::rename(
            aside,
            self.dir(State::Pending).join(format!("{}.json", task.id)),
        )
        .with_context(|| format!("queueing task {} again", task.id))?;
        let _ = fs::remove_file(self.dir(State::Failed).join(format!("{}.error", task.id)));
        Ok(())
    }

    /// A pending, done or failed task's file is deleted (not a running one's).
    pub fn remove(&self, id: &str) -> anyhow::Result<()> {
        check_id(id).map_err(anyhow::Error::msg)?;
        match self.find(id)? {
            None => anyhow::bail!("no task {id} in {}", self.root.display()),
            Some(e) if e.state == State::Running => anyhow::bail!(
                "task {id} is running (runner {}); stop its runner first",
                e.runner.unwrap_or_default()
            ),
            Some(e) => {
                let dir = self.dir(e.state);
                let _ = fs::remove_file(dir.join(format!("{id}.error")));
                remove(&dir.join(format!("{id}.json")))
            }
        }
    }

    /// The document of task `id`, which must be in `state`.
    fn expect(&self, id: &str, state: State) -> anyhow::Result<Task> {
        check_id(id).map_err(anyhow::Error::msg)?;
        match self.find(id)? {
            None => anyhow::bail!("no task {id} in {}", self.root.display()),
            Some(e) if e.state != state => {
                anyhow::bail!("task {id} is {}, not {}", e.state.name(), state.name())
            }
            Some(e) => e.task.map_err(anyhow::Error::msg),
        }
    }

    /// Removes the temporary files of atomic writes (`.tmp*`) that were interrupted, and
    /// finishes a `retry` interrupted before its task reached pending: ones older than
    /// [`LEFTOVER_AGE`], which no write or retry still in progress can be.
    fn sweep_leftovers(&self, age: Duration) {
        // A retry's aside copy is judged by its ctime, which the rename that hid it set
        // (its mtime is the failed document's, often old).
        let changed_before = |entry: &fs::DirEntry| {
            use std::os::unix::fs::MetadataExt;
            entry.metadata().is_ok_and(|m| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                now.as_secs().saturating_sub(m.ctime().max(0) as u64) > age.as_secs()
                    || age.is_zero()
            })
        };
        if let Ok(entries) = fs::read_dir(self.dir(State::Failed)) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(RETRYING) else {
                    continue;
                };
                if !changed_before(&entry) {
                    continue;
                }
                let Some(id) = rest.strip_suffix(".json") else {
                    // A sweeper's claim (`.retry-<id>.json.<claim>`) that it never
                    // finished: hidden again for the next sweep.
                    if let Some((id, _)) = rest.split_once(".json.") {
                        let aside = self.dir(State::Failed).join(format!("{RETRYING}{id}.json"));
                        if fs::symlink_metadata(&aside).is_err() {
                            let _ = fs::rename(entry.path(), aside);
                        }
                    }
                    continue;
                };
                if check_id(id).is_err() {
                    continue;
                }
                // One sweeper takes it, by a rename only one of several can win.
                let path = entry.path().with_extension(format!(
                    "json.{}-{}",
                    std::process::id(),
                    now_ms()
                ));
                if fs::rename(entry.path(), &path).is_err() {
                    continue;
                }
                match (read_task_of(&path, id), self.where_is(id)) {
                    (Ok(task), Ok(None)) => {
                        let _ = self.requeue_aside(task, &path);
                    }
                    // Queued again meanwhile: the aside copy only goes.
                    (Ok(_), Ok(Some(_))) => {
                        let _ = fs::remove_file(&path);
                    }
                    // Not readable: back among the failed, bytes and all, to be seen.
                    (Err(_), Ok(None)) => {
                        let _ =
                            fs::rename(&path, self.dir(State::Failed).join(format!("{id}.json")));
                    }
                    // The queue could not be read: hidden again, for another sweep.
                    _ => {
                        let _ = fs::rename(&path, entry.path());
                    }
                }
            }
        }
        for state in [State::Pending, State::Done, State::Failed] {
            let Ok(entries) = fs::read_dir(self.dir(state)) else {
                continue;
            };
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|old| old > age);
                let temporary = entry.file_name().to_string_lossy().starts_with(".tmp");
                if temporary && old && entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Joins the queue as a runner holding a lease of `lease`.
    pub fn join(&self, lease: Duration) -> anyhow::Result<Runner<'_>> {
        self.sweep_leftovers(LEFTOVER_AGE);
        // A directory name: the host's name reduced to safe bytes, the pid, a salt.
        static JOINED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = format!(
            "{}-{}-{}-{:04x}",
            super::host_name(),
            std::process::id(),
            JOINED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            now_ms() & 0xffff
        );
        let running = self.dir(State::Running);
        let staging = running.join(format!(".new-{id}"));
        fs::create_dir_all(&staging)?;
        let lock = File::create(staging.join("lock"))?;
        lock.try_lock()
            .map_err(|e| anyhow::anyhow!("locking {}: {e}", staging.display()))?;
        let runner = Runner {
            queue: self,
            dir: running.join(&id),
            id,
            lease,
            _lock: lock,
        };
        write_lease(&staging, &runner.id, lease)?;
        fs::rename(&staging, &runner.dir)
            .with_context(|| format!("joining the queue as {}", runner.dir.display()))?;
        Ok(runner)
    }

    /// Whether a task of this id was already filed as done or failed.
    fn filed(&self, id: &str) -> bool {
        [State::Done, State::Failed]
            .iter()
            .any(|&s| self.dir(s).join(format!("{id}.json")).exists())
    }
}

fn remove(path: &Path) -> anyhow::Result<()> {
    fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
}

fn write_lease(dir: &Path, runner: &str, lease: Duration) -> anyhow::Result<()> {
    let now = now_ms();
    let lease = Lease {
        runner: runner.to_string(),
        pid: std::process::id(),
        renewed_ms: now,
        expires_ms: now + lease.as_millis() as u64,
    };
    write_atomically(
        &dir.join("lease"),
        &serde_json::to_vec(&lease).expect("a lease serializes"),
    )
}

/// One runner's place in the queue: its directory under `running/` and its lease.
pub struct Runner<'q> {
    queue: &'q DirQueue,
    pub id: String,
    dir: PathBuf,
    lease: Duration,
    /// The flock that says this runner lives; released when the process ends.
    _lock: File,
}

impl Runner<'_> {
    /// How long the lease lasts unrenewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Extends the lease (the heartbeat `queue list` shows). False when the runner's
    /// directory is gone (someone removed it by hand): the task in hand must stop.
    pub fn renew(&self) -> anyhow::Result<bool> {
        if !self.dir.is_dir() {
            return Ok(false);
        }
        match write_lease(&self.dir, &self.id, self.lease) {
            Err(_) if !self.dir.is_dir() => Ok(false),
            Err(e) => Err(e),
            Ok(()) => Ok(true),
        }
    }

    /// Takes the oldest pending task, if any. A task delivered `max_deliveries` times
    /// already fails instead of running again.
    pub fn claim(&self, max_deliveries: u32) -> anyhow::Result<Option<Claimed>> {
        let (files, odd) = dir_entries(&self.queue.dir(State::Pending))?;
        for (name, from) in odd {
            let why = "not a task file: a regular file named <id>.json".to_string();
            let to = self.dir.join(format!(".odd-{}", kept_name(&name)));
            if fs::rename(&from, &to).is_ok() {
                self.fail_file(&name, &to, &why)?;
                return Ok(Some(Claimed::Failed { name, why }));
            }
        }
        for (name, from) in files {
            let to = self.dir.join(format!("{name}.json"));
            match fs::rename(&from, &to) {
                Ok(()) => {}
                // Another runner took it first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).context(format!("claiming {}", from.display())),
            }
            let mut task = match read_task(&to) {
                Ok(task) => task,
                Err(why) => {
                    self.fail_file(&name, &to, &why)?;
                    return Ok(Some(Claimed::Failed { name, why }));
                }
            };
            if self.queue.filed(&task.id) {
                let why = format!(
                    "task {} is already done or failed: ids are used once",
                    task.id
                );
                let kept = format!("{name}.duplicate-{:04x}", now_ms() & 0xffff);
                self.fail_file(&kept, &to, &why)?;
                return Ok(Some(Claimed::Failed { name, why }));
            }
            if task.deliveries >= max_deliveries {
                let why = format!(
                    "delivered {} times, and its runner died each time before it ended",
                    task.deliveries
                );
                self.finish(task, Outcome::Failed(why.clone()))?;
                return Ok(Some(Claimed::Failed { name, why }));
            }
            task.deliveries += 1;
            write_atomically(&to, &task.to_json())?;
            return Ok(Some(Claimed::Task(task)));
        }
        Ok(None)
    }

    /// Moves a file that is no task document to failed, its reason beside it (under a
    /// shortened name when `name` leaves no room for the suffixes).
    fn fail_file(&self, name: &str, path: &Path, why: &str) -> anyhow::Result<()> {
        let failed = self.queue.dir(State::Failed);
        let name = kept_name(name);
        write_atomically(
            &failed.join(format!("{name}.error")),
            format!("{why}\n").as_bytes(),
        )?;
        fs::rename(path, failed.join(format!("{name}.json")))?;
        Ok(())
    }

    /// Records how a claimed task ended and moves it out of this runner's directory.
    pub fn finish(&self, mut task: Task, outcome: Outcome) -> anyhow::Result<()> {
        let held = self.dir.join(format!("{}.json", task.id));
        let state = match outcome {
            Outcome::Done { .. } => State::Done,
            Outcome::Failed(why) => {
                task.error = Some(why);
                State::Failed
            }
            Outcome::Requeued => {
                // This delivery did not happen.
                task.deliveries = task.deliveries.saturating_sub(1);
                task.results = None;
                State::Pending
            }
            Outcome::GivenBack => {
                task.results = None;
                State::Pending
            }
        };
        let _ = fs::remove_file(held.with_extension("status"));
        let to = self.queue.dir(state).join(format!("{}.json", task.id));
        if state == State::Pending {
            // Rewritten where it is held, then moved by one rename: a crash in between
            // leaves it held by a dead runner, taken back once; never in pending while a
            // copy is still held, which a peer would take back and run a second time.
            write_atomically(&held, &task.to_json())?;
            return fs::rename(&held, &to)
                .with_context(|| format!("returning {} to pending", task.id));
        }
        task.finished = Some(chrono::Utc::now().to_rfc3339());
        // A crash before the held copy goes leaves it filed: a peer drops it.
        write_atomically(&to, &task.to_json())?;
        remove(&held)
    }

    /// Writes the held task's status beside it (`<id>.status`), for `queue list`.
    pub fn report(&self, task: &Task, status: &Status) -> anyhow::Result<()> {
        write_atomically(
            &self.dir.join(format!("{}.status", task.id)),
            &serde_json::to_vec(status).expect("a status serializes"),
        )
    }

    /// Takes back the tasks of every dead runner (one whose lock can be taken): they go to
    /// pending (their next claim counts the delivery), or are dropped when already filed
    /// as done or failed (a runner that died between filing and cleaning up). The ids
    /// returned to pending.
    pub fn reclaim_dead(&self) -> anyhow::Result<Vec<String>> {
        // An interrupted retry is finished by whichever runner looks first.
        self.queue.sweep_leftovers(LEFTOVER_AGE);
        let mut taken = Vec::new();
        for entry in fs::read_dir(self.queue.dir(State::Running))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.new-*`: a runner still joining (it locks its lock file only after
            // creating it); never another's to judge.
            if name == self.id || name.starts_with('.') || !entry.file_type()?.is_dir() {
                continue;
            }
            let dir = entry.path();
            // A runner still joining has no lock file yet: not ours to judge.
            let Ok(lock) = untrusted::open_regular_for_lock(&dir.join("lock")) else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue; // alive, or another runner is reclaiming it
            }
            if !dir.is_dir() {
                continue; // reclaimed and removed while we opened its lock
            }
            for (task_name, path) in task_files(&dir)? {
                if self.queue.filed(&task_name) {
                    remove(&path)?;
                    continue;
                }
                let pending = self
                    .queue
                    .dir(State::Pending)
                    .join(format!("{task_name}.json"));
                fs::rename(&path, &pending)
                    .with_context(|| format!("returning {} to pending", path.display()))?;
                taken.push(task_name);
            }
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(taken)
    }

    /// Leaves the queue: any task still held goes back to pending, the directory goes.
    pub fn leave(self) -> anyhow::Result<()> {
        if !self.dir.is_dir() {
            return Ok(());
        }
        for (name, path) in task_files(&self.dir)? {
            match read_task(&path) {
                Ok(task) => self.finish(task, Outcome::Requeued)?,
                Err(_) => fs::rename(
                    &path,
                    self.queue.dir(State::Pending).join(format!("{name}.json")),
                )?,
            }
        }
        fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))
    }
}

impl Queue for DirQueue {
    fn location(&self) -> String {
        self.root.display().to_string()
    }
    fn add(&self, task: &Task) -> anyhow::Result<()> {
        DirQueue::add(self, task)
    }
    fn list(&self) -> anyhow::Result<Vec<Entry>> {
        DirQueue::list(self)
    }
    fn cancel(&self, id: &str) -> anyhow::Result<()> {
        DirQueue::cancel(self, id)
    }
    fn retry(&self, id: &str) -> anyhow::Result<()> {
        DirQueue::retry(self, id)
    }
    fn remove(&self, id: &str) -> anyhow::Result<()> {
        DirQueue::remove(self, id)
    }
    fn join(&self, lease: Duration) -> anyhow::Result<Box<dyn Seat + '_>> {
        Ok(Box::new(DirQueue::join(self, lease)?))
    }
}

impl Seat for Runner<'_> {
    fn id(&self) -> &str {
        &self.id
    }
    fn lease(&self) -> Duration {
        self.lease
    }
    fn renew(&self) -> anyhow::Result<bool> {
        Runner::renew(self)
    }
    fn lease_fences(&self) -> bool {
        false
    }
    fn claim(&self, max_deliveries: u32) -> anyhow::Result<Option<Claimed>> {
        Runner::claim(self, max_deliveries)
    }
    fn report(&self, task: &Task, status: &Status) -> anyhow::Result<()> {
        Runner::report(self, task, status)
    }
    /// While this runner lives its tasks are its own (the flock): always filed.
    fn finish(&self, task: Task, outcome: Outcome) -> anyhow::Result<bool> {
        Runner::finish(self, task, outcome).map(|()| true)
    }
    fn reclaim_dead(&self) -> anyhow::Result<Vec<String>> {
        Runner::reclaim_dead(self)
    }
    fn leave(self: Box<Self>) -> anyhow::Result<()> {
        Runner::leave(*self)
    }
}

#[cfg(test)]
mod tests;
