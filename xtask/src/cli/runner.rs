//! `cargo xtask runner`: its flags, checked, and the task runner started with them
//! (`crate::runner`); a queued task is checked and run by its command's own code
//! (`validate_task`).

use std::path::PathBuf;
use std::time::Duration;

use bench_core::shutdown::Shutdown;
use clap::Args;

use super::validate_task;
use crate::error::UsageError;
use crate::runner::{Options, Prepared};

#[derive(Args, Debug)]
pub struct RunnerCmd {
    /// The queue: a directory (default: queue/ at the project root), or a Valkey server's
    /// stream, valkey://HOST[:PORT]/NAME (valkeys:// for TLS; TLS and AUTH settings come
    /// from VALKEY_BENCH_QUEUE_CA, _USER and _PASSWORD_FILE: docs/lab.md).
    #[arg(long, value_name = "DIR|URL")]
    pub queue: Option<String>,
    /// Stop when no task is pending, instead of waiting for more (on a Valkey queue, also
    /// none held by another runner: it may die and its task come back).
    #[arg(long)]
    pub once: bool,
    /// Seconds the heartbeat lasts unrenewed; it is renewed every third of it. On a Valkey
    /// queue a runner silent this long is dead and its task is taken back; on a
    /// directory queue a dead runner's tasks are taken back by its released lock, at once.
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
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464): requests,
    /// errors and latency histograms of the tasks' runs, tasks by outcome, the queue by
    /// state, the heartbeat.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Where tasks run their servers and load: the runner's hosts file and placement. A
    /// task may ask for a count of hosts (`--server-hosts 2`), taken from these (the
    /// first of the runner's lists, or any of its file's); never for names.
    #[command(flatten)]
    pub hosts: super::HostsArgs,
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
        // Checked now: a bad hosts file stops the runner before it takes a task.
        self.hosts.choice()?;
        let hosts = self.hosts.clone();
        let options = Options {
            queue: self.queue,
            once: self.once,
            lease,
            max_deliveries: self.max_deliveries,
            poll,
            results: self.results,
            metrics_addr: self.metrics_addr,
        };
        let prepare = |task: &crate::queue::Task| -> anyhow::Result<Prepared> {
            let parsed = validate_task(task.kind, &task.args, Some(&hosts))?;
            Ok(Box::new(move |dir, stop, sinks| {
                parsed.run_in(dir, stop, sinks)
            }))
        };
        crate::runner::serve(options, &prepare, shutdown)
    }
}
