//! A comparison below the CLI: baseline against candidate, interleaved, with a verdict.
//!
//! Both sides are built first (or found in the cache). Then, in time mode, every case runs
//! trials of baseline and candidate on fresh servers, on the schedule of
//! `plan/interleave.rs` (AB/BA, the minimum first, then the undecided cases until each is
//! decided or `--max-time` is spent); what one trial of each suite measures is
//! `trials.rs`. The statistics and the verdict are bench-core's (`compare` module). In
//! instructions mode each side's server runs under callgrind instead (`instructions.rs`);
//! `--flamegraph` profiles cases afterwards (`flamegraphs.rs`).
//!
//! The CLI (`cli/compare.rs`) turns flags into a [`Request`]; exit codes come from the
//! errors `run` returns: 0 no regression (every case decided), 1 a regression, 2 the
//! comparison could not run, 3 inconclusive (no regression, some cases undecided).

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench_core::compare::{self, CompareReport, SideInfo, Verdict};
use bench_core::loadgen::engine::NativeEngine;
use bench_core::shutdown::Shutdown;

mod flamegraphs;
mod instructions;
mod screen;
pub mod sides;
mod trials;

use crate::case::{CaseContext, Deploy};
use crate::error::{CouldNotRun, Inconclusive, RegressionFound, UsageError};
use crate::events::{Event, Sinks};
use crate::host;
use crate::plan::Side;
use crate::plan::cases::Selection;
use crate::plan::interleave::Schedule;
use crate::rundir::RunDir;
use crate::suites::SuiteKind;
use crate::topology;
use crate::valkey::{Binaries, BuildRequest};
use bench_core::topology::{ReadFrom, TopologySpec};
use sides::{MEM_METRICS, PERF_CONFIRM, PERF_METRICS, SYNC_METRICS, Sides};

/// One side: the SPEC as the user gave it, and the build it resolved to.
#[derive(Debug)]
pub struct SideSpec {
    pub spec: String,
    pub build: BuildRequest,
}

/// A comparison, every knob fixed: the CLI's flags with the SPECs resolved into builds.
/// `run` checks the rest before it builds anything.
pub struct Request {
    /// Where its events go (the terminal, `--progress-json`).
    pub sinks: RefCell<Sinks>,
    /// What to compare against.
    pub baseline: SideSpec,
    /// What is being checked.
    pub candidate: SideSpec,
    pub suite: SuiteKind,
    /// Which cases of the built-in suite (`--quick`, `--cases`), and on which topology.
    pub selection: Selection,
    /// Where a cluster's reads go.
    pub read_from: ReadFrom,
    /// auto: the instruction screen, then timed trials where they decide something
    /// (`screen.rs`; time outside the perf suite or without valgrind). time: interleaved
    /// wall-clock trials of every case. instructions: callgrind counts alone (perf only).
    pub mode: Mode,
    /// Smallest change called a regression or improvement, percent: the timed trials'
    /// (default 2) in auto and time modes, the count's in instructions mode (default 0.5;
    /// 1.5 where the hash seed cannot be pinned, which auto's screen always uses).
    pub threshold: Option<f64>,
    /// The comparison's time after the builds: auto plans its timed cases to fit it; no
    /// look starts that would end after it (the first look always runs).
    pub max_time: Duration,
    /// Seconds per measured slice of a perf trial; a trial alternates
    /// `suites::perf::SLICES` slices per side on a fresh server pair.
    pub slice_seconds: f64,
    /// Results directory (default: results/<run-id>).
    pub out: Option<PathBuf>,
    /// Also write the PR-comment summary here.
    pub markdown: Option<PathBuf>,
    /// Print the full comparison, every trial included, as JSON on stdout.
    pub json: bool,
    pub base_port: u16,
    /// After the verdicts, profile cases on both sides with perf and put differential
    /// flame graphs (and the functions whose share moved) in the report: the
    /// `regressions` (the default) or `all` cases. Perf suite only.
    pub flamegraph: Option<FlameCases>,
    /// Where both sides' servers (and the load) run: the same hosts, interleaved.
    pub hosts: crate::host::choice::HostsChoice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlameCases {
    Regressions,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Time,
    Instructions,
}

impl Request {
    /// Runs the comparison: `Ok` when every case is decided and none regressed,
    /// `RegressionFound` (exit 1), `Inconclusive` (exit 3) when no case regressed but some
    /// are undecided, or `CouldNotRun` (exit 2).
    pub fn run(&self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let compared = self.compare(shutdown);
        if let Err(e) = &compared
            && !self.sinks.borrow().finished()
        {
            self.emit(Event::Finished {
                run_id: None,
                records: 0,
                dir: None,
                complete: false,
                error: Some(format!("{e:#}")),
            });
        }
        let report = compared.map_err(|e| {
            if shutdown.is_triggered() {
                e
            } else {
                CouldNotRun(e).into()
            }
        })?;
        let regressions = report.count(Verdict::Regression);
        if regressions > 0 {
            return Err(RegressionFound(regressions).into());
        }
        let open = report.count(Verdict::Inconclusive);
        if open > 0 {
            return Err(Inconclusive(open).into());
        }
        Ok(())
    }

    pub(crate) fn emit(&self, event: Event) {
        self.sinks.borrow_mut().emit(event);
    }

    /// The checks that need nothing built or started: `--out`, `--threshold`,
    /// `--slice-seconds`, and which modes and flags go with which suite. Run by the CLI
    /// before it creates anything (the progress file), and again by `run`.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(out) = &self.out {
            for side in ["baseline", "candidate"] {
                crate::rundir::check_unused(&out.join(side)).map_err(UsageError)?;
            }
        }
        if let Some(t) = self.threshold
            && !(t > 0.0 && t < 100.0)
        {
            return Err(UsageError(format!(
                "--threshold {t}: must be a percentage between 0 and 100, e.g. 2"
            ))
            .into());
        }
        if !(self.slice_seconds >= 0.02 && self.slice_seconds <= 60.0) {
            return Err(UsageError(format!(
                "--slice-seconds {}: use 0.02 to 60",
                self.slice_seconds
            ))
            .into());
        }
        if self.mode == Mode::Instructions && self.suite != SuiteKind::Perf {
            return Err(UsageError(
                "--mode instructions counts the perf suite's commands; drop --suite or use --suite perf"
                    .into(),
            )
            .into());
        }
        if let Some(flag) = self.selection.matrix.given().first()
            && self.suite != SuiteKind::Perf
        {
            return Err(UsageError(format!(
                "{flag} replaces a list of the perf suite's matrix; the {} suite has its own \
                 cases: drop {flag} or use --suite perf",
                self.suite.name()
            ))
            .into());
        }
        let topology = self.selection.topology;
        if topology != TopologySpec::Standalone && self.suite != SuiteKind::Perf {
            return Err(UsageError(format!(
                "--topology {topology}: the {} suite runs on its own servers; drop --topology \
                 or use --suite perf",
                self.suite.name()
            ))
            .into());
        }
        if topology != TopologySpec::Standalone && self.mode == Mode::Instructions {
            return Err(UsageError(format!(
                "--mode instructions counts one standalone server under callgrind, not a \
                 {topology} topology; use --mode time, or drop --topology"
            ))
            .into());
        }
        if self.selection.tls.is_some() && self.suite != SuiteKind::Perf {
            return Err(UsageError(format!(
                "--tls compares perf cases over TLS; the {} suite does not take it: drop \
                 --tls or use --suite perf",
                self.suite.name()
            ))
            .into());
        }
        if self.selection.tls.is_some() && self.mode == Mode::Instructions {
            return Err(UsageError(
                "--mode instructions counts a plain-TCP server under callgrind; use --mode \
                 time with --tls, or drop --tls"
                    .into(),
            )
            .into());
        }
        if self.selection.placement.is_pinned() && self.suite != SuiteKind::Perf {
            return Err(UsageError(format!(
                "--server-cpus / --client-cpus pin perf cases; the {} suite does not take them \
                 yet: drop them or use --suite perf",
                self.suite.name()
            ))
            .into());
        }
        if self.flamegraph.is_some() && self.suite != SuiteKind::Perf {
            return Err(UsageError(
                "--flamegraph profiles perf cases; drop it or use --suite perf".into(),
            )
            .into());
        }
        Ok(())
    }

    /// The mode that runs: auto screens perf cases where valgrind runs, else it is time.
    fn resolved_mode(&self) -> Mode {
        match self.mode {
            Mode::Auto if self.suite != SuiteKind::Perf => Mode::Time,
            Mode::Auto if self.selection.topology != TopologySpec::Standalone => {
                self.emit(Event::Warning {
                    message: format!(
                        "the instruction screen counts one standalone server, so on the {} \
                         topology every case is timed instead",
                        self.selection.topology
                    ),
                });
                Mode::Time
            }
            Mode::Auto if self.selection.tls.is_some() => {
                self.emit(Event::Warning {
                    message: "the instruction screen counts a plain-TCP server, so with --tls \
                              every case is timed instead"
                        .into(),
                });
                Mode::Time
            }
            Mode::Auto if !crate::process::runs("valgrind") => {
                self.emit(Event::Warning {
                    message: "valgrind is not installed, so the default mode cannot screen by instruction counts; \
                              timing every case instead (slower, and noisier on a shared machine): \
                              install it with apt-get install valgrind"
                        .into(),
                });
                Mode::Time
            }
            mode => mode,
        }
    }

    fn compare(&self, shutdown: &Shutdown) -> anyhow::Result<CompareReport> {
        self.check()?;
        let mode = self.resolved_mode();
        if mode == Mode::Instructions {
            crate::counts::instructions::check_valgrind("--mode instructions", "--mode time")?;
        }
        let seed = match mode {
            Mode::Instructions | Mode::Auto => {
                match crate::counts::instructions::SeedFile::pinned()? {
                    Ok(seed) => Some(seed),
                    Err(why) => {
                        self.emit(Event::Warning { message: why });
                        None
                    }
                }
            }
            Mode::Time => None,
        };
        // System calls are counted beside instructions where perf can trace them.
        let mut findings = Vec::new();
        let syscalls = match mode {
            Mode::Instructions | Mode::Auto => match crate::counts::syscalls::available(shutdown) {
                Ok(()) => true,
                Err(why) => {
                    self.emit(Event::Warning {
                        message: why.clone(),
                    });
                    // The report says what its "no change" rests on.
                    findings.push(format!(
                        "{why}; the screen's unchanged cases rest on instruction counts alone"
                    ));
                    false
                }
            },
            Mode::Time => false,
        };
        // The defaults are in range; a given --threshold was checked above.
        let instructions_threshold_pct = match &seed {
            Some(_) => crate::counts::instructions::THRESHOLD_PINNED_PCT,
            None => crate::counts::instructions::THRESHOLD_UNPINNED_PCT,
        };
        let threshold_pct = self.threshold.unwrap_or(match mode {
            Mode::Time | Mode::Auto => 2.0,
            Mode::Instructions => instructions_threshold_pct,
        });
        let started = Instant::now();
        // The cases `--cases` selects, before anything is built: a filter that matches
        // nothing is bad input, not minutes of building first.
        let names: Vec<String> = match self.suite {
            SuiteKind::Perf => self.perf_cases()?.into_iter().map(|c| c.name).collect(),
            SuiteKind::Mem => self.selection.mem()?.into_iter().map(|c| c.name).collect(),
            SuiteKind::Sync => self.selection.sync()?.into_iter().map(|c| c.name).collect(),
        };
        // The hosts first: a refused host key stops the comparison before a build.
        // Counting alone runs nothing on other hosts: they are not reached.
        let hosts = if mode == Mode::Instructions {
            if !self.hosts.is_local() || self.hosts.client_hosts.is_some() {
                findings.push(
                    "--mode instructions counts on this machine only: the hosts given were not used"
                        .into(),
                );
            }
            crate::host::choice::HostsChoice::default().connect(shutdown)?
        } else {
            self.hosts.connect(shutdown)?
        };
        // Before building anything: fail now, saying how to fix it, if perf cannot run
        // where the profiled server will.
        let perf_event = match self.flamegraph {
            Some(_) => Some(crate::flamegraph::perf_event(&hosts.servers, shutdown)?),
            None => None,
        };
        let baseline = self
            .baseline
            .build
            .binaries(shutdown)
            .with_context(|| format!("building the baseline {}", self.baseline.spec))?;
        let candidate = self
            .candidate
            .build
            .binaries(shutdown)
            .with_context(|| format!("building the candidate {}", self.candidate.spec))?;
        let suite_name = self.suite.name();
        let run_id = format!("{}-compare", crate::rundir::run_id(suite_name));
        let out = crate::rundir::new_run(&run_id, self.out.as_deref())?;
        let sides = Sides {
            baseline_dir: RunDir::create(&out.join("baseline"))?,
            candidate_dir: RunDir::create(&out.join("candidate"))?,
            baseline,
            candidate,
        };
        let side_info = |spec: &str, b: &Binaries| SideInfo {
            spec: spec.to_string(),
            version: b.version.clone(),
            source_id: b.source_id.clone(),
        };
        let threshold = threshold_pct / 100.0;
        let mode_name = match mode {
            Mode::Auto => "auto",
            Mode::Time => "time",
            Mode::Instructions => "instructions",
        };
        self.emit(Event::CompareStarted {
            run_id: run_id.clone(),
            suite: suite_name.into(),
            mode: mode_name.into(),
            threshold_pct,
            baseline: self.baseline.spec.clone(),
            baseline_version: sides.baseline.version.clone(),
            baseline_source_id: sides.baseline.source_id.clone(),
            candidate: self.candidate.spec.clone(),
            candidate_version: sides.candidate.version.clone(),
            candidate_source_id: sides.candidate.source_id.clone(),
            dir: out.clone(),
        });
        let host = host::info();
        let engine: &dyn bench_core::engine::Engine = match &hosts.clients {
            Some(clients) => clients,
            None => &NativeEngine,
        };
        let topology = topology::from_spec(self.selection.topology, self.read_from);
        let servers = Deploy {
            topology: topology.as_ref(),
            hosts: &hosts.servers,
        };
        let ctxs = [Side::Baseline, Side::Candidate].map(|side| CaseContext {
            run_id: &run_id,
            binaries: sides.binaries(side),
            host: &host,
            hosts: &hosts.servers,
            engine,
            base_port: self.base_port,
            shutdown,
            servers: &servers,
            tls: self.selection.tls,
        });
        // Counting runs servers under valgrind and perf here: the same binaries, and an
        // instruction count does not depend on the host or the network.
        let here = Deploy {
            topology: topology.as_ref(),
            hosts: host::local_hosts(),
        };
        let count_ctxs = [Side::Baseline, Side::Candidate].map(|side| CaseContext {
            hosts: host::local_hosts(),
            engine: &NativeEngine,
            servers: &here,
            ..ctxs[side.index()]
        });
        if !hosts.servers.all_local() && mode == Mode::Auto {
            findings.push(format!(
                "the exact counts were made on this machine ({}); any timed trial ran with {}",
                host.hostname,
                hosts.describe()
            ));
        }
        let schedule = |metrics, confirm| Schedule {
            names: &names,
            metrics,
            confirm,
            threshold,
            max_time: self.max_time,
            budget: format!(
                "--max-time {}",
                crate::plan::interleave::humanize(self.max_time)
            ),
        };
        let clock = || started.elapsed();
        let emit = |e| self.emit(e);
        let (cases, stopped) = match (mode, self.suite) {
            (Mode::Instructions, _) => {
                let cases = self.perf_cases()?;
                let results = instructions::compare_cases(
                    &cases,
                    &sides,
                    &count_ctxs,
                    threshold,
                    instructions::Counting {
                        seed: seed.as_ref(),
                        runs: crate::counts::instructions::RUNS,
                        syscalls,
                    },
                    &emit,
                )?;
                (results, "exact counts".to_string())
            }
            (Mode::Auto, _) => {
                let budget = screen::Budget {
                    max_time: self.max_time,
                    threshold,
                    instructions_threshold: instructions_threshold_pct / 100.0,
                    slice_seconds: self.slice_seconds,
                };
                let (cases, stopped, found) = screen::compare_cases(
                    self.perf_cases()?,
                    &sides,
                    &count_ctxs,
                    &ctxs,
                    seed.as_ref(),
                    syscalls,
                    &budget,
                    &clock,
                    &emit,
                    shutdown,
                )?;
                findings.extend(found);
                (cases, stopped)
            }
            (Mode::Time, SuiteKind::Perf) => {
                let mut trial = trials::Perf::new(self.perf_cases()?, &ctxs, &sides);
                schedule(&PERF_METRICS, Some(PERF_CONFIRM)).run(
                    &clock,
                    &emit,
                    shutdown,
                    &mut |i, n, order| trial.run(i, n, order),
                )?
            }
            (Mode::Time, SuiteKind::Mem) => {
                let cases = self.selection.mem()?;
                schedule(&MEM_METRICS, None).run(&clock, &emit, shutdown, &mut |i, _, order| {
                    trials::mem(&cases[i], order, &ctxs, &sides)
                })?
            }
            (Mode::Time, SuiteKind::Sync) => {
                let cases = self.selection.sync()?;
                schedule(&SYNC_METRICS, None).run(&clock, &emit, shutdown, &mut |i, _, order| {
                    trials::sync(&cases[i], order, &ctxs, &sides)
                })?
            }
        };
        let report = CompareReport {
            run_id: run_id.clone(),
            suite: suite_name.into(),
            mode: mode_name.into(),
            threshold_pct,
            instructions_threshold_pct: (mode == Mode::Auto).then_some(instructions_threshold_pct),
            baseline: side_info(&self.baseline.spec, &sides.baseline),
            candidate: side_info(&self.candidate.spec, &sides.candidate),
            elapsed_secs: started.elapsed().as_secs_f64(),
            stopped,
            findings: findings
                .into_iter()
                .chain(compare::exact_shift(&cases))
                .chain(compare::screen::kernel_side_in_time(&cases))
                .collect(),
            cases,
        };
        self.emit(Event::Verdicts {
            regressions: report.count(Verdict::Regression),
            improvements: report.count(Verdict::Improvement),
            no_change: report.count(Verdict::NoChange),
            inconclusive: report.count(Verdict::Inconclusive),
            stopped: report.stopped.clone(),
        });
        let markdown = compare::markdown(&report);
        crate::rundir::write_atomically(&out.join("compare.md"), markdown.as_bytes())?;
        crate::rundir::write_atomically(
            &out.join("compare.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        if let Some(path) = &self.markdown {
            crate::rundir::write_atomically(path, markdown.as_bytes())
                .with_context(|| format!("writing --markdown {}", path.display()))?;
        }
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", compare::verdict_table(&report));
            for finding in &report.findings {
                println!("finding: {finding}");
            }
            println!(
                "\n{}\n{} regression, {} improvement, {} no change, {} inconclusive ({:.0} s; {})",
                compare::headline(&report),
                report.count(Verdict::Regression),
                report.count(Verdict::Improvement),
                report.count(Verdict::NoChange),
                report.count(Verdict::Inconclusive),
                report.elapsed_secs,
                report.stopped
            );
            eprintln!(
                "every metric and trial: {} and compare.json",
                out.join("compare.md").display()
            );
        }
        // The verdict, its table and its JSON are out before anything optional runs: a
        // failure while profiling is a warning and never changes the exit code.
        if let (Some(which), Some(event)) = (self.flamegraph, perf_event)
            && let Err(e) = flamegraphs::write(self, which, event, &report, &sides, &ctxs, &out)
        {
            if shutdown.is_triggered() {
                return Err(e);
            }
            self.emit(Event::Warning {
                message: format!("--flamegraph failed, the verdict stands: {e:#}"),
            });
        }
        crate::publish::write_after_run(&out);
        self.emit(Event::Finished {
            run_id: Some(run_id.clone()),
            records: report.cases.iter().map(|c| c.trials.len()).sum(),
            dir: Some(out.clone()),
            complete: true,
            error: None,
        });
        Ok(report)
    }

    /// The perf cases, each slice `--slice-seconds` long.
    fn perf_cases(&self) -> anyhow::Result<Vec<bench_core::perf::PerfCase>> {
        self.selection.perf(self.slice_seconds)
    }
}
