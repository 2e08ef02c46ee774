//! `cargo xtask flamegraph`: profile a server under a workload and render a flame graph,
//! or with `--diff` a differential one of a baseline against it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bench_core::profile;
use bench_core::shutdown::Shutdown;
use clap::Args;

use super::{TopologyArgs, WorkloadArgs};
use crate::case::{CaseContext, Deploy, preload::Preload};
use crate::error::UsageError;
use crate::flamegraph::{self, Method, Profiler, Setup};
use crate::project;
use crate::topology;
use crate::valkey::{BuildRequest, Manifest};
use bench_core::topology::TopologySpec;

#[derive(Args, Debug)]
pub struct FlamegraphCmd {
    /// The server to profile: a pinned version, a source directory, or a revision of
    /// --valkey-src (default: the pinned default version).
    #[arg(long, value_name = "SPEC")]
    pub valkey: Option<String>,
    /// Also profile this baseline under the same workload and render a differential
    /// flame graph (red: grew in --valkey, blue: shrank).
    #[arg(long, value_name = "BASELINE_SPEC")]
    pub diff: Option<String>,
    /// The git repository revisions are taken from.
    #[arg(long, env = "VALKEY_SRC", value_name = "DIR")]
    pub valkey_src: Option<PathBuf>,
    #[command(flatten)]
    pub load: WorkloadArgs,
    /// The server's io-threads; with more than 1 the main thread and the I/O threads are
    /// separate towers.
    #[arg(long, default_value_t = 1)]
    pub io_threads: u32,
    /// Seconds profiled.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before profiling starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// perf's sampling frequency, Hz.
    #[arg(long, default_value_t = 999)]
    pub frequency: u32,
    /// perf (sampling) or callgrind (exact instruction counts, slower, no perf needed).
    #[arg(long, value_enum, default_value_t = Profiler::Perf)]
    pub profiler: Profiler,
    /// The SVG to write; the folded stacks and top-function table go beside it
    /// (default results/<time>-flamegraph-<salt>/flamegraph.svg).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Functions listed by self time.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[arg(long, default_value_t = 9400)]
    pub base_port: u16,
    #[command(flatten)]
    pub topology: TopologyArgs,
    /// Where the servers run (`--client-hosts` is refused: the profile's load runs here).
    #[command(flatten)]
    pub hosts: super::args::HostsArgs,
    /// Build with TLS and profile a server with a TLS port only (the TLS library's frames
    /// in the graph; perf profiler).
    #[arg(long)]
    pub tls: bool,
    /// Print what was written and the top functions as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run as a queued task: SPECs are pinned versions or revisions, never paths, and the
    /// workload a preset, never a file.
    #[arg(skip)]
    pub task: bool,
}

/// The flags, checked: what `run` uses, and what `queue add` validates a task with.
pub struct Checked {
    duration: Duration,
    warmup: Duration,
    topology: TopologySpec,
    read_from: bench_core::topology::ReadFrom,
    builds: (BuildRequest, Option<BuildRequest>),
}

impl FlamegraphCmd {
    /// Every flag checked, starting and building nothing.
    pub fn check(&self) -> anyhow::Result<Checked> {
        let seconds = |flag: &str, s: f64, min: f64| -> anyhow::Result<Duration> {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| d.as_secs_f64() >= min && d.as_secs_f64() <= super::MAX_SECONDS)
                .ok_or_else(|| {
                    UsageError(format!(
                        "{flag} {s}: give a number of seconds from {min} to {} (7 days)",
                        super::MAX_SECONDS
                    ))
                    .into()
                })
        };
        let duration = seconds("--duration", self.duration, 0.1)?;
        let warmup = seconds("--warmup", self.warmup, 0.0)?;
        if self.frequency == 0 || self.frequency > 50_000 {
            return Err(UsageError(format!(
                "--frequency {}: give a sampling rate in Hz, 1 to 50000",
                self.frequency
            ))
            .into());
        }
        if self.io_threads == 0 || self.io_threads > 128 {
            return Err(
                UsageError(format!("--io-threads {}: give 1 to 128", self.io_threads)).into(),
            );
        }
        let topology = self.topology.spec()?.unwrap_or_default();
        let read_from = self.topology.read_from(topology)?;
        if read_from == bench_core::topology::ReadFrom::Replicas {
            return Err(UsageError(
                "--read-from replicas: the flame graph is of the first primary, which would \
                 get none of the reads; drop --read-from"
                    .into(),
            )
            .into());
        }
        if self.tls && self.profiler == Profiler::Callgrind {
            return Err(UsageError(
                "--tls: --profiler callgrind runs a plain-TCP server under valgrind; use \
                 --profiler perf, or drop --tls"
                    .into(),
            )
            .into());
        }
        let hosts = self.hosts.choice()?;
        if let Some(why) = if self.hosts.client_hosts.is_some() {
            Some("--client-hosts: the profile's load runs from this machine; drop it")
        } else if !hosts.is_local() && self.profiler == Profiler::Callgrind {
            Some(
                "--profiler callgrind runs the server under valgrind on this machine only; with \
                 --server-hosts use --profiler perf (perf records on the server's host)",
            )
        } else {
            None
        } {
            return Err(UsageError(why.into()).into());
        }
        if topology != TopologySpec::Standalone && self.profiler == Profiler::Callgrind {
            return Err(UsageError(format!(
                "--profiler callgrind runs one standalone server under valgrind, not a {topology} \
                 topology; use --profiler perf, or drop --topology"
            ))
            .into());
        }
        if self.task
            && let Some(file) = self
                .load
                .workload
                .as_deref()
                .filter(|w| !bench_core::workload::preset_names().contains(w))
        {
            return Err(UsageError(format!(
                "--workload {file:?}: a task names a preset ({}); a workload file is a path \
                 on the queueing machine",
                bench_core::workload::preset_names().join(", ")
            ))
            .into());
        }
        self.load.resolve(None)?;
        let manifest = Manifest::embedded();
        let request = |flag: &str, spec: Option<&str>| -> anyhow::Result<BuildRequest> {
            let spec = spec.unwrap_or(&manifest.default);
            let mut build = BuildRequest::resolve_spec(
                self.task,
                flag,
                spec,
                self.valkey_src.as_deref(),
                &manifest,
            )?;
            build.options.tls = self.tls;
            build.check()?;
            Ok(build)
        };
        let builds = (
            request("--valkey", self.valkey.as_deref())?,
            self.diff
                .as_deref()
                .map(|spec| request("--diff", Some(spec)))
                .transpose()?,
        );
        Ok(Checked {
            duration,
            warmup,
            topology,
            read_from,
            builds,
        })
    }

    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let Checked {
            duration,
            warmup,
            topology,
            read_from,
            builds,
        } = self.check()?;
        // The hosts (their keys checked), then the profiler there, before building anything.
        let hosts = self.hosts.choice()?.connect(shutdown)?;
        let event = match self.profiler {
            Profiler::Perf => flamegraph::perf_event(&hosts.servers, shutdown)?,
            Profiler::Callgrind => {
                crate::counts::instructions::check_valgrind(
                    "--profiler callgrind",
                    "--profiler perf",
                )?;
                "instructions"
            }
        };
        let (spec, pipeline) = self.load.resolve(None)?;
        let default = Manifest::embedded().default;
        let candidate = builds.0.binaries(shutdown).with_context(|| {
            format!(
                "building --valkey {}",
                self.valkey.as_ref().unwrap_or(&default)
            )
        })?;
        let baseline = match (builds.1, self.diff.as_deref()) {
            (Some(build), Some(spec)) => Some((
                build
                    .binaries(shutdown)
                    .with_context(|| format!("building --diff {spec}"))?,
                spec,
            )),
            _ => None,
        };
        let mut config = std::collections::BTreeMap::new();
        if self.io_threads > 1 {
            config.insert("io-threads".to_string(), self.io_threads.to_string());
        }
        // Reads hit and INCR counts: the profile is of the path the workload means.
        let setup = Setup {
            spec: &spec,
            clients: self.load.clients,
            pipeline,
            config,
            preload: Preload::strings(spec.clone()),
            warmup,
            duration,
            frequency: self.frequency,
        };
        let host = crate::host::info();
        let out = self.out.clone().unwrap_or_else(|| {
            project::results_dir()
                .join(crate::rundir::run_id("flamegraph"))
                .join("flamegraph.svg")
        });
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let what = format!(
            "{}: {} connections × pipeline {}, io-threads {}",
            spec.name, setup.clients, setup.pipeline, self.io_threads
        );

        let topology = topology::from_spec(topology, read_from);
        let servers = Deploy {
            topology: topology.as_ref(),
            hosts: &hosts.servers,
        };
        let ctx = |binaries| CaseContext {
            run_id: "flamegraph",
            binaries,
            host: &host,
            hosts: &hosts.servers,
            engine: &bench_core::loadgen::engine::NativeEngine,
            base_port: self.base_port,
            shutdown,
            servers: &servers,
            tls: self.topology.tls(self.tls),
        };
        let (candidate, baseline) = (
            ctx(&candidate),
            baseline.as_ref().map(|(b, spec)| (ctx(b), *spec)),
        );
        let written = flamegraph::Written::record(
            &candidate,
            baseline.as_ref().map(|(c, spec)| (c, *spec)),
            &setup,
            &Method {
                profiler: self.profiler,
                event,
                top: self.top,
            },
            &out,
            &what,
            &mut |line| eprintln!("{line}"),
        )?;
        let (profile, report) = (&written.profile, &written.summary);
        let (threads, top) = (&written.threads, &written.top);
        if self.json {
            println!("{report}");
            return Ok(());
        }
        println!("threads ({}):", profile.count_name);
        let total: u64 = threads.iter().map(|t| t.1).sum();
        for (thread, n) in threads {
            println!(
                "  {thread:<20} {:>6.2}%",
                100.0 * *n as f64 / total.max(1) as f64
            );
        }
        println!("\ntop functions by self time:\n");
        print!("{}", profile::top_table(top, profile.count_name));
        println!("\nflame graph: {}", out.display());
        if let Some(diff) = report.get("diff_svg") {
            println!(
                "differential flame graph: {}",
                diff.as_str().unwrap_or_default()
            );
        }
        Ok(())
    }
}
