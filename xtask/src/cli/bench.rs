//! `cargo xtask bench`: the flags, turned into a plan (`plan/suite_file.rs`) that the
//! runner executes: build Valkey, run a suite, write `results/<run-id>/`, print a table.

use std::path::PathBuf;

use bench_core::shutdown::Shutdown;
use bench_core::topology::ReadFrom;
use clap::Args;

use super::{HostsArgs, MatrixArgs, PlacementArgs, SuiteArg, TopologyArgs, ValkeyArgs};
use crate::error::UsageError;
use crate::events::{Sink, Sinks};
use crate::instances;
use crate::plan::suite_file::SuiteChoice;

#[derive(Args, Debug)]
pub struct BenchCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
    #[command(flatten)]
    pub hosts: HostsArgs,
    #[command(flatten)]
    pub matrix: MatrixArgs,
    /// The suite to run (default perf, or what the suite file says).
    #[arg(long, value_enum)]
    pub suite: Option<SuiteArg>,
    /// A suite definition file (TOML) replacing the built-in matrix; see bench-core/suites/.
    #[arg(long, value_name = "FILE")]
    pub suite_file: Option<PathBuf>,
    /// The short built-in matrix (under a minute once Valkey is built).
    #[arg(long, conflicts_with = "suite_file")]
    pub quick: bool,
    /// Results directory (default: results/<run-id>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The first port tried for servers; ports in use are skipped.
    #[arg(long, default_value_t = instances::Options::default().base_port)]
    pub base_port: u16,
    /// Extra server configuration for every case, name=value (repeatable).
    /// `io-threads=N` replaces the suite's io_threads list.
    #[arg(long = "server-config", value_name = "NAME=VALUE")]
    pub server_config: Vec<String>,
    /// The load generator, replacing the suite file's `engine`.
    #[arg(long, value_parser = ["native", "valkey-benchmark"])]
    pub engine: Option<String>,
    /// Print the run's summary as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the run's progress events here, one JSON object per line, flushed as
    /// they happen (run_started, case_started, record_written, case_finished, finished).
    #[arg(long, value_name = "FILE")]
    pub progress_json: Option<PathBuf>,
}

impl BenchCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        self.run_with(shutdown, Vec::new())
    }

    /// `run`, its events also given to `extra` (a queued task's status).
    pub fn run_with(self, shutdown: &Shutdown, extra: Vec<Box<dyn Sink>>) -> anyhow::Result<()> {
        if let Some(out) = &self.out {
            crate::rundir::check_unused(out).map_err(UsageError)?;
        }
        // Every flag and the suite file are checked before the progress file is created.
        let (plan, read_from) = self.plan()?;
        let hosts = self
            .hosts
            .choice_with(self.suite_choice()?.hosts()?.as_ref())?;
        if let Some(clients) = &hosts.client_hosts {
            let why = match &plan {
                crate::plan::suite_file::Plan::Perf(spec)
                    if spec.engine == bench_core::perf::EngineKind::ValkeyBenchmark =>
                {
                    Some("valkey-benchmark runs on this machine; use the native engine")
                }
                crate::plan::suite_file::Plan::Perf(_) => None,
                _ => Some("the mem and sync suites write their own traffic from this machine"),
            };
            if let Some(why) = why {
                return Err(UsageError(format!("--client-hosts {clients}: {why}")).into());
            }
            if self.placement.client_cpus.is_some() {
                return Err(UsageError(
                    "--client-cpus with --client-hosts: pin each host's generator with \
                     `client_cpus` in its hosts-file entry"
                        .into(),
                )
                .into());
            }
        }
        if !hosts.is_local() && self.placement.server_cpus.is_some() {
            return Err(UsageError(
                "--server-cpus with --server-hosts: those are this machine's CPUs; pin the \
                 servers on each host with `server_cpus` in its hosts-file entry"
                    .into(),
            )
            .into());
        }
        let mut sinks = self.sinks()?;
        for sink in extra {
            sinks.push(sink);
        }
        self.bench(read_from, hosts)
            .execute(plan, &mut sinks, shutdown)
    }

    /// The flags and the suite file checked and turned into the plan, starting nothing:
    /// what `run` executes and what `queue add` validates a task with.
    pub fn plan(&self) -> anyhow::Result<(crate::plan::suite_file::Plan, ReadFrom)> {
        let plan = self.suite_choice()?.plan()?;
        let read_from = self.topology.read_from(plan.topology())?;
        Ok((plan, read_from))
    }

    /// Where the cases come from, as the flags say.
    fn suite_choice(&self) -> anyhow::Result<SuiteChoice> {
        Ok(SuiteChoice {
            suite: self.suite.map(Into::into),
            file: self.suite_file.clone(),
            quick: self.quick,
            engine: self.engine.clone(),
            server_config: super::parse_server_config(&self.server_config)?,
            topology: self.topology.spec()?,
            placement: self.placement.parse()?,
            tls: self.topology.tls(self.valkey.tls),
            matrix: self.matrix.matrix(),
        })
    }

    fn bench(
        &self,
        read_from: ReadFrom,
        hosts: crate::host::choice::HostsChoice,
    ) -> crate::bench::Bench {
        crate::bench::Bench {
            build: self.valkey.request(),
            out: self.out.clone(),
            base_port: self.base_port,
            json: self.json,
            read_from,
            tls: self.topology.tls(self.valkey.tls),
            hosts,
        }
    }

    /// The terminal view, and the JSON-lines stream with `--progress-json`.
    fn sinks(&self) -> anyhow::Result<Sinks> {
        crate::views::terminal_and_json(self.progress_json.as_deref(), self.out.as_deref())
    }
}
