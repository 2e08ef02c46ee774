//! `cargo xtask compare`: the flags, resolved into a `compare::Request` (SPECs into builds)
//! and run. Exit codes: 0 no regression, 1 a regression, 2 the comparison could not run,
//! 3 inconclusive.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use bench_core::shutdown::Shutdown;
use clap::{Args, ValueEnum};

use super::{MatrixArgs, PlacementArgs, SuiteArg, TopologyArgs};
use crate::compare::{self, Request, SideSpec};
use crate::error::CouldNotRun;
use crate::events::{Sink, Sinks};
use crate::instances;
use crate::valkey::{BuildRequest, Manifest};
use crate::views::json_lines::JsonLines;
use crate::views::terminal::Terminal;

#[derive(Args, Debug)]
pub struct CompareCmd {
    /// What to compare against: a pinned version (8.1.1), a directory, or a git revision
    /// of --valkey-src.
    #[arg(long, value_name = "SPEC")]
    pub baseline: String,
    /// What is being checked, in the same forms as --baseline.
    #[arg(long, value_name = "SPEC")]
    pub candidate: String,
    /// The git repository (or tree) that revisions in --baseline/--candidate name.
    #[arg(long, env = "VALKEY_SRC", value_name = "DIR")]
    pub valkey_src: Option<PathBuf>,
    #[command(flatten)]
    pub topology: TopologyArgs,
    /// Build both sides with TLS and start their servers with a TLS port only (perf
    /// suite; every case is timed).
    #[arg(long)]
    pub tls: bool,
    #[command(flatten)]
    pub placement: PlacementArgs,
    #[command(flatten)]
    pub hosts: super::HostsArgs,
    #[command(flatten)]
    pub matrix: MatrixArgs,
    #[arg(long, value_enum, default_value_t = SuiteArg::Perf)]
    pub suite: SuiteArg,
    /// Only cases whose name contains one of these comma-separated strings.
    #[arg(long, value_name = "FILTER")]
    pub cases: Option<String>,
    /// The short built-in matrix of the suite.
    #[arg(long)]
    pub quick: bool,
    /// auto: every perf case's exact counts first (instructions and system calls per
    /// request), which say which cases changed, then wall-clock trials on the changed
    /// cases and on guards that did not, which say which way (time outside the perf suite,
    /// or without valgrind). time: interleaved wall-clock trials of every case.
    /// instructions: callgrind instruction counts alone, deciding as instruction verdicts
    /// (perf suite only).
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Smallest change called a regression or improvement, percent: the timed trials'
    /// (default 2) in auto and time modes; the count's in instructions mode (default 0.5,
    /// 1.5 where the hash seed cannot be pinned, as auto's screen always uses).
    #[arg(long, value_name = "PCT")]
    pub threshold: Option<f64>,
    /// The comparison's time after the builds (e.g. 90s, 5m): auto plans its timed cases
    /// to fit it; no look starts that would end after it (a first look always runs).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DUR")]
    pub max_time: Duration,
    /// Seconds per measured slice of a perf trial; a trial alternates
    /// 6 slices per side on a fresh server pair (`suites::perf::SLICES`).
    #[arg(long, default_value_t = 0.3, value_name = "SECS")]
    pub slice_seconds: f64,
    /// Results directory (default: results/<run-id>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the PR-comment summary here.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Print the full comparison, every trial included, as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the comparison's progress events here, one JSON object per line
    /// (compare_started, trial_started, trial_finished, case_verdict, verdicts, finished).
    #[arg(long, value_name = "FILE")]
    pub progress_json: Option<PathBuf>,
    #[arg(long, default_value_t = instances::Options::default().base_port)]
    pub base_port: u16,
    /// After the verdicts, profile cases on both sides with perf and put differential
    /// flame graphs (and the functions whose share moved) in the report: the
    /// `regressions` (the default) or `all` cases. Perf suite only.
    #[arg(
        long,
        value_enum,
        num_args = 0..=1,
        default_missing_value = "regressions",
        value_name = "WHICH"
    )]
    pub flamegraph: Option<FlameCases>,
    /// Run as a queued task: SPECs are pinned versions or revisions, never paths.
    #[arg(skip)]
    pub task: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlameCases {
    Regressions,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Auto,
    Time,
    Instructions,
}

impl CompareCmd {
    /// The flags resolved and checked into the comparison, starting and building nothing:
    /// what `run` runs and what `queue add` validates a task with.
    pub fn request(&self) -> anyhow::Result<Request> {
        let manifest = Manifest::embedded();
        let side = |flag: &str, spec: &str| -> anyhow::Result<SideSpec> {
            Ok(SideSpec {
                spec: spec.to_string(),
                build: {
                    let mut build = BuildRequest::resolve_spec(
                        self.task,
                        flag,
                        spec,
                        self.valkey_src.as_deref(),
                        &manifest,
                    )?;
                    build.options.tls = self.tls;
                    build
                },
            })
        };
        let sides = side("--baseline", &self.baseline)
            .and_then(|b| Ok((b, side("--candidate", &self.candidate)?)));
        let (baseline, candidate) = sides.map_err(CouldNotRun)?;
        let topology = self
            .topology
            .spec()
            .map_err(|e| CouldNotRun(e.into()))?
            .unwrap_or_default();
        let read_from = self
            .topology
            .read_from(topology)
            .map_err(|e| CouldNotRun(e.into()))?;
        let flags = self.placement.parse().map_err(|e| CouldNotRun(e.into()))?;
        let (placement, warnings) = crate::plan::placement(&Default::default(), &flags)
            .map_err(|e| CouldNotRun(e.into()))?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        let hosts = self.hosts.choice().map_err(|e| CouldNotRun(e.into()))?;
        if !hosts.is_local() || self.hosts.client_hosts.is_some() {
            let refused = if self.placement.server_cpus.is_some()
                || self.placement.client_cpus.is_some()
            {
                Some(
                    "--server-cpus/--client-cpus are this machine's CPUs; pin on each host with `server_cpus`/`client_cpus` in the hosts file",
                )
            } else if self.suite != SuiteArg::Perf && self.hosts.client_hosts.is_some() {
                Some("--client-hosts drives the perf suite only")
            } else {
                None
            };
            if let Some(why) = refused {
                return Err(CouldNotRun(
                    crate::error::UsageError(format!("compare on other hosts: {why}")).into(),
                )
                .into());
            }
        }
        let request = Request {
            sinks: RefCell::new(Sinks::new(vec![Box::new(Terminal::new())])),
            baseline,
            candidate,
            suite: self.suite.into(),
            selection: crate::plan::cases::Selection {
                cases: self.cases.clone(),
                quick: self.quick,
                topology,
                tls: self.topology.tls(self.tls),
                placement,
                matrix: self.matrix.matrix(),
            },
            read_from,
            mode: match self.mode {
                Mode::Auto => compare::Mode::Auto,
                Mode::Time => compare::Mode::Time,
                Mode::Instructions => compare::Mode::Instructions,
            },
            threshold: self.threshold,
            max_time: self.max_time,
            slice_seconds: self.slice_seconds,
            out: self.out.clone(),
            markdown: self.markdown.clone(),
            json: self.json,
            base_port: self.base_port,
            flamegraph: self.flamegraph.map(|f| match f {
                FlameCases::Regressions => compare::FlameCases::Regressions,
                FlameCases::All => compare::FlameCases::All,
            }),
            hosts,
        };
        // Every flag is checked before the progress file is created.
        request.check().map_err(CouldNotRun)?;
        Ok(request)
    }

    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        self.run_with(shutdown, Vec::new())
    }

    /// `run`, its events also given to `extra` (a queued task's status).
    pub fn run_with(self, shutdown: &Shutdown, extra: Vec<Box<dyn Sink>>) -> anyhow::Result<()> {
        let request = self.request()?;
        for sink in extra {
            request.sinks.borrow_mut().push(sink);
        }
        if let Some(path) = &self.progress_json {
            let stream = JsonLines::create(path).map_err(CouldNotRun)?;
            request.sinks.borrow_mut().push(Box::new(stream));
        }
        request.run(shutdown)
    }
}

/// `90`, `90s`, `5m`, `1h`, `1m30s`; at most [`super::MAX_SECONDS`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration; use e.g. 90s, 5m or 1h30m");
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => return Err(bad()),
        };
        total += number.parse::<f64>().map_err(|_| bad())? * unit;
        number.clear();
    }
    if !number.is_empty() {
        total += number.parse::<f64>().map_err(|_| bad())?;
    }
    if total <= 0.0 || !total.is_finite() {
        return Err(bad());
    }
    if total > super::MAX_SECONDS {
        return Err(format!(
            "{text:?} is longer than the longest run we accept (7 days, 168h)"
        ));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        for bad in ["", "0", "5x", "m", "-3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
