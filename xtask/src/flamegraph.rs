//! Recording a server's profile under a workload, only during the measured window.
//!
//! A fresh server is started (with the requested io-threads) and preloaded; the native
//! generator runs the workload on a thread of its own; after the warmup the profiler
//! starts, and it stops before the load does. Two profilers:
//!
//! - `perf record -g -p PID` (the default): sampling, with frame-pointer stacks (Valkey's
//!   default build keeps them). The `cycles` event where the machine has hardware counters,
//!   else the `cpu-clock` software event, as on most VMs. Folded counts are the samples'
//!   periods: nanoseconds of CPU for `cpu-clock`, cycles for `cycles`.
//! - callgrind: the server runs under valgrind; callgrind's `zero` and `dump` (through `vgdb`)
//!   bracket the window. Deterministic instruction counts, ~50× slower, no perf needed.
//!
//! Folding and rendering are in `bench_core::profile`.

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::engine::Target;
use bench_core::loadgen::{self, RunOptions, Stop};
use bench_core::profile;
use bench_core::shutdown::Shutdown;
use bench_core::workload::WorkloadSpec;

use crate::case::CaseContext;
use crate::case::preload::Preload;
use crate::error::UsageError;
use crate::host::ServerHosts;
use crate::instances;
use crate::rundir::write_atomically;
use crate::valkey::Binaries;

/// How long the load keeps going after the profiler stopped, so the window never sees
/// the load wind down.
const TAIL: Duration = Duration::from_millis(500);

/// How long callgrind's zero and dump may take on top of the window.
const CONTROL_ALLOWANCE: Duration = Duration::from_secs(120);
/// Callgrind paths worth less than this share of the total are cut (self costs stay
/// exact; see `profile::fold_callgrind`).
const CALLGRIND_MIN_SHARE: f64 = 0.0005;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profiler {
    Perf,
    Callgrind,
}

/// What to run while profiling.
pub struct Setup<'a> {
    pub spec: &'a WorkloadSpec,
    pub clients: u32,
    pub pipeline: u32,
    /// Server configuration (`io-threads` among it).
    pub config: BTreeMap<String, String>,
    /// What the workload reads, written on the fresh server.
    pub preload: Preload,
    pub warmup: Duration,
    pub duration: Duration,
    /// perf's sampling frequency, Hz.
    pub frequency: u32,
}

/// A recorded profile as folded stacks.
#[derive(Clone, Debug)]
pub struct Profile {
    pub folded: String,
    /// The unit of the counts: `ns` (cpu-clock), `cycles`, `instructions`.
    pub count_name: &'static str,
    /// How it was recorded, for the flame graph's subtitle.
    pub method: String,
    /// Throughput of the load over the whole run, ops/s.
    pub ops_per_sec: f64,
}

/// The perf event to sample on the host of the first primary (the one profiled: the
/// first of `hosts`); where perf cannot run, the error says how to fix it, and on this
/// machine also offers callgrind.
pub fn perf_event(hosts: &ServerHosts, shutdown: &Shutdown) -> anyhow::Result<&'static str> {
    let host = hosts.first();
    if !host.is_local() {
        return host.perf_event(shutdown);
    }
    host.perf_event(shutdown)
        .map_err(|e| match e.downcast_ref::<UsageError>() {
            Some(why) => UsageError(format!(
                "{}. Or profile without perf: --profiler callgrind",
                why.0
            ))
            .into(),
            None => e,
        })
}

/// Starts a server, runs the workload, and profiles the server over `setup.duration`.
pub fn record(
    ctx: &CaseContext<'_>,
    setup: &Setup<'_>,
    profiler: Profiler,
    perf_event: &'static str,
) -> anyhow::Result<Profile> {
    let shutdown = ctx.shutdown;
    if profiler == Profiler::Callgrind && !ctx.hosts.all_local() {
        bail!(UsageError(
            "--profiler callgrind runs the server under valgrind on this machine only; with \
             servers on other hosts use --profiler perf"
                .into()
        ));
    }
    let scratch = instances::scratch_dir("profile")?;
    let mut options = instances::Options {
        config: setup.config.clone(),
        ..Default::default()
    };
    let vgdb_prefix = scratch.path().join("vgdb");
    if profiler == Profiler::Callgrind {
        options.wrapper = vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!(
                "--callgrind-out-file={}",
                scratch.path().join("callgrind.out").display()
            ),
            "--dump-instr=no".into(),
            format!("--vgdb-prefix={}", vgdb_prefix.display()),
        ];
        options.ready_timeout = crate::counts::instructions::READY_UNDER_VALGRIND;
    }
    let mut server = ctx.deploy(options)?;
    server.preload(&setup.preload)?;

    let mut load = Load::start(&server.target(), setup, profiler)?;
    sleep(setup.warmup, shutdown)?;
    let window = Instant::now();
    let (folded, count_name, method) = match profiler {
        Profiler::Perf => {
            let recording = server.perf_record(perf_event, setup.frequency)?;
            let waited = sleep(setup.duration, shutdown);
            let window = window.elapsed();
            let running = load.check_running();
            // On an early return the recording is dropped: that kills perf here; on
            // another host perf stops when the server is stopped (dropped below).
            waited?;
            running?;
            let folded = recording.finish(shutdown)?;
            let unit = if perf_event == "cpu-clock" {
                "ns"
            } else {
                "cycles"
            };
            let host = ctx.hosts.first();
            let method = format!(
                "perf record -e {perf_event} -F {} -g over {:.1} s{}",
                setup.frequency,
                window.as_secs_f64(),
                if host.is_local() {
                    String::new()
                } else {
                    format!(" on host {}", host.name())
                }
            );
            (folded, unit, method)
        }
        Profiler::Callgrind => {
            // vgdb can take seconds under valgrind: the window is bracketed by
            // the calls themselves (from --zero's return to --dump's start), and the load
            // runs past both (it is stopped once the dump is taken).
            let pid = server.pid();
            crate::counts::callgrind::monitor(&["zero"], pid, &vgdb_prefix, shutdown)?;
            let window = Instant::now();
            sleep(setup.duration, shutdown)?;
            load.check_running()?;
            let window = window.elapsed();
            crate::counts::callgrind::monitor(&["dump"], pid, &vgdb_prefix, shutdown)?;
            load.stop.trigger();
            let dump = crate::counts::callgrind::dump_file(scratch.path())?;
            let text = std::fs::read_to_string(&dump)
                .with_context(|| format!("reading {}", dump.display()))?;
            let folded = profile::fold_callgrind(&text, CALLGRIND_MIN_SHARE)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dump.display()))?;
            let method = format!(
                "callgrind over {:.1} s (all threads; stacks rebuilt from the call graph)",
                window.as_secs_f64()
            );
            (
                profile::with_root(&folded, "valkey-server"),
                "instructions",
                method,
            )
        }
    };
    let ops_per_sec = load.finish()?;
    drop(server);
    if folded.trim().is_empty() {
        bail!("the profiler recorded no samples of the server");
    }
    Ok(Profile {
        folded,
        count_name,
        method,
        ops_per_sec,
    })
}

/// How to profile: which profiler, which perf event, how many top functions to list.
pub struct Method {
    pub profiler: Profiler,
    pub event: &'static str,
    pub top: usize,
}

/// What `cargo xtask flamegraph` recorded and wrote: the candidate's profile, its threads
/// and top functions, and the JSON summary (file paths, and with a baseline its top
/// functions and the movers).
pub struct Written {
    pub profile: Profile,
    pub threads: Vec<(String, u64)>,
    pub top: Vec<profile::FunctionCost>,
    pub summary: serde_json::Value,
}

impl Written {
    /// Profiles the candidate (and the baseline, `(context, its SPEC)`, after it), and
    /// writes the flame graph files beside `out` (`write_profile`, or `write_diff` with a
    /// baseline). `progress` gets a line as each side starts.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        candidate: &CaseContext<'_>,
        baseline: Option<(&CaseContext<'_>, &str)>,
        setup: &Setup<'_>,
        method: &Method,
        out: &Path,
        what: &str,
        progress: &mut dyn FnMut(String),
    ) -> anyhow::Result<Written> {
        let mut profile_side = |ctx: &CaseContext<'_>| -> anyhow::Result<Profile> {
            let binaries = ctx.binaries;
            let host = ctx.hosts.first();
            progress(format!(
                "profiling valkey-server {} ({}){} with {} for {:.1} s under {what}",
                binaries.version,
                short_source(&binaries.source_id),
                if host.is_local() {
                    String::new()
                } else {
                    format!(" on host {}", host.name())
                },
                match method.profiler {
                    Profiler::Perf => format!("perf ({})", method.event),
                    Profiler::Callgrind => "callgrind".into(),
                },
                setup.duration.as_secs_f64()
            ));
            record(ctx, setup, method.profiler, method.event)
        };
        let after = profile_side(candidate)?;
        let threads = profile::threads(&after.folded);
        let top = profile::top_functions(&after.folded, method.top);
        let mut summary = serde_json::json!({
            "svg": out,
            "folded": out.with_extension("folded"),
            "count_name": after.count_name,
            "method": after.method,
            "host": candidate.hosts.first().name(),
            "ops_per_sec": after.ops_per_sec,
            "threads": threads,
            "top": top,
        });
        match baseline {
            Some((ctx, spec)) => {
                let before = profile_side(ctx)?;
                let diff = write_diff(
                    out,
                    (ctx.binaries, &before),
                    (candidate.binaries, &after),
                    spec,
                    what,
                )?;
                summary["baseline_svg"] = serde_json::json!(out.with_extension("baseline.svg"));
                summary["diff_svg"] = serde_json::json!(diff);
                summary["baseline_top"] =
                    serde_json::json!(profile::top_functions(&before.folded, method.top));
                summary["movers"] = serde_json::json!(profile::top_movers(
                    &before.folded,
                    &after.folded,
                    method.top
                ));
            }
            None => write_profile(out, &after, candidate.binaries, what)?,
        }
        Ok(Written {
            profile: after,
            threads,
            top,
            summary,
        })
    }
}

/// The generator, running on its own thread until the window (and a tail) is over.
struct Load {
    handle: Option<thread::JoinHandle<Result<loadgen::Report, loadgen::LoadgenError>>>,
    stop: Shutdown,
}

impl Load {
    /// On a cluster the load goes to every shard (a template whose keys span slots is
    /// refused); the profile is of the first primary.
    fn start(target: &Target, setup: &Setup<'_>, profiler: Profiler) -> anyhow::Result<Load> {
        let addr = target.primary();
        let spec = setup.spec.clone();
        let options = RunOptions {
            connections: setup.clients,
            pipeline: setup.pipeline,
            threads: 1,
            rate: None,
            // Under callgrind the control calls' time comes on top; the load is stopped
            // by us once the dump is taken.
            stop: Stop::Duration(match profiler {
                Profiler::Perf => setup.warmup + setup.duration + TAIL,
                Profiler::Callgrind => setup.warmup + setup.duration + CONTROL_ALLOWANCE,
            }),
            warmup: Duration::ZERO,
            cluster: target.cluster.map(|read_from| loadgen::ClusterOptions {
                read_from,
                tag_multi_key: false,
                nodes: target.nodes.clone(),
            }),
            cpus: Vec::new(),
            tls: target.tls.clone(),
            share: None,
            start_at: None,
        };
        // Its own stop handle, tripped by ours: the load ends with the run either way.
        let stop = Shutdown::new();
        let theirs = stop.clone();
        let handle = thread::Builder::new()
            .name("profile-load".into())
            .spawn(move || loadgen::run(&[addr], &spec, &options, &theirs, |_| {}))?;
        Ok(Load {
            handle: Some(handle),
            stop,
        })
    }

    /// Fails if the generator already ended, which means the load stopped early.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if self.handle.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        let why = match self.handle.take().map(thread::JoinHandle::join) {
            Some(Ok(Ok(report))) => report
                .partial
                .unwrap_or_else(|| "it finished its requests".into()),
            Some(Ok(Err(e))) => e.to_string(),
            Some(Err(_)) => "the generator panicked".into(),
            None => "it was already stopped".into(),
        };
        bail!("the load ended before the profile window did: {why}")
    }

    fn finish(mut self) -> anyhow::Result<f64> {
        let report = self
            .handle
            .take()
            .context("the load was already finished")?
            .join()
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))??;
        if let Some(why) = report.partial {
            bail!("the load ended early: {why}");
        }
        let errors: u64 = report.errors.values().sum();
        if errors > 0 {
            bail!("the load got {errors} errors: {:?}", report.errors);
        }
        Ok(report.ops_per_sec)
    }
}

impl Drop for Load {
    /// On an early return: stop the generator and wait for it, before the server goes.
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Sleeps `d`, returning early with an error if the run is interrupted.
fn sleep(d: Duration, shutdown: &Shutdown) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if shutdown.is_triggered() {
            bail!("interrupted");
        }
        thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

/// Writes `out` (the SVG), `<stem>.folded` and `<stem>.top.md` for one profile; `what` is
/// the workload's description for the title.
pub fn write_profile(
    out: &Path,
    profile: &Profile,
    binaries: &Binaries,
    what: &str,
) -> anyhow::Result<()> {
    let title = format!(
        "valkey-server {} ({}): {what}",
        binaries.version,
        short_source(&binaries.source_id)
    );
    let subtitle = format!(
        "{}; {:.0} ops/s; width = {}",
        profile.method, profile.ops_per_sec, profile.count_name
    );
    let svg = profile::flamegraph_svg(
        &profile.folded,
        &profile::Title {
            title: &title,
            subtitle: &subtitle,
            count_name: profile.count_name,
        },
    )?;
    write_atomically(out, svg.as_bytes())?;
    write_atomically(&out.with_extension("folded"), profile.folded.as_bytes())?;
    let top = profile::top_table(
        &profile::top_functions(&profile.folded, 50),
        profile.count_name,
    );
    write_atomically(
        &out.with_extension("top.md"),
        format!("# {title}\n\n{subtitle}\n\n{top}").as_bytes(),
    )?;
    Ok(())
}

/// Two profiles of one workload, baseline then candidate, as files beside `out`:
/// `<stem>.baseline.svg`, `out` (the candidate), `<stem>.diff.svg` (inferno's differential
/// flame graph) and `<stem>.movers.md` (the functions whose self share moved most).
/// Returns the diff SVG's path.
pub fn write_diff(
    out: &Path,
    (baseline, before): (&Binaries, &Profile),
    (candidate, after): (&Binaries, &Profile),
    baseline_spec: &str,
    what: &str,
) -> anyhow::Result<std::path::PathBuf> {
    write_profile(&out.with_extension("baseline.svg"), before, baseline, what)?;
    write_profile(out, after, candidate, what)?;
    let diff = profile::differential_folded(&before.folded, &after.folded)?;
    let title = format!(
        "{} ({}) against {} ({}): {what}",
        candidate.version,
        short_source(&candidate.source_id),
        baseline.version,
        short_source(&baseline.source_id)
    );
    let subtitle = format!(
        "widths: the candidate; red grew, blue shrank against {baseline_spec} (scaled to the same total); {}",
        after.method
    );
    let svg = profile::differential_svg(
        &diff,
        &profile::Title {
            title: &title,
            subtitle: &subtitle,
            count_name: after.count_name,
        },
    )?;
    let diff_out = out.with_extension("diff.svg");
    write_atomically(&diff_out, svg.as_bytes())?;
    write_atomically(&out.with_extension("diff.folded"), diff.as_bytes())?;
    let movers = profile::top_movers(&before.folded, &after.folded, 15);
    write_atomically(
        &out.with_extension("movers.md"),
        profile::movers_table(&movers).as_bytes(),
    )?;
    Ok(diff_out)
}

/// `git:0123456789abcdef...` → `git:0123456789ab`; pinned sources keep their version part.
pub fn short_source(source_id: &str) -> String {
    match source_id.split_once(':') {
        Some((kind @ ("pinned" | "debian"), rest)) => {
            format!("{kind}:{}", rest.split(':').next().unwrap_or(rest))
        }
        Some((kind, rest)) => format!("{kind}:{}", &rest[..rest.len().min(12)]),
        None => source_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_shortened_for_titles() {
        assert_eq!(
            short_source("debian:8.1.1+dfsg1-1:sha256:abcdef"),
            "debian:8.1.1+dfsg1-1"
        );
        assert_eq!(
            short_source("pinned:8.1.1:sha256:d9bbd82eecb82f35"),
            "pinned:8.1.1"
        );
        assert_eq!(
            short_source("tarball:d9bbd82eecb82f35"),
            "tarball:d9bbd82eecb8"
        );
        assert_eq!(
            short_source("git:0123456789abcdef0123-dirty-ff"),
            "git:0123456789ab"
        );
        assert_eq!(short_source("tree:abc"), "tree:abc");
    }

    #[test]
    fn companion_files_share_the_stem() {
        let out = Path::new("/r/flamegraph.svg");
        assert_eq!(
            out.with_extension("folded"),
            Path::new("/r/flamegraph.folded")
        );
        assert_eq!(
            out.with_extension("diff.svg"),
            Path::new("/r/flamegraph.diff.svg")
        );
        assert_eq!(
            out.with_extension("baseline.svg"),
            Path::new("/r/flamegraph.baseline.svg")
        );
    }
}
