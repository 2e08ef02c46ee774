//! `cargo xtask capacity`: the highest rate one perf case sustains within a latency
//! objective (`capacity.rs` runs the trials, `bench_core::capacity` decides).

use std::time::Duration;

use bench_core::capacity::{Guards, Objective, Outcome};
use bench_core::command::{Command, Preload as Reads};
use bench_core::loadgen::engine::NativeEngine;
use bench_core::perf::PerfSpec;
use bench_core::shutdown::Shutdown;
use clap::Args;
use serde_json::json;

use super::ValkeyArgs;
use super::args::MatrixArgs;
use crate::capacity::{self, Searched, Setup};
use crate::case::{CaseContext, LOCAL_STANDALONE};
use crate::error::{Unverified, UsageError};

#[derive(Args, Debug)]
pub struct CapacityCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    /// The objective every trial must hold: latency percentiles with their bounds, and
    /// optionally the errors a trial may have (`p99<=1ms,p99.9<=5ms,errors<=0`).
    #[arg(long, value_name = "OBJECTIVE")]
    pub slo: String,
    /// The case's command, value size, pipeline, connections, io-threads and keyspace,
    /// one value each (default GET of 32 B, pipeline 16, 50 connections, 100,000 keys).
    #[command(flatten)]
    pub matrix: MatrixArgs,
    /// The first rate tried, requests/s (default: half the closed-loop peak, measured
    /// first).
    #[arg(long, value_name = "RATE")]
    pub start: Option<f64>,
    /// Stop bisecting when the bracket's ends are this close, percent.
    #[arg(long, default_value_t = 2.0, value_name = "PERCENT")]
    pub resolution: f64,
    /// Each trial's measured window, seconds (a quarter more runs before it as warmup).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub trial_seconds: f64,
    #[arg(long, default_value_t = 9000)]
    pub base_port: u16,
    /// Print the answer, every rate and every trial as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CapacityCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let setup = self.setup()?;
        let binaries = self.valkey.binaries(shutdown)?;
        let host = crate::host::info();
        let ctx = CaseContext {
            run_id: "capacity",
            binaries: &binaries,
            host: &host,
            hosts: crate::host::local_hosts(),
            engine: &NativeEngine,
            base_port: self.base_port,
            shutdown,
            servers: &*LOCAL_STANDALONE,
            tls: None,
        };
        eprintln!(
            "capacity of {} on Valkey {} within {}",
            setup.case.name, binaries.version, setup.objective
        );
        let searched = capacity::run(&ctx, &setup, &mut |line| eprintln!("{line}"))?;
        if self.json {
            println!("{}", json_of(&searched, &setup));
        } else {
            println!("{}", answer_text(&searched, &setup));
        }
        match &searched.outcome {
            Outcome::Found(answer) if answer.verified == Some(Ok(())) => Ok(()),
            Outcome::Found(_) => Err(Unverified("the answer was not verified".into()).into()),
            Outcome::NothingPasses { .. } | Outcome::EverythingPasses { .. } => {
                Err(Unverified("no capacity within the rates tried".into()).into())
            }
            // Nothing was measured where it stopped: the search could not run.
            Outcome::GeneratorBound { rate, why } | Outcome::Invalid { rate, why } => {
                anyhow::bail!("the search stopped at {rate:.0}/s: {why}")
            }
        }
    }

    /// Everything checked before anything is built or started.
    fn setup(&self) -> Result<Setup, UsageError> {
        if self.valkey.tls {
            return Err(UsageError(
                "capacity --tls: searching over TLS is not there yet (docs/capacity.md, \"Not yet\"); leave --tls out".into(),
            ));
        }
        let objective = Objective::parse(&self.slo).map_err(|e| UsageError(e.to_string()))?;
        if !(self.resolution.is_finite() && (0.1..=50.0).contains(&self.resolution)) {
            return Err(UsageError(format!(
                "--resolution {}: give a percentage from 0.1 to 50",
                self.resolution
            )));
        }
        if !(self.trial_seconds.is_finite() && (0.2..=600.0).contains(&self.trial_seconds)) {
            return Err(UsageError(format!(
                "--trial-seconds {}: give 0.2 to 600 seconds",
                self.trial_seconds
            )));
        }
        if let Some(start) = self.start {
            bench_core::loadgen::engine::check_rate(Some(start))
                .map_err(|why| UsageError(format!("--start: {why}")))?;
        }
        let mut spec = PerfSpec::from_toml(bench_core::perf::QUICK_PERF)
            .map_err(|e| UsageError(format!("the built-in case: {e}")))?;
        spec.commands = vec![Command::Get];
        spec.pipelines = vec![16];
        spec.keyspaces = vec![100_000];
        self.matrix.matrix().apply(&mut spec);
        let cases = spec.expand();
        let [case] = cases.as_slice() else {
            return Err(UsageError(format!(
                "capacity searches one case; the flags make {} (give one value to each of --commands, --value-sizes, --pipelines, --clients, --io-threads, --keyspaces)",
                cases.len()
            )));
        };
        if case.command.preload() == Reads::List {
            return Err(UsageError(format!(
                "--commands {}: a capacity search needs a command that does not use up its data (a pop's list would need a length for every rate tried)",
                case.command
            )));
        }
        // Server and generator on CPUs of their own: sharing one moves the latency the
        // objective is about by more than the rates differ.
        let mut case = case.clone();
        if !case.placement.is_pinned() {
            case.placement = bench_core::placement::Placement::apart(&crate::host::machine());
        }
        Ok(Setup {
            case,
            objective,
            trial: Duration::from_secs_f64(self.trial_seconds),
            start: self.start,
            resolution: self.resolution / 100.0,
            guards: Guards::default(),
        })
    }
}

fn answer_text(s: &Searched, setup: &Setup) -> String {
    let o = &setup.objective;
    match &s.outcome {
        Outcome::Found(a) => {
            let (lo, hi) = a.interval;
            let mut text = format!(
                "capacity {lo:.0}/s within {o} (interval {lo:.0}–{hi:.0}/s, {:.1}% wide",
                a.width() * 100.0
            );
            if !a.undecided.is_empty() {
                text.push_str(&format!(
                    "; {} rate(s) inside it stayed undecided: the objective is met there only some of the time",
                    a.undecided.len()
                ));
            }
            text.push(')');
            match &a.verified {
                Some(Ok(())) => text.push_str(&format!(
                    "\nverified: {:.0}/s (0.9×) passes, {:.0}/s (1.1×) fails",
                    lo * 0.9,
                    lo * 1.1
                )),
                Some(Err(why)) => text.push_str(&format!("\nnot verified: {why}")),
                None => {}
            }
            if let Some(late) = late_share(s, hi).filter(|&l| l > 0.01) {
                text.push_str(&format!(
                    "\nthe trials at {hi:.0}/s sent {:.1}% of their requests late: if the generator fell behind there rather than the server, the top of the interval is the generator's limit (docs/capacity.md)",
                    late * 100.0
                ));
            }
            text.push_str(&format!(
                "\n{} rates, {} trials",
                s.rates.len(),
                s.trials.len()
            ));
            text
        }
        Outcome::NothingPasses { lowest_tried } => {
            format!("no capacity: even {lowest_tried:.0}/s breaks {o}")
        }
        Outcome::EverythingPasses { highest_tried } => format!(
            "capacity above {highest_tried:.0}/s: every rate tried, up to the highest the search may try, holds {o}"
        ),
        Outcome::GeneratorBound { rate, why } => {
            format!("stopped at {rate:.0}/s: {why}")
        }
        Outcome::Invalid { rate, why } => {
            format!("stopped at {rate:.0}/s: its trials did not count ({why})")
        }
    }
}

fn json_of(s: &Searched, setup: &Setup) -> serde_json::Value {
    let answer = match &s.outcome {
        Outcome::Found(a) => json!({
            "rate": a.rate,
            "interval": [a.interval.0, a.interval.1],
            "undecided": a.undecided,
            "verified": a.verified.as_ref().map(|v| v.is_ok()),
            "not_verified_because": a.verified.as_ref().and_then(|v| v.clone().err()),
        }),
        Outcome::NothingPasses { lowest_tried } => {
            json!({ "none": "nothing passes", "lowest_tried": lowest_tried })
        }
        Outcome::EverythingPasses { highest_tried } => {
            json!({ "none": "everything passes", "highest_tried": highest_tried })
        }
        Outcome::GeneratorBound { rate, why } => {
            json!({ "none": "generator-bound", "rate": rate, "why": why })
        }
        Outcome::Invalid { rate, why } => json!({ "none": "invalid", "rate": rate, "why": why }),
    };
    json!({
        "case": setup.case.name,
        "objective": setup.objective.to_string(),
        "closed_loop_peak": s.peak,
        "answer": answer,
        "rates": s.rates,
        "trials": s.trials,
    })
}

/// The share of requests sent late in the trials at `rate`.
fn late_share(s: &Searched, rate: f64) -> Option<f64> {
    let at: Vec<_> = s.trials.iter().filter(|t| t.rate == rate).collect();
    let requests: u64 = at.iter().map(|t| t.requests).sum();
    (requests > 0).then(|| at.iter().map(|t| t.late_sends).sum::<u64>() as f64 / requests as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{RateRecord, TrialRecord};
    use bench_core::capacity::Answer;

    fn setup() -> Setup {
        let cmd = CapacityCmd {
            valkey: ValkeyArgs::default(),
            slo: "p99<=1ms".into(),
            matrix: MatrixArgs::default(),
            start: None,
            resolution: 2.0,
            trial_seconds: 1.0,
            base_port: 9000,
            json: false,
        };
        cmd.setup().unwrap()
    }

    fn trial(rate: f64, late_sends: u64) -> TrialRecord {
        TrialRecord {
            rate,
            achieved: rate,
            requests: 1000,
            errors: 0,
            late_sends,
            percentiles: vec![("p99".into(), 500.0, 600.0)],
            judged: "measured".into(),
        }
    }

    fn searched(outcome: Outcome) -> Searched {
        Searched {
            peak: Some(20_000.0),
            outcome,
            rates: vec![RateRecord {
                rate: 10_000.0,
                verdict: "pass".into(),
                trials: 2,
            }],
            trials: vec![trial(10_000.0, 0), trial(10_200.0, 30)],
        }
    }

    #[test]
    fn the_answer_reads_as_a_rate_its_interval_and_its_verification() {
        let s = setup();
        let answer = |verified, undecided: Vec<f64>| {
            searched(Outcome::Found(Answer {
                rate: 10_000.0,
                interval: (10_000.0, 10_200.0),
                undecided,
                verified,
            }))
        };
        assert_eq!(
            answer_text(&answer(Some(Ok(())), Vec::new()), &s),
            "capacity 10000/s within p99<=1ms (interval 10000–10200/s, 2.0% wide)\n\
             verified: 9000/s (0.9×) passes, 11000/s (1.1×) fails\n\
             the trials at 10200/s sent 3.0% of their requests late: if the generator fell behind there rather than the server, the top of the interval is the generator's limit (docs/capacity.md)\n\
             1 rates, 2 trials"
        );
        let text = answer_text(
            &answer(
                Some(Err("1.1 r* (11000/s): undecided, not fail".into())),
                vec![10_100.0],
            ),
            &s,
        );
        assert!(
            text.contains("; 1 rate(s) inside it stayed undecided"),
            "{text}"
        );
        assert!(
            text.contains("\nnot verified: 1.1 r* (11000/s): undecided, not fail\n"),
            "{text}"
        );
        let none = searched(Outcome::NothingPasses { lowest_tried: 20.0 });
        assert_eq!(
            answer_text(&none, &s),
            "no capacity: even 20/s breaks p99<=1ms"
        );
        let json = json_of(&none, &s);
        assert_eq!(json["answer"]["none"], "nothing passes");
        assert_eq!(json["case"], "GET/32B/P16/c50/io1/100k-keys");
        assert_eq!(json["objective"], "p99<=1ms");
    }
}
