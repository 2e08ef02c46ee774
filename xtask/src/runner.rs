//! The task runner (`cargo xtask runner`; its flags are in `cli/runner.rs`): takes tasks
//! from a queue (a directory, or a Valkey stream shared by runners on several machines)
//! until stopped (`once`: until the queue is empty), each run as its command would run
//! it, its results in a run directory of its own with the task document beside them. A
//! heartbeat thread renews the runner's lease while a task runs and publishes the task's
//! live status; a Valkey queue that cannot be reached is waited for (the task in hand
//! goes on), and a task is filed only once its results are on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use bench_core::shutdown::Shutdown;

use crate::events::Sink;
use crate::queue::Queue;
use crate::queue::{Claimed, Outcome, Seat, Status, Task, Unreachable};
use crate::views::printable;
use crate::views::prometheus::Metrics;
use crate::views::status::StatusSink;

/// How a runner works: `cargo xtask runner`'s flags, checked.
pub struct Options {
    /// The queue: a directory, or `valkey://HOST[:PORT]/NAME` (`valkeys://` for TLS);
    /// `None` is `queue/` at the project root.
    pub queue: Option<String>,
    /// Stop when no task is pending (and, on a Valkey queue, none is held elsewhere).
    pub once: bool,
    /// How long the heartbeat lasts unrenewed.
    pub lease: Duration,
    /// Deliveries after which a task whose runners keep dying goes to failed.
    pub max_deliveries: u32,
    /// Between looks at an empty queue.
    pub poll: Duration,
    /// Where run directories go; `None` is `results/` at the project root.
    pub results: Option<PathBuf>,
    /// Serve Prometheus metrics at this address.
    pub metrics_addr: Option<String>,
}

/// A task checked and ready to run: it runs in the results directory given, stops with
/// the `Shutdown`, sends its events to the sinks given as well as its own, and returns
/// its verdict if it has one. The CLI makes these (`cli::validate_task`): a task is run
/// as its command would run it.
pub type Prepared =
    Box<dyn FnOnce(&Path, &Shutdown, Vec<Box<dyn Sink>>) -> anyhow::Result<Option<String>>>;

/// Checks a claimed task's kind and flags: a task that does not check is failed, not run.
pub type Prepare<'a> = &'a dyn Fn(&Task) -> anyhow::Result<Prepared>;

/// A runner's post: its queue, its place in it, its metrics endpoint and what it knows of
/// an outage.
struct Post<'a> {
    queue: &'a dyn Queue,
    runner: &'a dyn Seat,
    metrics: Option<&'a Metrics>,
    outage: Outage,
}

impl Post<'_> {
    /// The queue's tasks by state, for the metrics (a failed read shows the last counts).
    fn count_queue(&self) {
        self.count_queue_in(self.queue);
    }

    /// Counts `queue` (this runner's queue, or another handle of it) for the page.
    fn count_queue_in(&self, queue: &dyn Queue) {
        let Some(m) = self.metrics else { return };
        if let Ok(entries) = queue.list() {
            m.update(|s| {
                s.queue_read_s = Some(crate::queue::now_ms() as f64 / 1e3);
                s.queue.clear();
                for e in entries {
                    *s.queue.entry(e.state.name()).or_default() += 1;
                }
            });
        }
    }

    fn beat(&self) {
        if let Some(m) = self.metrics {
            m.update(|s| s.heartbeat_s = Some(crate::queue::now_ms() as f64 / 1e3));
        }
    }

    fn outcome(&self, outcome: &'static str) {
        if let Some(m) = self.metrics {
            m.update(|s| *s.outcomes.entry(outcome).or_default() += 1);
        }
    }
}

/// Whether an error is the queue being out of reach (wait and try again).
fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Unreachable>())
}

/// Says a queue outage once, and again when it is over: one for the whole runner, so the
/// thread that sees the queue back says so whichever saw it go.
#[derive(Default)]
struct Outage {
    since: std::sync::Mutex<Option<Instant>>,
}

impl Outage {
    fn down(&self, e: &anyhow::Error) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        if since.is_none() {
            eprintln!("{e:#}; trying again");
            *since = Some(Instant::now());
        }
    }

    fn up(&self) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = since.take() {
            eprintln!(
                "queue reachable again after {:.1} s",
                at.elapsed().as_secs_f64()
            );
        }
    }
}

/// Takes tasks from the queue until stopped (with `once`, until the queue is empty).
pub fn serve(options: Options, prepare: Prepare<'_>, shutdown: &Shutdown) -> anyhow::Result<()> {
    options.serve(prepare, shutdown)
}

impl Options {
    fn serve(&self, prepare: Prepare<'_>, shutdown: &Shutdown) -> anyhow::Result<()> {
        let (lease, poll) = (self.lease, self.poll);
        let metrics = match &self.metrics_addr {
            Some(addr) => Some(Metrics::serve(addr)?),
            None => None,
        };
        let queue = crate::queue::open(self.queue.as_deref())?;
        // A Valkey queue out of reach at the start is waited for, as later.
        let outage = Outage::default();
        let runner = loop {
            match queue.join(lease) {
                Ok(runner) => break runner,
                Err(e) if unreachable(&e) && !shutdown.is_triggered() => {
                    outage.down(&e);
                    let until = Instant::now() + poll;
                    while Instant::now() < until && !shutdown.is_triggered() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Err(e) => return Err(e),
            }
        };
        outage.up();
        eprintln!("runner {} on {}", runner.id(), queue.location());
        if let Some(m) = &metrics {
            eprintln!("metrics at http://{}/metrics", m.addr);
            m.update(|s| s.runner = Some(runner.id().to_string()));
        }
        let post = Post {
            queue: &*queue,
            runner: &*runner,
            metrics: metrics.as_ref(),
            outage,
        };
        let result = self.take_tasks(&post, poll, prepare, shutdown);
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
        post: &Post<'_>,
        poll: Duration,
        prepare: Prepare<'_>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let runner = post.runner;
        let outage = &post.outage;
        let wait = |shutdown: &Shutdown| {
            let until = Instant::now() + poll;
            while Instant::now() < until && !shutdown.is_triggered() {
                std::thread::sleep(Duration::from_millis(50).min(poll));
            }
        };
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            let step = (|| {
                for id in runner.reclaim_dead()? {
                    eprintln!("{id}: back to pending (its runner died)");
                }
                post.count_queue();
                if !runner.renew()? {
                    anyhow::bail!("runner {}: its place in the queue was removed", runner.id());
                }
                post.beat();
                let claimed = runner.claim(self.max_deliveries)?;
                let awaiting = claimed.is_none() && self.once && runner.held_elsewhere()?;
                Ok((claimed, awaiting))
            })();
            match step {
                Err(e) if unreachable(&e) => {
                    outage.down(&e);
                    wait(shutdown);
                    continue;
                }
                Err(e) => return Err(e),
                Ok((claimed, awaiting)) => {
                    outage.up();
                    match claimed {
                        None if self.once && !awaiting => return Ok(()),
                        None => wait(shutdown),
                        Some(Claimed::Failed { name, why }) => {
                            eprintln!(
                                "{}: failed: {}",
                                printable(&name, false),
                                printable(&why, false)
                            );
                            post.outcome("failed");
                        }
                        Some(Claimed::Task(task)) => self.execute(post, task, prepare, shutdown)?,
                    }
                }
            }
        }
    }

    /// Runs one claimed task with the lease renewed beside it, and files its outcome.
    fn execute(
        &self,
        post: &Post<'_>,
        mut task: Task,
        prepare: Prepare<'_>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        eprintln!(
            "{}: {} {} (delivery {})",
            task.id,
            task.kind.name(),
            printable(&task.args.join(" "), false),
            task.deliveries
        );
        let prepared = match prepare(&task) {
            Ok(parsed) => parsed,
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("{}: failed: {}", task.id, printable(&why, false));
                if file(post, task, Outcome::Failed(why), shutdown)? {
                    post.outcome("failed");
                }
                return Ok(());
            }
        };
        let results = self.results_dir(&task.id);
        task.results = Some(results.display().to_string());
        let (tx, rx) = channel();
        let _ = tx.send(Status {
            step: format!("starting {}", task.kind.name()),
            updated_ms: crate::queue::now_ms(),
            ..Status::default()
        });
        let sink = Box::new(StatusSink::new(tx));
        let (done, lost) = (AtomicBool::new(false), AtomicBool::new(false));
        let hold = Hold::new();
        // The task's own stop, under the process's: a signal stops the task and the
        // runner; a lost hold (fenced by the watchdog or the heartbeat) stops the task only.
        let stop = Shutdown::new();
        let ran = std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    if shutdown.is_triggered() {
                        stop.trigger();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            s.spawn(|| heartbeat(post, &task, rx, &hold, &done, &lost, &stop));
            // The queue's counts for the metrics page, on a thread of their own: listing a
            // large or slow queue must never delay a renewal.
            // Through a handle of its own (the Valkey queue's is one connection behind a
            // lock, which a renewal must never wait for).
            if post.metrics.is_some() {
                s.spawn(|| {
                    let own = crate::queue::open(self.queue.as_deref()).ok();
                    let mut next = Instant::now();
                    while !done.load(Ordering::SeqCst) {
                        if let Some(own) = &own
                            && Instant::now() >= next
                        {
                            post.count_queue_in(own.as_ref());
                            next = Instant::now() + Duration::from_secs(5);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                });
            }
            s.spawn(|| watchdog(post.runner, &task, &hold, &done, &lost, &stop));
            let mut command = vec![task.kind.name().to_string()];
            command.extend(task.args.iter().cloned());
            let ran = crate::rundir::as_command(command, || {
                let mut sinks: Vec<Box<dyn Sink>> = vec![sink];
                sinks.extend(post.metrics.map(|m| Box::new(m.sink()) as Box<dyn Sink>));
                prepared(&results, &stop, sinks)
            });
            done.store(true, Ordering::SeqCst);
            ran
        });
        if lost.load(Ordering::SeqCst) && !shutdown.is_triggered() {
            // Stopped because another runner may hold it now: this one gives it back if it
            // still can (the delivery counted: a task that starves its own heartbeat must
            // not run forever), and takes the next task.
            eprintln!(
                "{}: stopped: this runner could not keep its hold on it (said above); its \
                 partial results stay in {}; back to the queue for another delivery",
                task.id,
                results.display()
            );
            match file(post, task, Outcome::GivenBack, shutdown) {
                Ok(true) => post.outcome("requeued"),
                Ok(false) => {} // another runner took it; said by `file`
                Err(e) => eprintln!("{e:#}"),
            }
            return Ok(());
        }
        let outcome = match ran {
            Ok(verdict) => {
                task.verdict = verdict;
                let summary = ["summary.md", "compare.md"]
                    .iter()
                    .find_map(|f| std::fs::read_to_string(results.join(f)).ok());
                Outcome::Done { summary }
            }
            // Stopped by a signal: not the task's failure; it goes back as it was.
            Err(_) if shutdown.is_triggered() => Outcome::Requeued,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        // The results are on disk (appended with fsync) before the queue hears of them.
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
                Outcome::Done { .. } => format!(
                    "done{}, results in {}",
                    task.verdict
                        .as_ref()
                        .map(|v| format!(" ({v})"))
                        .unwrap_or_default(),
                    results.display()
                ),
                Outcome::Failed(why) => format!("failed: {why}"),
                Outcome::Requeued => "interrupted, back to pending".into(),
                Outcome::GivenBack => "given back to the queue".into(),
            }
        );
        let name = match outcome {
            Outcome::Done { .. } => "done",
            Outcome::Failed(_) => "failed",
            Outcome::Requeued | Outcome::GivenBack => "requeued",
        };
        if file(post, task, outcome, shutdown)? {
            post.outcome(name);
        }
        Ok(())
    }

    /// `results/<id>`, or `results/<id>.2`, ... when an earlier delivery left one.
    fn results_dir(&self, id: &str) -> PathBuf {
        let base = self
            .results
            .clone()
            .unwrap_or_else(crate::project::results_dir);
        let mut dir = base.join(id);
        let mut n = 2;
        while dir.exists() {
            dir = base.join(format!("{id}.{n}"));
            n += 1;
        }
        dir
    }
}

/// Files a task's outcome, waiting for a queue out of reach (a stop while waiting leaves
/// it held: it is taken back after the lease, its results kept). Whether it was filed
/// (not: another runner had taken it).
fn file(
    post: &Post<'_>,
    task: Task,
    outcome: Outcome,
    shutdown: &Shutdown,
) -> anyhow::Result<bool> {
    let (runner, outage) = (post.runner, &post.outage);
    loop {
        match runner.finish(task.clone(), outcome.clone()) {
            Ok(true) => {
                outage.up();
                return Ok(true);
            }
            Ok(false) => {
                eprintln!(
                    "{}: not filed: another runner took it after this runner's lease ran out",
                    task.id
                );
                return Ok(false);
            }
            Err(e) if unreachable(&e) && !shutdown.is_triggered() => {
                outage.down(&e);
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                return Err(e.context(format!(
                    "filing task {} (its results stay in {}; the queue takes it back after the \
                     lease)",
                    task.id,
                    task.results.as_deref().unwrap_or("no directory")
                )));
            }
        }
    }
}

/// When the held task's heartbeat was last renewed (the moment the renewal was sent), in
/// [`boot_ms`].
struct Hold {
    renewed_ms: std::sync::atomic::AtomicU64,
}

impl Hold {
    fn new() -> Hold {
        Hold {
            renewed_ms: std::sync::atomic::AtomicU64::new(boot_ms()),
        }
    }

    fn renewed(&self, sent_ms: u64) {
        self.renewed_ms.fetch_max(sent_ms, Ordering::SeqCst);
    }

    fn since(&self) -> Duration {
        Duration::from_millis(boot_ms().saturating_sub(self.renewed_ms.load(Ordering::SeqCst)))
    }
}

/// Milliseconds since boot, suspended time included (`CLOCK_BOOTTIME`): `Instant` stops
/// while a VM is suspended, the queue server's clock does not, so a lease that ran out
/// during a suspension is seen as out on waking.
fn boot_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain syscall filling a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Stops the task when its heartbeat has not been renewed for two thirds of the lease:
/// another runner may take it once the lease is out, so this one fences itself first
/// (on a queue where the lease decides that: `Seat::lease_fences`).
/// It makes no call that can block (the heartbeat's calls to the queue can), so the stop
/// comes on time however slow the queue is.
fn watchdog(
    runner: &dyn Seat,
    task: &Task,
    hold: &Hold,
    done: &AtomicBool,
    lost: &AtomicBool,
    shutdown: &Shutdown,
) {
    if !runner.lease_fences() {
        return;
    }
    let limit = runner.lease() * 2 / 3;
    while !done.load(Ordering::SeqCst) && !lost.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if hold.since() > limit {
            eprintln!(
                "runner {}: no heartbeat renewed for {:.1} s of a {:.0} s lease; stopping task {}",
                runner.id(),
                hold.since().as_secs_f64(),
                runner.lease().as_secs_f64(),
                task.id
            );
            lost.store(true, Ordering::SeqCst);
            shutdown.trigger();
            crate::process::kill_all();
            return;
        }
    }
}

/// Renews the lease every third of it until `done` and publishes the task's latest status
/// (at most once a second). A runner that
/// no longer holds its task stops it: `lost`, the shutdown triggered and our servers
/// killed. An outage of the queue is waited for (the watchdog fences a long one).
fn heartbeat(
    post: &Post<'_>,
    task: &Task,
    status: Receiver<Status>,
    hold: &Hold,
    done: &AtomicBool,
    lost: &AtomicBool,
    shutdown: &Shutdown,
) {
    let runner = post.runner;
    let every = runner.lease() / 3;
    // As long as one call to the queue may take (its connection's timeout).
    let call = (runner.lease() / 4).min(Duration::from_secs(5));
    let mut next = Instant::now() + every;
    let (mut latest, mut next_report) = (None, Instant::now());
    let mut failing = false;
    let outage = &post.outage;
    let stop = |why: String| {
        eprintln!("runner {}: {why}; stopping task {}", runner.id(), task.id);
        lost.store(true, Ordering::SeqCst);
        shutdown.trigger();
        // Every child of a runner is its one task's.
        crate::process::kill_all();
    };
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        // The renewal first: nothing else this thread does may delay it.
        if Instant::now() >= next {
            let sent = boot_ms();
            match runner.renew() {
                Ok(true) => {
                    hold.renewed(sent);
                    post.beat();
                    outage.up();
                    failing = false;
                }
                Ok(false) => return stop("it no longer holds the task".into()),
                Err(e) => {
                    if unreachable(&e) {
                        outage.down(&e);
                    } else {
                        eprintln!("runner {}: renewing the lease: {e:#}", runner.id());
                    }
                    failing = true;
                }
            }
            // A failed renewal is tried again soon, not a third of the lease later: the
            // watchdog fences at two thirds.
            next = Instant::now()
                + if failing {
                    every.min(Duration::from_millis(500))
                } else {
                    every
                };
        }
        if let Some(s) = status.try_iter().last() {
            latest = Some(s);
        }
        // The rest only while the queue answers and no renewal is due before a slow call
        // could end.
        if failing || next.saturating_duration_since(Instant::now()) < call {
            continue;
        }
        if Instant::now() >= next_report
            && let Some(s) = latest.take()
        {
            next_report = Instant::now() + Duration::from_secs(1);
            match runner.report(task, &s) {
                Ok(()) => outage.up(),
                Err(e) if unreachable(&e) => outage.down(&e),
                Err(e) => eprintln!(
                    "runner {}: publishing the task's status: {e:#}",
                    runner.id()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests;
