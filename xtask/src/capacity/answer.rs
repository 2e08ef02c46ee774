//! A capacity search's answer as people and programs read it: the text (with the
//! headroom table), the JSON (`--json`, `capacity.json`) and the knee chart's data.

use bench_core::capacity::Outcome;
use bench_core::charts::{Knee, KneeTrial};
use bench_core::topology::TopologySpec;
use serde_json::json;

use super::{HEADROOM, Searched, Setup};

pub fn answer_text(s: &Searched, setup: &Setup) -> String {
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
            text.push_str(&headroom_text(s, setup));
            text.push_str(&format!(
                "\n{} rates, {} trials",
                s.rates.len(),
                s.trials.len()
            ));
            text
        }
        Outcome::NothingPasses { lowest_tried } => {
            let verdict = s
                .rates
                .iter()
                .rfind(|r| r.rate == *lowest_tried)
                .map_or("fail", |r| r.verdict.as_str());
            match verdict {
                "fail" => format!(
                    "no capacity: even {lowest_tried:.0}/s fails {o} (its latency over the bound, or the rate not sustained)"
                ),
                other => format!(
                    "no capacity found: no rate tried passed {o}; the lowest, {lowest_tried:.0}/s, is {other} (its trials neither pass nor fail it with confidence: this machine's noise is at the objective)"
                ),
            }
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

/// Every trial against its offered rate, with the objective and the answer.
pub fn knee(s: &Searched, setup: &Setup) -> Knee {
    Knee {
        title: format!("Capacity of {} within {}", setup.case.name, setup.objective),
        trials: s
            .trials
            .iter()
            .map(|t| KneeTrial {
                offered: t.capacity.rate,
                achieved: t.achieved,
                latency_us: t.latency_us,
                counted: !t.capacity.judged.starts_with("invalid"),
                broken: t.capacity.judged.starts_with("broken"),
            })
            .collect(),
        bounds: setup
            .objective
            .bounds
            .iter()
            .map(|b| (b.name(), b.max_us))
            .collect(),
        answer: match &s.outcome {
            Outcome::Found(a) => Some(a.interval),
            _ => None,
        },
        verified: matches!(&s.outcome, Outcome::Found(a) if a.verified == Some(Ok(()))),
    }
}

/// The headroom runs as a table: what the server gives and costs below its capacity.
pub fn headroom_text(s: &Searched, setup: &Setup) -> String {
    let runs: Vec<_> = s
        .trials
        .iter()
        .filter(|t| t.capacity.stage == "headroom")
        .collect();
    let stopped = s
        .headroom_stopped
        .as_ref()
        .map(|why| format!("\nheadroom trials stopped after {}: {why}", runs.len()))
        .unwrap_or_default();
    if runs.is_empty() {
        return stopped;
    }
    let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let mut text = String::from(
        "\nheadroom (one trial each: a curve to read, not a verdict):\n\
         \x20        offered   achieved    p50 µs    p99 µs  p99.9 µs  server CPU",
    );
    if setup.case.topology != TopologySpec::Standalone {
        text.push_str(" (the primaries' summed; replicas' not counted)");
    }
    for (t, (_, label)) in runs.iter().zip(HEADROOM) {
        let cpu = match (t.server_cores(), t.server_cpu_us_per_request) {
            (Some(cores), Some(per)) => {
                format!("{:.0}% of a core ({per:.2} µs/req)", cores * 100.0)
            }
            _ => "-".into(),
        };
        let [p50, p99, p999] = t.latency_us;
        text.push_str(&format!(
            "\n{:>6} {:>8.0}/s {:>8.0}/s {:>9} {:>9} {:>9}  {cpu}",
            label,
            t.capacity.rate,
            t.achieved,
            us(p50),
            us(p99),
            us(p999)
        ));
    }
    text + &stopped
}

pub fn json_of(s: &Searched, setup: &Setup) -> serde_json::Value {
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
        "headroom_stopped": s.headroom_stopped,
        "answer": answer,
        "rates": s.rates,
        "trials": s.trials,
    })
}

/// The share of requests sent late in the trials at `rate`.
fn late_share(s: &Searched, rate: f64) -> Option<f64> {
    let at: Vec<_> = s
        .trials
        .iter()
        .filter(|t| t.capacity.rate == rate)
        .collect();
    let requests: u64 = at.iter().map(|t| t.requests).sum();
    let late: u64 = at.iter().map(|t| t.capacity.late_sends).sum();
    (requests > 0).then(|| late as f64 / requests as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{RateRecord, TrialRecord};
    use bench_core::capacity::{Answer, Guards, Objective};
    use bench_core::result::{CapacityTrial, PercentileInterval};

    fn setup() -> Setup {
        let machine = bench_core::placement::Machine {
            allowed: [0, 1].into(),
            core_of: Default::default(),
        };
        Setup {
            case: super::super::case(&Default::default(), Default::default(), &machine).unwrap(),
            objective: Objective::parse("p99<=1ms").unwrap(),
            trial: std::time::Duration::from_secs(1),
            start: None,
            resolution: 0.02,
            guards: Guards::default(),
        }
    }

    fn trial(stage: &str, rate: f64, late_sends: u64) -> TrialRecord {
        TrialRecord {
            capacity: CapacityTrial {
                stage: stage.into(),
                objective: "p99<=1ms".into(),
                rate,
                trial: 1,
                errors: 0,
                late_sends,
                judged: "measured".into(),
                percentiles: vec![PercentileInterval {
                    name: "p99".into(),
                    bound_us: 1000.0,
                    low_us: 500.0,
                    high_us: 600.0,
                }],
            },
            achieved: rate,
            requests: 1000,
            latency_us: [Some(100.0), Some(550.0), None],
            server_cpu_us_per_request: Some(20.0),
        }
    }

    fn searched(outcome: Outcome) -> Searched {
        Searched {
            peak: Some(20_000.0),
            outcome,
            rates: vec![RateRecord {
                rate: 10_000.0,
                stage: "search",
                verdict: "pass".into(),
                trials: 2,
            }],
            trials: vec![trial("search", 10_000.0, 0), trial("search", 10_200.0, 30)],
            headroom_stopped: None,
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
        // The headroom runs: a row per fraction of r*, with the server's CPU.
        let mut found = answer(Some(Ok(())), Vec::new());
        for (fraction, _) in HEADROOM {
            found.trials.push(trial("headroom", 10_000.0 * fraction, 0));
        }
        let text = answer_text(&found, &s);
        assert!(
            text.contains(
                "\nheadroom (one trial each: a curve to read, not a verdict):\n\
                 \x20        offered   achieved    p50 µs    p99 µs  p99.9 µs  server CPU\n\
                 \x20   r*    10000/s    10000/s       100       550         -  20% of a core (20.00 µs/req)\n\
                 \x20 0.9×     9000/s     9000/s       100       550         -  18% of a core (20.00 µs/req)\n\
                 \x200.75×     7500/s     7500/s       100       550         -  15% of a core (20.00 µs/req)\n\
                 \x20 0.5×     5000/s     5000/s       100       550         -  10% of a core (20.00 µs/req)\n\
                 1 rates, 6 trials"
            ),
            "{text}"
        );
        let json = json_of(&found, &s);
        assert_eq!(json["trials"][2]["stage"], "headroom");
        assert_eq!(json["trials"][2]["percentiles"][0]["high_us"], 600.0);
        let none = searched(Outcome::NothingPasses { lowest_tried: 20.0 });
        assert_eq!(
            answer_text(&none, &s),
            "no capacity: even 20/s fails p99<=1ms (its latency over the bound, or the rate not sustained)"
        );
        let mut noisy = searched(Outcome::NothingPasses {
            lowest_tried: 10_000.0,
        });
        noisy.rates[0].verdict = "undecided".into();
        assert_eq!(
            answer_text(&noisy, &s),
            "no capacity found: no rate tried passed p99<=1ms; the lowest, 10000/s, is undecided (its trials neither pass nor fail it with confidence: this machine's noise is at the objective)"
        );
        let json = json_of(&none, &s);
        assert_eq!(json["answer"]["none"], "nothing passes");
        assert_eq!(json["case"], "GET/32B/P16/c50/io1/100k-keys");
        assert_eq!(json["objective"], "p99<=1ms");
    }
}
