//! `cargo xtask capacity`: the search of `bench_core::capacity` with real trials.
//!
//! A trial is one perf case's server, fresh (deployed and preloaded as the perf suite
//! does), driven open loop by the native generator at the rate the search asks for: a
//! quarter of the trial's length as warmup, then the measured window. Its report becomes a
//! [`Trial`], judged; trials repeat at that rate until the rate is decided. Without
//! `start`, a short closed-loop run on a fresh server gives the peak, and the search starts
//! at half of it.

use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::capacity::{
    Guards, Judged, Objective, Outcome, RateTest, RateVerdict, Search, Settings, Step, Trial, judge,
};
use bench_core::loadgen::engine::{self, MAX_RATE};
use bench_core::loadgen::{self, Stop, stats::decode_histogram};
use bench_core::perf::PerfCase;
use serde::Serialize;

use crate::case::CaseContext;
use crate::suites::perf;

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

/// One trial as it is reported: what was offered and measured, and how it was judged.
#[derive(Clone, Debug, Serialize)]
pub struct TrialRecord {
    pub rate: f64,
    pub achieved: f64,
    pub requests: u64,
    pub errors: u64,
    pub late_sends: u64,
    /// Per bound of the objective: its name and the percentile's interval, µs.
    pub percentiles: Vec<(String, f64, f64)>,
    /// `measured`, or why the trial does not count.
    pub judged: String,
}

/// One decided rate.
#[derive(Clone, Debug, Serialize)]
pub struct RateRecord {
    pub rate: f64,
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
    pub trials: Vec<TrialRecord>,
}

pub fn run(
    ctx: &CaseContext<'_>,
    setup: &Setup,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Searched> {
    let peak = match setup.start {
        Some(_) => None,
        None => {
            let peak = closed_loop_peak(ctx, setup)?;
            progress(format!("closed-loop peak {peak:.0}/s"));
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
    let (mut rates, mut trials) = (Vec::new(), Vec::new());
    loop {
        let rate = match search.step() {
            Step::Done(outcome) => {
                return Ok(Searched {
                    peak,
                    outcome,
                    rates,
                    trials,
                });
            }
            Step::Try(rate) => rate,
        };
        let mut test = RateTest::default();
        let verdict = loop {
            if ctx.shutdown.is_triggered() {
                bail!("interrupted");
            }
            let trial =
                trial(ctx, setup, rate).with_context(|| format!("a trial at {rate:.0}/s"))?;
            let judged = judge(&trial, &setup.objective, &setup.guards);
            let record = record(&trial, &judged, &setup.objective);
            progress(format!(
                "{rate:>10.0}/s trial {}: achieved {:.0}/s, {}; {}",
                test.trials.len() + 1,
                record.achieved,
                record
                    .percentiles
                    .iter()
                    .map(|(name, low, high)| format!("{name} {low:.0}–{high:.0} µs"))
                    .collect::<Vec<_>>()
                    .join(", "),
                record.judged
            ));
            trials.push(record);
            test.add(judged);
            if let Some(v) = test.verdict(&setup.objective) {
                break v;
            }
        };
        progress(format!(
            "{rate:>10.0}/s: {} after {} trials",
            verdict_text(&verdict),
            test.trials.len()
        ));
        rates.push(RateRecord {
            rate,
            verdict: verdict_text(&verdict),
            trials: test.trials.len(),
        });
        search.record(rate, verdict);
    }
}

pub fn verdict_text(v: &RateVerdict) -> String {
    match v {
        RateVerdict::GeneratorBound(why) | RateVerdict::Invalid(why) => {
            format!("{}: {why}", v.label())
        }
        _ => v.label().into(),
    }
}

fn record(trial: &Trial, judged: &Judged, objective: &Objective) -> TrialRecord {
    let (percentiles, judged) = match judged {
        Judged::Measured { percentiles, .. } => (
            objective
                .bounds
                .iter()
                .zip(percentiles)
                .map(|(b, &(low, high))| (b.name(), low, high))
                .collect(),
            "measured".to_string(),
        ),
        Judged::Invalid(why) => (Vec::new(), format!("invalid: {}", why.why())),
    };
    TrialRecord {
        rate: trial.offered,
        achieved: trial.achieved,
        requests: trial.requests,
        errors: trial.errors,
        late_sends: trial.late_sends,
        percentiles,
        judged,
    }
}

/// The case's closed-loop throughput on a fresh server, over one trial's length.
fn closed_loop_peak(ctx: &CaseContext<'_>, setup: &Setup) -> anyhow::Result<f64> {
    let report = drive(ctx, setup, None, 1.0)?;
    if report.ops_per_sec <= 0.0 {
        bail!("the closed-loop run completed no request");
    }
    Ok(report.ops_per_sec)
}

/// One open-loop trial at `rate` on a fresh server.
fn trial(ctx: &CaseContext<'_>, setup: &Setup, rate: f64) -> anyhow::Result<Trial> {
    let report = drive(ctx, setup, Some(rate), rate)?;
    let histogram = decode_histogram(&report.all.histogram)
        .map_err(|e| anyhow::anyhow!("the run's histogram: {e}"))?;
    Ok(Trial {
        offered: rate,
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
    })
}

/// Runs the case's load on a fresh server for a trial's length (a quarter more as
/// warmup): open loop at `rate`, or closed loop; `expected` requests/s sizes the preload.
fn drive(
    ctx: &CaseContext<'_>,
    setup: &Setup,
    rate: Option<f64>,
    expected: f64,
) -> anyhow::Result<loadgen::Report> {
    let warmup = setup.trial / 4;
    let requests = (expected * (setup.trial + warmup).as_secs_f64()).ceil() as u64;
    let (server, _) = perf::deploy(&setup.case, ctx, requests.max(1))?;
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
    let report = loadgen::run(
        &[target.primary()],
        &engine::workload(&load),
        &options,
        ctx.shutdown,
        |_| {},
    )?;
    if let Some(why) = report.partial {
        bail!("the run ended early: {why}");
    }
    Ok(report)
}
