//! `cargo xtask runner`: takes tasks from a directory queue until stopped (`--once`:
//! until the queue is empty), each run as its command would run it, its results in a run
//! directory of its own with the task document beside them. A heartbeat thread renews the
//! runner's lease file while a task runs (what `queue list` shows); the runner's flock in
//! the queue is what keeps its tasks its own while it lives.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bench_core::shutdown::Shutdown;
use clap::Args;

use super::validate_task;
use crate::error::UsageError;
use crate::queue::dir::{Claimed, DirQueue, Outcome, Runner};
use crate::queue::{Task, default_root};

#[derive(Args, Debug)]
pub struct RunnerCmd {
    /// The queue directory (default: queue/ at the project root).
    #[arg(long, value_name = "DIR")]
    pub queue: Option<PathBuf>,
    /// Stop when no task is pending, instead of waiting for more.
    #[arg(long)]
    pub once: bool,
    /// Seconds the heartbeat (lease file) says the runner is good for; it is renewed every
    /// third of it. A dead runner's tasks are taken back by its released lock, at once.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub lease_seconds: f64,
    /// Deliveries after which a task whose runners keep dying goes to failed.
    #[arg(long, default_value_t = 3)]
    pub max_deliveries: u32,
    /// Seconds between looks at an empty queue.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub poll_seconds: f64,
    /// Where run directories go (default: results/ at the project root).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
}

impl RunnerCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let seconds = |name: &str, value: f64, low: f64, high: f64| {
            if (low..=high).contains(&value) {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(UsageError(format!(
                    "--{name} {value}: give {low} to {high} seconds"
                )))
            }
        };
        let lease = seconds("lease-seconds", self.lease_seconds, 1.0, 3600.0)?;
        let poll = seconds("poll-seconds", self.poll_seconds, 0.05, 60.0)?;
        if self.max_deliveries == 0 {
            return Err(UsageError("--max-deliveries 0: give 1 or more".into()).into());
        }
        let root = self.queue.clone().unwrap_or_else(default_root);
        let queue = DirQueue::open(&root)?;
        let runner = queue.join(lease)?;
        eprintln!("runner {} on {}", runner.id, root.display());
        let result = self.take_tasks(&runner, poll, shutdown);
        let left = runner.leave();
        result.and(left)?;
        if shutdown.is_triggered() {
            // Its task is back in pending; the exit code says it was stopped (130).
            anyhow::bail!("interrupted");
        }
        Ok(())
    }

    fn take_tasks(
        &self,
        runner: &Runner<'_>,
        poll: Duration,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            for id in runner.reclaim_dead()? {
                eprintln!("{id}: back to pending (its runner died)");
            }
            if !runner.renew()? {
                anyhow::bail!(
                    "runner {}: its directory in the queue was removed",
                    runner.id
                );
            }
            match runner.claim(self.max_deliveries)? {
                None if self.once => return Ok(()),
                None => {
                    let until = Instant::now() + poll;
                    while Instant::now() < until && !shutdown.is_triggered() {
                        std::thread::sleep(Duration::from_millis(50).min(poll));
                    }
                }
                Some(Claimed::Failed { name, why }) => eprintln!("{name}: failed: {why}"),
                Some(Claimed::Task(task)) => self.execute(runner, task, shutdown)?,
            }
        }
    }

    /// Runs one claimed task with the lease renewed beside it, and files its outcome.
    fn execute(
        &self,
        runner: &Runner<'_>,
        mut task: Task,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        eprintln!(
            "{}: {} {} (delivery {})",
            task.id,
            task.kind.name(),
            task.args.join(" "),
            task.deliveries
        );
        let parsed = match validate_task(task.kind, &task.args) {
            Ok(parsed) => parsed,
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("{}: failed: {why}", task.id);
                return runner.finish(task, Outcome::Failed(why));
            }
        };
        let results = self.results_dir(&task.id);
        task.results = Some(results.display().to_string());
        let (done, lost) = (AtomicBool::new(false), AtomicBool::new(false));
        let ran = std::thread::scope(|s| {
            s.spawn(|| heartbeat(runner, &done, &lost, shutdown));
            let ran = parsed.run_in(&results, shutdown);
            done.store(true, Ordering::SeqCst);
            ran
        });
        if lost.load(Ordering::SeqCst) {
            anyhow::bail!(
                "{}: stopped: this runner's directory in the queue was removed",
                task.id
            );
        }
        let outcome = match ran {
            Ok(verdict) => {
                task.verdict = verdict;
                Outcome::Done
            }
            // Stopped by a signal: not the task's failure; it goes back as it was.
            Err(_) if shutdown.is_triggered() => Outcome::Requeued,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        if results.is_dir()
            && let Err(e) =
                crate::rundir::write_atomically(&results.join("task.json"), &task.to_json())
        {
            eprintln!("{}: writing task.json beside its results: {e:#}", task.id);
        }
        eprintln!(
            "{}: {}",
            task.id,
            match &outcome {
                Outcome::Done => format!(
                    "done{}, results in {}",
                    task.verdict
                        .as_ref()
                        .map(|v| format!(" ({v})"))
                        .unwrap_or_default(),
                    results.display()
                ),
                Outcome::Failed(why) => format!("failed: {why}"),
                Outcome::Requeued => "interrupted, back to pending".into(),
            }
        );
        runner.finish(task, outcome).context("filing the task")
    }

    /// `results/<id>`, or `results/<id>.2`, ... when an earlier delivery left one.
    fn results_dir(&self, id: &str) -> PathBuf {
        let base = self
            .results
            .clone()
            .unwrap_or_else(|| crate::project::root().join("results"));
        let mut dir = base.join(id);
        let mut n = 2;
        while dir.exists() {
            dir = base.join(format!("{id}.{n}"));
            n += 1;
        }
        dir
    }
}

/// Renews the lease every third of it until `done`. A runner directory found removed stops
/// the task: `lost`, the shutdown triggered and our servers killed.
fn heartbeat(runner: &Runner<'_>, done: &AtomicBool, lost: &AtomicBool, shutdown: &Shutdown) {
    let every = runner.lease() / 3;
    let mut next = Instant::now() + every;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + every;
        match runner.renew() {
            Ok(true) => {}
            Ok(false) => {
                eprintln!(
                    "runner {}: its queue directory is gone; stopping its task",
                    runner.id
                );
                lost.store(true, Ordering::SeqCst);
                shutdown.trigger();
                crate::process::kill_all();
                return;
            }
            Err(e) => eprintln!("runner {}: renewing the lease: {e:#}", runner.id),
        }
    }
}
