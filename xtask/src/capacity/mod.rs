//! `cargo xtask capacity`: the search of `bench_core::capacity` with real trials.
//!
//! A trial is one perf case's server, fresh (deployed and preloaded as the perf suite
//! does), driven open loop by the native generator at the rate the search asks for: a
//! quarter of the trial's length as warmup, then the measured window. Its report becomes a
//! [`Trial`], judged; trials repeat at that rate until the rate is decided. Without
//! `start`, a short closed-loop run on a fresh server gives the peak, and the search starts
//! at half of it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::capacity::{
    Guards, Judged, Objective, Outcome, RateTest, RateVerdict, Search, Settings, Step, Trial, judge,
};
use bench_core::command::{Command, Preload as Reads};
use bench_core::loadgen::engine::{self, MAX_RATE};
use bench_core::loadgen::{self, Stop, stats::decode_histogram};
use bench_core::perf::{Matrix, PerfCase, PerfSpec};
use bench_core::placement::{Machine, Placement};
use bench_core::result::{CapacityRecord, CapacityTrial, PercentileInterval};
use bench_core::topology::TopologySpec;
use bench_core::transport::TlsMode;
use serde::Serialize;

use crate::case::CaseContext;
use crate::events::Event;
use crate::suites::{perf, perf_record};

pub mod answer;
pub mod over;

/// Where a case's servers run and how they speak.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deployment {
    pub topology: TopologySpec,
    pub tls: Option<TlsMode>,
}

/// The case a capacity search measures: GET of 32 B at pipeline 16 from 50 connections on
/// 100,000 keys, `matrix` replacing any of them (one value each), on `deployment`; server
/// and generator pinned apart on `machine` unless the case pins them itself.
pub fn case(
    matrix: &Matrix,
    deployment: Deployment,
    machine: &Machine,
) -> Result<PerfCase, String> {
    let mut spec = PerfSpec::from_toml(bench_core::perf::QUICK_PERF)
        .map_err(|e| format!("the built-in case: {e}"))?;
    spec.commands = vec![Command::Get];
    spec.pipelines = vec![16];
    spec.keyspaces = vec![100_000];
    spec.topology = deployment.topology;
    spec.tls = deployment.tls;
    matrix.apply(&mut spec);
    let cases = spec.expand();
    let [case] = cases.as_slice() else {
        return Err(format!(
            "capacity searches one case; the flags make {} (give one value to each of --commands, --value-sizes, --pipelines, --clients, --io-threads, --keyspaces, or search over one of them with --over)",
            cases.len()
        ));
    };
    if case.command.preload() == Reads::List {
        return Err(format!(
            "--commands {}: a capacity search needs a command that does not use up its data (a pop's list would need a length for every rate tried)",
            case.command
        ));
    }
    // Server and generator on CPUs of their own: sharing one moves the latency the
    // objective is about by more than the rates differ.
    let mut case = case.clone();
    if !case.placement.is_pinned() {
        case.placement = Placement::apart(machine);
    }
    Ok(case)
}

/// What to search.
#[derive(Clone, Debug)]
pub struct Setup {
    pub case: PerfCase,
    pub objective: Objective,
    /// The measured window of each trial.
    pub trial: Duration,
    /// The first rate; `None`: half the closed-loop peak.
    pub start: Option<f64>,
    pub resolution: f64,
    pub guards: Guards,
}

/// One trial as the answer reports it (its full record, histogram and monitor included,
/// goes to the run's results).
#[derive(Clone, Debug, Serialize)]
pub struct TrialRecord {
    #[serde(flatten)]
    pub capacity: CapacityTrial,
    pub achieved: f64,
    pub requests: u64,
    /// The measured window's latency, µs: p50, p99, p99.9.
    pub latency_us: [Option<f64>; 3],
    /// The server's CPU (user + system) per request, µs.
    pub server_cpu_us_per_request: Option<f64>,
}

impl TrialRecord {
    /// The server's CPU in cores (its CPU per request times the rate achieved).
    pub fn server_cores(&self) -> Option<f64> {
        self.server_cpu_us_per_request
            .map(|us| us * self.achieved / 1e6)
    }
}

/// One decided rate.
#[derive(Clone, Debug, Serialize)]
pub struct RateRecord {
    pub rate: f64,
    /// `search` or `verify`.
    pub stage: &'static str,
    pub verdict: String,
    pub trials: usize,
}

/// The whole search.
#[derive(Debug)]
pub struct Searched {
    /// The closed-loop peak, where it was measured.
    pub peak: Option<f64>,
    pub outcome: Outcome,
    pub rates: Vec<RateRecord>,
    /// Every trial, in order: the search's, the verification's, then the headroom runs.
    pub trials: Vec<TrialRecord>,
    /// Why the headroom trials stopped before all four ran, if they did.
    pub headroom_stopped: Option<String>,
}

/// The fractions of the answer the headroom runs offer, once each.
pub const HEADROOM: [(f64, &str); 4] = [(1.0, "r*"), (0.9, "0.9×"), (0.75, "0.75×"), (0.5, "0.5×")];

/// Searches `setup`'s case, handing every trial's record to `sink` as it is measured.
pub fn run(
    ctx: &CaseContext<'_>,
    setup: &Setup,
    progress: &mut dyn FnMut(Event),
    sink: &mut dyn FnMut(CapacityRecord) -> anyhow::Result<()>,
) -> anyhow::Result<Searched> {
    let peak = match setup.start {
        Some(_) => None,
        None => {
            let peak = closed_loop_peak(ctx, setup)?;
            progress(Event::Step {
                message: format!("closed-loop peak {peak:.0}/s"),
            });
            Some(peak)
        }
    };
    let start = setup.start.or(peak.map(|p| p / 2.0)).unwrap_or(1000.0);
    let mut search = Search::new(Settings {
        start,
        resolution: setup.resolution,
        // A thousandth of where it started: below that the objective is out of reach.
        min_rate: (start / 1000.0).max(1.0),
        // Past four times the closed-loop peak nothing is left to learn.
        max_rate: peak.map_or(MAX_RATE, |p| (4.0 * p).min(MAX_RATE)),
    });
    let mut trials = Trials {
        ctx,
        setup,
        sink_failed: false,
        records: Vec::new(),
        progress,
        sink,
    };
    let mut rates = Vec::new();
    let outcome = loop {
        let rate = match search.step() {
            Step::Done(outcome) => break outcome,
            Step::Try(rate) => rate,
        };
        let stage = if search.verifying() {
            "verify"
        } else {
            "search"
        };
        let mut test = RateTest::default();
        let bracket = search.bracket();
        let verdict = loop {
            let judged = trials.run(stage, rate, test.trials.len() + 1, bracket)?;
            test.add(judged);
            if let Some(v) = test.verdict(&setup.objective) {
                break v;
            }
        };
        search.record(rate, verdict.clone());
        let (passed, failed) = search.bracket();
        (trials.progress)(Event::CapacityStep {
            case: setup.case.name.clone(),
            stage: stage.into(),
            rate,
            trial: None,
            outcome: verdict.label().into(),
            passed,
            failed,
            line: format!(
                "{rate:>10.0}/s: {} after {} trials",
                verdict_text(&verdict),
                test.trials.len()
            ),
        });
        rates.push(RateRecord {
            rate,
            stage,
            verdict: verdict_text(&verdict),
            trials: test.trials.len(),
        });
    };
    // The headroom trials describe the answer; one that cannot run ends them, not it.
    let mut headroom_stopped = None;
    if let Outcome::Found(answer) = &outcome {
        for (fraction, _) in HEADROOM {
            let bracket = (Some(answer.interval.0), Some(answer.interval.1));
            if let Err(e) = trials.run("headroom", answer.rate * fraction, 1, bracket) {
                // An interrupted run, or results that cannot be written, end everything.
                if ctx.shutdown.is_triggered() || trials.sink_failed {
                    return Err(e);
                }
                (trials.progress)(Event::Warning {
                    message: format!("headroom trials stopped: {e:#}"),
                });
                headroom_stopped = Some(format!("{e:#}"));
                break;
            }
        }
    }
    Ok(Searched {
        peak,
        outcome,
        rates,
        trials: trials.records,
        headroom_stopped,
    })
}

/// Runs trials, numbers them, and hands each one's record on.
struct Trials<'a, 'c> {
    ctx: &'a CaseContext<'c>,
    setup: &'a Setup,
    records: Vec<TrialRecord>,
    /// The sink refused a record (the results file cannot be written).
    sink_failed: bool,
    progress: &'a mut dyn FnMut(Event),
    sink: &'a mut dyn FnMut(CapacityRecord) -> anyhow::Result<()>,
}

impl Trials<'_, '_> {
    /// The `n`th trial at `rate` in `stage`, judged and recorded; `bracket` is the search's
    /// (highest passed, lowest failed) as it runs.
    fn run(
        &mut self,
        stage: &str,
        rate: f64,
        n: usize,
        (passed, failed): (Option<f64>, Option<f64>),
    ) -> anyhow::Result<Judged> {
        if self.ctx.shutdown.is_triggered() {
            bail!("interrupted");
        }
        let index = self.records.len() as u32 + 1;
        let (trial, record) = measure(self.ctx, self.setup, Some(rate), index)
            .with_context(|| format!("a trial at {rate:.0}/s"))?;
        let judged = judge(&trial, &self.setup.objective, &self.setup.guards);
        let capacity = CapacityTrial {
            stage: stage.into(),
            objective: self.setup.objective.to_string(),
            rate,
            trial: n,
            errors: trial.errors,
            late_sends: trial.late_sends,
            judged: judged_text(&judged),
            percentiles: intervals(&judged, &self.setup.objective),
        };
        let m = &record.metrics;
        let summary = TrialRecord {
            capacity: capacity.clone(),
            achieved: trial.achieved,
            requests: trial.requests,
            latency_us: [m.latency.p50_us, m.latency.p99_us, m.latency.p99_9_us],
            server_cpu_us_per_request: m.server_cpu_us_per_request,
        };
        (self.progress)(Event::CapacityStep {
            case: self.setup.case.name.clone(),
            stage: stage.into(),
            rate,
            trial: Some(n),
            outcome: summary.capacity.judged.clone(),
            passed,
            failed,
            line: progress_line(&summary),
        });
        if let Err(e) = (self.sink)(CapacityRecord { record, capacity }) {
            self.sink_failed = true;
            return Err(e);
        }
        self.records.push(summary);
        Ok(judged)
    }
}

fn progress_line(t: &TrialRecord) -> String {
    let c = &t.capacity;
    let percentiles = c
        .percentiles
        .iter()
        .map(|p| format!("{} {:.0}–{:.0} µs", p.name, p.low_us, p.high_us))
        .collect::<Vec<_>>()
        .join(", ");
    let stage = match c.stage.as_str() {
        "search" => String::new(),
        other => format!("{other} "),
    };
    format!(
        "{:>10.0}/s {stage}trial {}: achieved {:.0}/s, {percentiles}; {}",
        c.rate, c.trial, t.achieved, c.judged
    )
}

pub fn verdict_text(v: &RateVerdict) -> String {
    match v {
        RateVerdict::GeneratorBound(why) | RateVerdict::Invalid(why) => {
            format!("{}: {why}", v.label())
        }
        _ => v.label().into(),
    }
}

/// `measured`, `broken: why` or `invalid: why`.
fn judged_text(judged: &Judged) -> String {
    match judged {
        Judged::Measured { broken: None, .. } => "measured".into(),
        Judged::Measured {
            broken: Some(why), ..
        } => format!("broken: {why}"),
        Judged::Invalid(why) => format!("invalid: {}", why.why()),
    }
}

fn intervals(judged: &Judged, objective: &Objective) -> Vec<PercentileInterval> {
    let Judged::Measured { percentiles, .. } = judged else {
        return Vec::new();
    };
    objective
        .bounds
        .iter()
        .zip(percentiles)
        .map(|(b, &(low_us, high_us))| PercentileInterval {
            name: b.name(),
            bound_us: b.max_us,
            low_us,
            high_us,
        })
        .collect()
}

/// The case's closed-loop throughput on a fresh server, over one trial's length.
fn closed_loop_peak(ctx: &CaseContext<'_>, setup: &Setup) -> anyhow::Result<f64> {
    let (trial, _) = measure(ctx, setup, None, 0)?;
    if trial.achieved <= 0.0 {
        bail!("the closed-loop run completed no request");
    }
    Ok(trial.achieved)
}

/// One trial on a fresh server: open loop at `rate` (or closed loop), a quarter of the
/// trial's length as warmup, then the measured window, in one run; the server's INFO read
/// before and after the run and the 1 Hz monitor over it. Returns the trial to judge and
/// its record (`repetition` `index`).
fn measure(
    ctx: &CaseContext<'_>,
    setup: &Setup,
    rate: Option<f64>,
    index: u32,
) -> anyhow::Result<(Trial, bench_core::result::ResultRecord)> {
    let warmup = setup.trial / 4;
    let expected = rate.unwrap_or(1.0);
    let requests = (expected * (setup.trial + warmup).as_secs_f64()).ceil() as u64;
    let (mut server, preloaded_items) = perf::deploy(&setup.case, ctx, requests.max(1))?;
    let target = server.target();
    let load = bench_core::engine::Load {
        rate,
        ..perf::load(&setup.case, requests.max(1))
    };
    let options = loadgen::RunOptions {
        stop: Stop::Duration(setup.trial),
        warmup,
        ..engine::options(&target, &load)
    };
    // One run, the warmup's queue carried into the measured window (a backlog built
    // above the capacity must show in it). INFO and the monitor span the whole run.
    let before = server.info()?;
    let monitor = server.monitor();
    let started = Instant::now();
    let measured = loadgen::run(
        &[target.primary()],
        &engine::workload(&load),
        &options,
        ctx.shutdown,
        |_| {},
    );
    let wall_secs = started.elapsed().as_secs_f64();
    let samples = monitor.stop();
    let report = measured?;
    // Stopped by an interrupt, the window was cut short: no trial to judge.
    if ctx.shutdown.is_triggered() {
        bail!("interrupted");
    }
    if let Some(why) = &report.partial {
        bail!("the run ended early: {why}");
    }
    let after = server.info()?;
    let histogram = decode_histogram(&report.all.histogram)
        .map_err(|e| anyhow::anyhow!("the run's histogram: {e}"))?;
    let trial = Trial {
        offered: rate.unwrap_or(report.ops_per_sec),
        achieved: report.ops_per_sec,
        requests: report.requests,
        errors: report.errors.values().sum(),
        late_sends: report.late_sends,
        // In open loop the generator busy-polls near due sends, so its CPU says nothing
        // about saturation. Its late sends are recorded with the trial (and named beside
        // the answer): whether they were the generator's or a full window's is not told
        // apart yet.
        client_busy: None,
        histogram,
    };
    // The server's costs over the whole run, per request it served (its commandstats).
    let name = setup.case.command.name().to_ascii_lowercase();
    let calls = |info: &bench_core::info::Info| info.commandstats().get(&name).map_or(0, |c| c.0);
    let served = calls(&after).saturating_sub(calls(&before));
    let costs = perf_record::server_costs(&before, &after, setup.case.command, served);
    let counts = perf::Counts {
        // Answered outside the measured window: the warmup, and requests in flight at
        // the window's ends.
        warmup: served.saturating_sub(report.requests),
        measured: report.requests,
    };
    let argv = ctx.engine.describe(
        &target,
        &bench_core::engine::Load {
            requests: report.requests,
            ..load.clone()
        },
    );
    let mut record = perf_record::record(
        &setup.case,
        ctx,
        &*server,
        perf_record::Run {
            measurement: engine::measured(report, wall_secs),
            costs,
            monitor: samples,
            counts,
            preloaded_items,
            argv,
        },
        index,
    );
    record.suite = "capacity".into();
    Ok((trial, record))
}
