//! A comparison below the CLI: baseline against candidate, interleaved, with a verdict.
//!
//! Both sides are built first (or found in the cache). Then, in time mode, every case runs
//! pairs of trials, baseline and candidate back to back on fresh servers, the order
//! rotating AB, BA, AB, ...; first [`MIN_PAIRS`] pairs per case, cases interleaved, then
//! more pairs for the cases still undecided until each is decided or `--max-time` is
//! spent. The statistics and the verdict are bench-core's (`compare` module). In
//! instructions mode each side's server runs under callgrind instead (`instructions.rs`).
//!
//! The CLI (`cli/compare.rs`) turns flags into a [`Request`]; exit codes come from the
//! errors `run` returns: 0 no regression, 1 a regression, 2 the comparison could not run.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bench_core::compare::{
    self, CaseResult, CompareReport, MIN_PAIRS, Metric, SideInfo, Trial, TrialPair, Verdict,
};
use bench_core::loadgen::engine::NativeEngine;
use bench_core::shutdown::Shutdown;
use bench_core::suite::{PerfCase, PerfSpec};
use bench_core::{mem, sync};

pub mod sides;

use crate::error::{CouldNotRun, RegressionFound, UsageError};
use crate::events::{Event, Sinks};
use crate::results::RunDir;
use crate::suite::{CaseContext, SuiteKind};
use crate::valkey::{Binaries, BuildRequest};
use crate::{host, instances, perf, project};
use sides::{MEM_METRICS, PERF_CONFIRM, PERF_METRICS, SYNC_METRICS, Side, Sides};

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
    /// Only cases whose name contains one of these comma-separated strings.
    pub cases: Option<String>,
    /// The short built-in matrix of the suite.
    pub quick: bool,
    /// time: interleaved wall-clock trials. instructions: callgrind instruction counts of
    /// a deterministic request stream (perf suite only).
    pub mode: Mode,
    /// Smallest change called a regression or improvement, percent (default 2 in time
    /// mode; 0.5 in instructions mode, 1.5 where the hash seed cannot be pinned).
    pub threshold: Option<f64>,
    /// Stop adding trials after this long (e.g. 90s, 5m); the first pairs always run.
    pub max_time: Duration,
    /// Seconds per measured slice of a perf trial; a trial alternates
    /// [`SLICES`] slices per side on a fresh server pair.
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlameCases {
    Regressions,
    All,
}

/// How long each side of a case is profiled for `--flamegraph`, after a warmup of
/// [`FLAME_WARMUP`].
const FLAME_SECONDS: Duration = Duration::from_secs(3);
const FLAME_WARMUP: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Time,
    Instructions,
}

impl Request {
    /// Runs the comparison: `Ok` without regressions, `RegressionFound` (exit 1), or
    /// `CouldNotRun` (exit 2) when it could not decide anything.
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
        Ok(())
    }

    fn emit(&self, event: Event) {
        self.sinks.borrow_mut().emit(event);
    }

    /// The checks that need nothing built or started: `--out`, `--threshold`,
    /// `--slice-seconds`, and which modes and flags go with which suite. Run by the CLI
    /// before it creates anything (the progress file), and again by `run`.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(out) = &self.out {
            for side in ["baseline", "candidate"] {
                crate::results::check_unused(&out.join(side)).map_err(UsageError)?;
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
        if self.flamegraph.is_some() && self.suite != SuiteKind::Perf {
            return Err(UsageError(
                "--flamegraph profiles perf cases; drop it or use --suite perf".into(),
            )
            .into());
        }
        Ok(())
    }

    fn compare(&self, shutdown: &Shutdown) -> anyhow::Result<CompareReport> {
        self.check()?;
        let seed = match self.mode {
            Mode::Instructions => crate::instructions::SeedFile::pinned()?,
            Mode::Time => None,
        };
        // The defaults are in range; a given --threshold was checked above.
        let threshold_pct = self.threshold.unwrap_or(match (self.mode, &seed) {
            (Mode::Time, _) => 2.0,
            (Mode::Instructions, Some(_)) => crate::instructions::THRESHOLD_PINNED_PCT,
            (Mode::Instructions, None) => crate::instructions::THRESHOLD_UNPINNED_PCT,
        });
        // Before building anything: fail now, saying how to fix it, if perf cannot run.
        let perf_event = match self.flamegraph {
            Some(_) => Some(crate::flamegraph::perf_event(shutdown)?),
            None => None,
        };
        let started = Instant::now();
        // The cases `--cases` selects, before anything is built: a filter that matches
        // nothing is bad input, not minutes of building first.
        match self.suite {
            SuiteKind::Perf => self.perf_cases().map(drop)?,
            SuiteKind::Mem => self
                .built_in(
                    [mem::DEFAULT_MEM, mem::QUICK_MEM],
                    |t| mem::MemSpecFile::parse(t).map_err(|e| e.to_string()),
                    |c| &c.name,
                )
                .map(drop)?,
            SuiteKind::Sync => self
                .built_in(
                    [sync::DEFAULT_SYNC, sync::QUICK_SYNC],
                    sync::SyncSpecFile::parse,
                    |c| &c.name,
                )
                .map(drop)?,
        }
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
        let suite_name = match self.suite {
            SuiteKind::Perf => "perf",
            SuiteKind::Mem => "mem",
            SuiteKind::Sync => "sync",
        };
        let run_id = format!("{}-compare", crate::results::run_id(suite_name));
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| project::root().join("results").join(&run_id));
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
        self.emit(Event::CompareStarted {
            run_id: run_id.clone(),
            suite: suite_name.into(),
            mode: match self.mode {
                Mode::Time => "time",
                Mode::Instructions => "instructions",
            }
            .into(),
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
        let ctx = |side: Side| CaseContext {
            run_id: &run_id,
            binaries: sides.binaries(side),
            host: &host,
            base_port: self.base_port,
            shutdown,
        };
        let (cases, stopped) = match (self.mode, self.suite) {
            (Mode::Instructions, _) => {
                let cases = self.perf_cases()?;
                let results = crate::instructions::compare_cases(
                    &cases,
                    &sides,
                    &ctx(Side::Baseline),
                    threshold,
                    seed.as_ref(),
                )?;
                (results, "exact counts".to_string())
            }
            (Mode::Time, SuiteKind::Perf) => {
                let cases = self.perf_cases()?;
                let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
                let engine = NativeEngine;
                let mut counts = vec![None; cases.len()];
                let mut trial = |i: usize, pair: usize, order: [Side; 2]| {
                    let case = &cases[i];
                    // Both sides run the same request counts, fixed by the baseline's rate.
                    let counts = match counts[i] {
                        Some(c) => c,
                        None => {
                            let c = perf::calibrate(case, &perf_ctx(&ctx(Side::Baseline), &engine))
                                .with_context(|| format!("calibrating {}", case.name))?;
                            counts[i] = Some(c);
                            c
                        }
                    };
                    perf_pair(case, counts, pair, order, &sides, &ctx, &engine)
                };
                self.interleave(
                    &names,
                    &PERF_METRICS,
                    Some(PERF_CONFIRM),
                    threshold,
                    shutdown,
                    &mut trial,
                )?
            }
            (Mode::Time, SuiteKind::Mem) => {
                let cases = self.built_in(
                    [mem::DEFAULT_MEM, mem::QUICK_MEM],
                    |t| mem::MemSpecFile::parse(t).map_err(|e| e.to_string()),
                    |c| &c.name,
                )?;
                let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
                let mut one = |i: usize, side: Side| -> anyhow::Result<Trial> {
                    let record = crate::mem::run_case(&cases[i], &ctx(side))?;
                    sides.dir(side).append(&record)?;
                    Ok(Trial::from([(
                        "bytes_per_item".to_string(),
                        record.metrics.bytes_per_item,
                    )]))
                };
                let mut trial =
                    |i: usize, _pair: usize, order: [Side; 2]| sequential(i, order, &mut one);
                self.interleave(&names, &MEM_METRICS, None, threshold, shutdown, &mut trial)?
            }
            (Mode::Time, SuiteKind::Sync) => {
                let cases = self.built_in(
                    [sync::DEFAULT_SYNC, sync::QUICK_SYNC],
                    sync::SyncSpecFile::parse,
                    |c| &c.name,
                )?;
                let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
                let mut one = |i: usize, side: Side| -> anyhow::Result<Trial> {
                    let records = crate::sync::run_case(&cases[i], &ctx(side))?;
                    let mut sync_secs = Vec::new();
                    let mut fork = Vec::new();
                    for r in &records {
                        sides.dir(side).append(r)?;
                        sync_secs.push(r.metrics.sync_secs);
                        fork.push(r.metrics.fork_usec as f64);
                    }
                    // With several replicas, the slowest one is when the sync was done.
                    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
                    Ok(Trial::from([
                        ("sync_secs".to_string(), max(&sync_secs)),
                        ("fork_usec".to_string(), max(&fork)),
                    ]))
                };
                let mut trial =
                    |i: usize, _pair: usize, order: [Side; 2]| sequential(i, order, &mut one);
                self.interleave(&names, &SYNC_METRICS, None, threshold, shutdown, &mut trial)?
            }
        };
        let report = CompareReport {
            run_id: run_id.clone(),
            suite: suite_name.into(),
            mode: match self.mode {
                Mode::Time => "time".into(),
                Mode::Instructions => "instructions".into(),
            },
            threshold_pct,
            baseline: side_info(&self.baseline.spec, &sides.baseline),
            candidate: side_info(&self.candidate.spec, &sides.candidate),
            elapsed_secs: started.elapsed().as_secs_f64(),
            stopped,
            cases,
        };
        self.emit(Event::Verdicts {
            regressions: report.count(Verdict::Regression),
            improvements: report.count(Verdict::Improvement),
            no_change: report.count(Verdict::NoChange),
            unstable: report.count(Verdict::Unstable),
            stopped: report.stopped.clone(),
        });
        let markdown = compare::markdown(&report);
        crate::results::write_atomically(&out.join("compare.md"), markdown.as_bytes())?;
        crate::results::write_atomically(
            &out.join("compare.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        if let Some(path) = &self.markdown {
            crate::results::write_atomically(path, markdown.as_bytes())
                .with_context(|| format!("writing --markdown {}", path.display()))?;
        }
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", compare::verdict_table(&report));
            println!(
                "\n{} regression, {} improvement, {} no change, {} unstable ({:.0} s; {})",
                report.count(Verdict::Regression),
                report.count(Verdict::Improvement),
                report.count(Verdict::NoChange),
                report.count(Verdict::Unstable),
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
            && let Err(e) = self.flamegraphs(which, event, &report, &sides, &out, shutdown)
        {
            if shutdown.is_triggered() {
                return Err(e);
            }
            eprintln!("warning: --flamegraph failed, the verdict stands: {e:#}");
        }
        crate::report::write_after_run(&out);
        self.emit(Event::Finished {
            run_id: Some(run_id.clone()),
            records: report.cases.iter().map(|c| c.trials.len()).sum(),
            dir: Some(out.clone()),
            complete: true,
            error: None,
        });
        Ok(report)
    }

    fn selected(&self, name: &str) -> bool {
        match &self.cases {
            None => true,
            Some(filter) => filter
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .any(|f| name.contains(f)),
        }
    }

    fn nonempty(&self, names: Vec<String>) -> anyhow::Result<Vec<String>> {
        if names.is_empty() {
            return Err(UsageError(format!(
                "--cases {:?} matches no case of the {} suite; case names look like GET/32B/P16/c50/io1",
                self.cases.as_deref().unwrap_or(""),
                if self.quick { "quick" } else { "default" }
            ))
            .into());
        }
        Ok(names)
    }

    /// The built-in suite's cases (default or `--quick`) that `--cases` selects.
    fn built_in<T, E: std::fmt::Display>(
        &self,
        [default, quick]: [&str; 2],
        parse: impl Fn(&str) -> Result<Vec<T>, E>,
        name: impl Fn(&T) -> &String,
    ) -> anyhow::Result<Vec<T>> {
        let text = if self.quick { quick } else { default };
        let cases: Vec<T> = parse(text)
            .map_err(|e| anyhow::anyhow!("built-in suite: {e}"))?
            .into_iter()
            .filter(|c| self.selected(name(c)))
            .collect();
        self.nonempty(cases.iter().map(|c| name(c).clone()).collect())?;
        Ok(cases)
    }

    /// Profiles the chosen cases on both sides and writes `out/flamegraphs/`: per case the
    /// two flame graphs, the differential one and the movers table, and `index.json`. A
    /// case that fails to profile is reported and skipped: the verdicts stand without it.
    fn flamegraphs(
        &self,
        which: FlameCases,
        event: &'static str,
        report: &CompareReport,
        sides: &Sides,
        out: &Path,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        use crate::flamegraph::{self, Profiler, Setup};
        let chosen: Vec<PerfCase> = self
            .perf_cases()?
            .into_iter()
            .filter(|c| {
                which == FlameCases::All
                    || report
                        .cases
                        .iter()
                        .any(|r| r.case == c.name && r.verdict == Verdict::Regression)
            })
            .collect();
        if chosen.is_empty() {
            eprintln!("--flamegraph: no regression to profile");
            return Ok(());
        }
        let dir = out.join("flamegraphs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut index = Vec::new();
        for case in &chosen {
            let spec = bench_core::loadgen::engine::workload(&perf::load(case, 0));
            // Pops need a list that outlasts the window: ~5M elements is > 4 s at 1M pops/s.
            let preload =
                |server: &mut instances::Instance| perf::prepare(case, server, 5_000_000).map(drop);
            let setup = Setup {
                spec: &spec,
                clients: case.clients,
                pipeline: case.pipeline,
                config: case.server_config.clone(),
                preload: &preload,
                warmup: FLAME_WARMUP,
                duration: FLAME_SECONDS,
                frequency: 999,
                base_port: self.base_port,
                shutdown,
            };
            let stem = bench_core::report_page::slug(&case.name);
            eprintln!("--flamegraph: profiling {} on both sides", case.name);
            let profiled = (|| -> anyhow::Result<()> {
                let before = flamegraph::record(&sides.baseline, &setup, Profiler::Perf, event)?;
                let after = flamegraph::record(&sides.candidate, &setup, Profiler::Perf, event)?;
                flamegraph::write_diff(
                    &dir.join(format!("{stem}.svg")),
                    (&sides.baseline, &before),
                    (&sides.candidate, &after),
                    &self.baseline.spec,
                    &case.name,
                )?;
                Ok(())
            })();
            match profiled {
                Ok(()) => index.push(bench_core::report_page::FlameGraphs {
                    case: case.name.clone(),
                    stem,
                }),
                Err(_) if shutdown.is_triggered() => anyhow::bail!("interrupted"),
                Err(e) => eprintln!("warning: --flamegraph {}: {e:#}", case.name),
            }
        }
        crate::results::write_atomically(
            &dir.join("index.json"),
            serde_json::to_string_pretty(&index)?.as_bytes(),
        )
    }

    fn perf_cases(&self) -> anyhow::Result<Vec<PerfCase>> {
        let text = if self.quick {
            bench_core::suite::QUICK_PERF
        } else {
            bench_core::suite::DEFAULT_PERF
        };
        let spec = PerfSpec::from_toml(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cases: Vec<PerfCase> = spec
            .expand()
            .into_iter()
            .filter(|c| self.selected(&c.name))
            .map(|mut c| {
                c.measure_seconds = self.slice_seconds;
                c.warmup_seconds = self.slice_seconds;
                c
            })
            .collect();
        self.nonempty(cases.iter().map(|c| c.name.clone()).collect())?;
        Ok(cases)
    }

    /// Runs trials until every case is decided or the time is up; returns the analyzed
    /// cases and why it stopped. A trial yields one or more pairs (perf: one per slice).
    fn interleave(
        &self,
        names: &[String],
        metrics: &[Metric],
        confirm: Option<&str>,
        threshold: f64,
        shutdown: &Shutdown,
        trial: &mut dyn FnMut(usize, usize, [Side; 2]) -> anyhow::Result<Vec<SlicePair>>,
    ) -> anyhow::Result<(Vec<CaseResult>, String)> {
        let started = Instant::now();
        let mut pairs: Vec<Vec<TrialPair>> = vec![Vec::new(); names.len()];
        let mut trials = vec![0usize; names.len()];
        let mut results: Vec<Option<CaseResult>> = vec![None; names.len()];
        let mut run_trial = |i: usize, pairs: &mut Vec<TrialPair>, trials: &mut usize| {
            anyhow::ensure!(!shutdown.is_triggered(), "interrupted");
            *trials += 1;
            // Rotate the order: AB, BA, AB, ...
            let order = if *trials % 2 == 1 {
                [Side::Baseline, Side::Candidate]
            } else {
                [Side::Candidate, Side::Baseline]
            };
            for (first, baseline, candidate) in trial(i, *trials, order)? {
                pairs.push(TrialPair {
                    trial: *trials,
                    pair: pairs.len() + 1,
                    order: match first {
                        Side::Baseline => "AB",
                        Side::Candidate => "BA",
                    }
                    .into(),
                    baseline,
                    candidate,
                });
            }
            Ok(())
        };
        let analyze = |i: usize, pairs: &[TrialPair]| {
            let result = compare::analyze(&names[i], metrics, confirm, pairs, threshold);
            self.emit(Event::CaseVerdict {
                case: result.case.clone(),
                verdict: result.verdict.label().into(),
                change_pct: result
                    .metrics
                    .first()
                    .map_or(0.0, |m| (m.comparison.ratio - 1.0) * 100.0),
            });
            result
        };
        let mut one_trial = |i: usize, pairs: &mut Vec<TrialPair>, trials: &mut usize| {
            self.emit(Event::TrialStarted {
                case: names[i].clone(),
                trial: *trials + 1,
            });
            run_trial(i, pairs, trials)?;
            self.emit(Event::TrialFinished {
                case: names[i].clone(),
                trial: *trials,
                pairs: pairs.len(),
            });
            anyhow::Ok(())
        };
        // First every case's minimum, cases interleaved, so slow drift spreads over all.
        let enough = |t: usize| t >= MIN_PAIRS;
        while (0..names.len()).any(|i| !enough(trials[i])) {
            for i in 0..names.len() {
                if !enough(trials[i]) {
                    one_trial(i, &mut pairs[i], &mut trials[i])?;
                }
            }
        }
        for (i, p) in pairs.iter().enumerate() {
            results[i] = Some(analyze(i, p));
        }
        let total_trials: usize = trials.iter().sum();
        let per_trial = started.elapsed() / total_trials.max(1) as u32;
        let stopped = loop {
            let open: Vec<usize> = (0..names.len())
                .filter(|&i| !results[i].as_ref().is_some_and(|r| r.verdict.is_decided()))
                .collect();
            if open.is_empty() {
                break "every case decided".to_string();
            }
            if started.elapsed() + per_trial * open.len() as u32 > self.max_time {
                break format!(
                    "--max-time {} spent with {} case(s) undecided",
                    humanize(self.max_time),
                    open.len()
                );
            }
            for i in open {
                one_trial(i, &mut pairs[i], &mut trials[i])?;
                results[i] = Some(analyze(i, &pairs[i]));
            }
        };
        Ok((results.into_iter().flatten().collect(), stopped))
    }
}

/// One pair from a trial: which side ran first, the baseline's numbers, the candidate's.
pub type SlicePair = (Side, Trial, Trial);

/// Measured slices per side in one perf trial.
pub const SLICES: usize = 6;

/// Runs the two sides one after the other, in `order`.
fn sequential(
    i: usize,
    order: [Side; 2],
    one: &mut dyn FnMut(usize, Side) -> anyhow::Result<Trial>,
) -> anyhow::Result<Vec<SlicePair>> {
    let first = one(i, order[0])?;
    let second = one(i, order[1])?;
    Ok(vec![match order[0] {
        Side::Baseline => (Side::Baseline, first, second),
        Side::Candidate => (Side::Candidate, second, first),
    }])
}

/// One perf trial: a fresh server per side, both preloaded and warmed by one slice, then
/// [`SLICES`] measured slices per side alternating A B B A A B ... (starting with
/// `order[0]`). The host's speed on this kind of machine shifts between regimes lasting
/// seconds (we measured 1.1M ↔ 0.65M GET/s on one server within a 30 s run), so sides
/// measured in adjacent slices of a fraction of a second see the same regime, where trials
/// seconds apart do not. Every slice is a result record.
fn perf_pair<'a>(
    case: &PerfCase,
    counts: perf::Counts,
    pair: usize,
    order: [Side; 2],
    sides: &Sides,
    ctx: &dyn Fn(Side) -> CaseContext<'a>,
    engine: &'a NativeEngine,
) -> anyhow::Result<Vec<SlicePair>> {
    let slice = perf::Counts {
        warmup: 0,
        measured: counts.measured,
    };
    let total = counts.measured * (SLICES as u64 + 1);
    let mut servers = Vec::new();
    let mut items = Vec::new();
    for side in [Side::Baseline, Side::Candidate] {
        let c = ctx(side);
        let mut server = perf::start_server(case, &perf_ctx(&c, engine))?;
        items.push(perf::prepare(case, &mut server, total)?);
        servers.push(server);
    }
    for side in order {
        let c = ctx(side);
        perf::measure(
            &perf_ctx(&c, engine),
            &mut servers[side as usize],
            &perf::load(case, counts.measured),
        )
        .with_context(|| format!("warming the {side:?}"))?;
    }
    let mut slices = Vec::new();
    for k in 0..SLICES {
        let turn = if k % 2 == 0 {
            [order[1], order[0]]
        } else {
            order
        };
        // A B | B A | A B ...: the warmup ended with order[1], so the first slice repeats it.
        let mut got = [None, None];
        for side in turn {
            let c = ctx(side);
            let index = side as usize;
            let repetition = ((pair - 1) * SLICES + k + 1) as u32;
            let record = perf::measured_run(
                case,
                &perf_ctx(&c, engine),
                &mut servers[index],
                slice,
                items[index],
                repetition,
                false,
            )
            .with_context(|| format!("{} on the {side:?}", case.name))?;
            sides.dir(side).append(&record)?;
            got[index] = Some(slice_numbers(&record));
        }
        let [Some(baseline), Some(candidate)] = got else {
            unreachable!("both sides ran the slice")
        };
        slices.push((turn[0], baseline, candidate));
    }
    Ok(slices)
}

/// The numbers of one measured slice.
fn slice_numbers(r: &bench_core::result::ResultRecord) -> Trial {
    let m = &r.metrics;
    let mut t = Trial::new();
    t.insert("ops_per_sec".into(), m.ops_per_sec);
    let optional = [
        ("server_cpu_us_per_request", m.server_cpu_us_per_request),
        ("usec_per_call", m.usec_per_call),
        ("p50_us", m.latency.p50_us),
        ("p99_us", m.latency.p99_us),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            t.insert(key.into(), v);
        }
    }
    t
}

/// The perf suite's context: the shared one plus the engine.
fn perf_ctx<'a>(c: &CaseContext<'a>, engine: &'a NativeEngine) -> perf::CaseContext<'a> {
    perf::CaseContext {
        run_id: c.run_id,
        binaries: c.binaries,
        host: c.host,
        engine,
        base_port: c.base_port,
        shutdown: c.shutdown,
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
