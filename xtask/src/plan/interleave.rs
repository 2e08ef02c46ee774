//! A comparison's schedule: trials of baseline against candidate, the order rotating AB,
//! BA, AB, ... per case, looked at on the plan of bench-core's `compare::family` (Holm
//! over all cases, α spent over looks at fixed trial counts). First every case gets the
//! first look's trials (6 for one case, 11 for 20: as many as a suite-wide call needs),
//! cases interleaved so slow drift spreads over all of them; after one trial each it says
//! how long that takes, and warns when it overruns `max_time`. Then look 1. Then, while
//! cases are open and the next look's trials fit in `max_time`, the open cases get them
//! (a round at a time, one trial per case) and look k + 1 decides what it can; what is
//! still open at the end is inconclusive. The schedule is pure policy: what a trial does
//! is the caller's `trial` function, and time comes from a `clock`, so the order test
//! below runs it with a mock executor and a fake clock (as hyperfine tests its
//! scheduler).

use std::time::Duration;

use bench_core::compare::{self, ALPHA, CaseResult, Metric, Trial, TrialPair, family};
use bench_core::shutdown::Shutdown;

use super::Side;
use crate::events::Event;

/// One pair from a trial: which side ran first, the baseline's numbers, the candidate's.
pub type SlicePair = (Side, Trial, Trial);

/// What is compared and when to stop.
pub struct Schedule<'a> {
    /// The cases, by name.
    pub names: &'a [String],
    /// The metrics judged, the primary first.
    pub metrics: &'a [Metric],
    /// The lower-is-better metric that confirms the primary one.
    pub confirm: Option<&'a str>,
    /// Smallest change called a regression or improvement (a fraction: 0.02 is 2%).
    pub threshold: f64,
    /// No round starts that would end after this.
    pub max_time: Duration,
    /// How messages name that budget: `--max-time 5m`, or in the default mode the part of
    /// it the screen left.
    pub budget: String,
}

impl Schedule<'_> {
    /// Runs trials until every case is decided or the time is up; returns the analyzed
    /// cases and why it stopped. `trial(case, trial_number, order)` runs one trial and
    /// returns its pairs (perf: one per slice); `clock` is the time since the comparison
    /// began; the trial and verdict events go to `emit`.
    pub fn run(
        &self,
        clock: &dyn Fn() -> Duration,
        emit: &dyn Fn(Event),
        shutdown: &Shutdown,
        trial: &mut dyn FnMut(usize, usize, [Side; 2]) -> anyhow::Result<Vec<SlicePair>>,
    ) -> anyhow::Result<(Vec<CaseResult>, String)> {
        let names = self.names;
        let started = clock();
        let mut pairs: Vec<Vec<TrialPair>> = vec![Vec::new(); names.len()];
        let mut trials = vec![0usize; names.len()];
        let mut one_trial = |i: usize, pairs: &mut Vec<TrialPair>, trials: &mut usize| {
            anyhow::ensure!(!shutdown.is_triggered(), "interrupted");
            emit(Event::TrialStarted {
                case: names[i].clone(),
                trial: *trials + 1,
            });
            *trials += 1;
            let order = if *trials % 2 == 1 {
                [Side::Baseline, Side::Candidate]
            } else {
                [Side::Candidate, Side::Baseline]
            };
            let ran = trial(i, *trials, order)?;
            let key = self.metrics[0].key;
            let logs: Vec<f64> = ran
                .iter()
                .filter_map(|(_, b, c)| Some((c.get(key)? / b.get(key)?).ln()))
                .filter(|l| l.is_finite())
                .collect();
            let change_pct = bench_core::stats::median(&logs).map(|l| l.exp_m1() * 100.0);
            for (first, baseline, candidate) in ran {
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
            emit(Event::TrialFinished {
                case: names[i].clone(),
                trial: *trials,
                pairs: pairs.len(),
                change_pct,
            });
            anyhow::Ok(())
        };
        let m = names.len();
        let analyze = |i: usize, pairs: &[TrialPair]| {
            compare::analyze(&names[i], self.metrics, self.confirm, pairs, self.threshold)
        };
        // Look k on the open cases (analyzed on their trials so far): Holm over all m at the
        // look's α (bench-core's compare::family), a verdict event per case.
        let look_at = |results: &mut Vec<CaseResult>, open: &[usize], k: usize| {
            compare::decide_look(results, open, k, self.threshold);
            for &i in open {
                let r = &results[i];
                emit(Event::CaseVerdict {
                    case: r.case.clone(),
                    verdict: r.verdict.label().into(),
                    change_pct: r.metrics.first().map_or(0.0, |m| m.comparison.change_pct()),
                    look: k,
                });
            }
        };
        // The first look: every case's trials for it, cases interleaved so slow drift
        // spreads over all of them. The estimate of its length comes after one trial each.
        let first = family::look_trials(1, m, ALPHA);
        for round in 1..=first {
            for i in 0..m {
                one_trial(i, &mut pairs[i], &mut trials[i])?;
            }
            if round == 1 && first > 1 {
                let per_round = clock() - started;
                let needed = per_round * first as u32;
                let message = format!(
                    "the first look needs {first} trials per case ({m} case(s), each call holding for the whole suite): about {}",
                    humanize(needed)
                );
                if needed > self.max_time {
                    emit(Event::Warning {
                        message: format!(
                            "{message}, over {}; it runs anyway, since nothing can be decided sooner (fewer cases with --cases are faster)",
                            self.budget
                        ),
                    });
                } else {
                    emit(Event::Step { message });
                }
            }
        }
        let all: Vec<usize> = (0..m).collect();
        let mut results: Vec<CaseResult> = (0..m).map(|i| analyze(i, &pairs[i])).collect();
        look_at(&mut results, &all, 1);
        let total_trials: usize = trials.iter().sum();
        let per_trial = (clock() - started) / total_trials.max(1) as u32;
        let mut look = 1;
        let stopped = loop {
            let open: Vec<usize> = (0..m)
                .filter(|&i| !results[i].verdict.is_decided())
                .collect();
            if open.is_empty() {
                break "every case decided".to_string();
            }
            if look == family::MAX_LOOKS {
                break format!(
                    "the last planned look ({look}, at {} trials) left {} case(s) inconclusive",
                    family::look_trials(look, m, ALPHA),
                    open.len()
                );
            }
            // The next look's trials for every open case, if they fit.
            let next = family::look_trials(look + 1, m, ALPHA);
            let rounds = next - family::look_trials(look, m, ALPHA);
            let needed = per_trial * (rounds * open.len()) as u32;
            if clock() - started + needed > self.max_time {
                break format!(
                    "{} spent with {} case(s) inconclusive (the next look, at {next} trials, needed about {} more)",
                    self.budget,
                    open.len(),
                    humanize(needed)
                );
            }
            for _ in 0..rounds {
                for &i in &open {
                    one_trial(i, &mut pairs[i], &mut trials[i])?;
                }
            }
            look += 1;
            for &i in &open {
                results[i] = analyze(i, &pairs[i]);
            }
            look_at(&mut results, &open, look);
        };
        Ok((results, stopped))
    }
}

/// Runs the two sides one after the other, in `order`: a trial of one pair (mem, sync).
pub fn sequential(
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

pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use bench_core::compare::{Better, Verdict};

    use super::*;

    const METRIC: [Metric; 1] = [Metric {
        key: "x",
        label: "x",
        better: Better::Lower,
    }];

    /// One metric, a 2% threshold, an hour to spend.
    fn one_hour(names: &[String]) -> Schedule<'_> {
        Schedule {
            names,
            metrics: &METRIC,
            confirm: None,
            threshold: 0.02,
            max_time: Duration::from_secs(3600),
            budget: "--max-time 1h".into(),
        }
    }

    fn trial(x: f64) -> Trial {
        Trial::from([("x".to_string(), x)])
    }

    /// Case 0 measures the same on both sides every time (decided at the first look);
    /// case 1 swings ±40% between trials with the candidate ahead or behind at random
    /// (never decided). Each trial takes one second of the fake clock.
    #[test]
    fn the_first_look_interleaved_then_the_undecided_until_the_time_is_spent() {
        let names = vec!["steady".to_string(), "noisy".to_string()];
        let now = Cell::new(Duration::ZERO);
        let calls = RefCell::new(Vec::new());
        let events = RefCell::new(Vec::new());
        let mut noise = 0x2545_F491_4F6C_DD1Du64;
        let mut executor = |case: usize, n: usize, order: [Side; 2]| {
            calls.borrow_mut().push((case, n, order[0]));
            now.set(now.get() + Duration::from_secs(1));
            let (b, c) = if case == 0 {
                (100.0, 100.0)
            } else {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                let swing = (noise % 80) as f64 - 40.0;
                (100.0 + swing, 100.0 - swing)
            };
            Ok(vec![(order[0], trial(b), trial(c))])
        };
        let schedule = Schedule {
            names: &names,
            metrics: &METRIC,
            confirm: None,
            threshold: 0.02,
            max_time: Duration::from_secs(20),
            budget: "--max-time 20s".into(),
        };
        let (results, stopped) = schedule
            .run(
                &|| now.get(),
                &|e| events.borrow_mut().push(e),
                &Shutdown::new(),
                &mut executor,
            )
            .unwrap();
        let calls = calls.into_inner();
        // Two cases: the first look needs 8 trials each (2 · 0.5⁸ ≤ (5% / 3) / 2), cases
        // alternating, each trial's order rotating AB, BA, ...
        let first_look = family::look_trials(1, 2, ALPHA);
        assert_eq!(first_look, 8);
        let first: Vec<(usize, usize, Side)> = (1..=first_look)
            .flat_map(|n| {
                let side = if n % 2 == 1 {
                    Side::Baseline
                } else {
                    Side::Candidate
                };
                [(0, n, side), (1, n, side)]
            })
            .collect();
        assert_eq!(calls[..16], first[..]);
        // Then only the undecided case: 3 more trials to the second look (at 11), 19 s;
        // the third (at 15) would end at 23 s, past 20.
        assert!(calls[16..].iter().all(|c| c.0 == 1), "{calls:?}");
        assert_eq!(calls.len(), 19, "{calls:?}");
        assert_eq!(results[0].verdict, Verdict::NoChange);
        assert_eq!(results[1].verdict, Verdict::Inconclusive);
        assert_eq!(results[1].trials.len(), 11);
        let evidence = results[1].evidence.as_ref().unwrap();
        assert_eq!((evidence.look, evidence.family), (2, 2));
        assert_eq!(results[0].evidence.as_ref().unwrap().look, 1);
        assert!(
            stopped.contains("--max-time 20s") && stopped.contains("at 15 trials"),
            "{stopped}"
        );
        // Every trial is announced before it runs and after it ends.
        let events = events.into_inner();
        let started = events
            .iter()
            .filter(|e| matches!(e, Event::TrialStarted { .. }))
            .count();
        assert_eq!(started, calls.len());
        // The first look's length is said after one trial of each case: 2 s × 8.
        assert!(events.iter().any(|e| matches!(e, Event::Step { message }
            if message.starts_with("the first look needs 8 trials per case") && message.ends_with("about 16s"))), "{events:?}");
        // A verdict per case at look 1, then one for the open case at look 2.
        let verdicts = events
            .iter()
            .filter(|e| matches!(e, Event::CaseVerdict { .. }))
            .count();
        assert_eq!(verdicts, 3);
    }

    #[test]
    fn it_stops_as_soon_as_every_case_is_decided() {
        let names = vec!["a".to_string()];
        let runs = Cell::new(0);
        let (results, stopped) = one_hour(&names)
            .run(
                &|| Duration::from_secs(runs.get()),
                &|_| {},
                &Shutdown::new(),
                &mut |_, _, order| {
                    runs.set(runs.get() + 1);
                    Ok(vec![(order[0], trial(100.0), trial(150.0))])
                },
            )
            .unwrap();
        assert_eq!(runs.get(), family::look_trials(1, 1, ALPHA) as u64);
        assert_eq!(results[0].verdict, Verdict::Regression);
        assert_eq!(stopped, "every case decided");
    }

    #[test]
    fn an_interrupt_stops_before_the_next_trial() {
        let names = vec!["a".to_string()];
        let shutdown = Shutdown::new();
        let runs = Cell::new(0);
        let e = one_hour(&names)
            .run(
                &|| Duration::ZERO,
                &|_| {},
                &shutdown,
                &mut |_, _, order| {
                    runs.set(runs.get() + 1);
                    shutdown.trigger();
                    Ok(vec![(order[0], trial(1.0), trial(1.0))])
                },
            )
            .unwrap_err();
        assert_eq!(runs.get(), 1);
        assert!(e.to_string().contains("interrupted"));
    }
}
