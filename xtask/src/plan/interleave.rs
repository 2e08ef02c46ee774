//! A comparison's schedule: trials of baseline against candidate, the order rotating AB,
//! BA, AB, ... per case. First every case gets [`MIN_PAIRS`] trials, cases interleaved so
//! slow drift spreads over all of them; then the cases still undecided get one more trial
//! each per round, analyzed after each, until every case is decided or the next round
//! would overrun `max_time`. The schedule is pure policy: what a trial does is the
//! caller's `trial` function, and time comes from a `clock`, so the order test below runs
//! it with a mock executor and a fake clock (as hyperfine tests its scheduler).

use std::time::Duration;

use bench_core::compare::{self, CaseResult, MIN_PAIRS, Metric, Trial, TrialPair};
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
        let mut results: Vec<Option<CaseResult>> = vec![None; names.len()];
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
            emit(Event::TrialFinished {
                case: names[i].clone(),
                trial: *trials,
                pairs: pairs.len(),
            });
            anyhow::Ok(())
        };
        let analyze = |i: usize, pairs: &[TrialPair]| {
            let result =
                compare::analyze(&names[i], self.metrics, self.confirm, pairs, self.threshold);
            emit(Event::CaseVerdict {
                case: result.case.clone(),
                verdict: result.verdict.label().into(),
                change_pct: result
                    .metrics
                    .first()
                    .map_or(0.0, |m| (m.comparison.ratio - 1.0) * 100.0),
            });
            result
        };
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
        let per_trial = (clock() - started) / total_trials.max(1) as u32;
        let stopped = loop {
            let open: Vec<usize> = (0..names.len())
                .filter(|&i| !results[i].as_ref().is_some_and(|r| r.verdict.is_decided()))
                .collect();
            if open.is_empty() {
                break "every case decided".to_string();
            }
            if clock() - started + per_trial * open.len() as u32 > self.max_time {
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

fn humanize(d: Duration) -> String {
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
        }
    }

    fn trial(x: f64) -> Trial {
        Trial::from([("x".to_string(), x)])
    }

    /// Case 0 measures the same on both sides every time (decided after the minimum);
    /// case 1 swings ±40% between trials with the candidate ahead or behind at random
    /// (never decided). Each trial takes one second of the fake clock.
    #[test]
    fn the_minimum_first_interleaved_then_the_undecided_until_the_time_is_spent() {
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
        // The minimum: cases alternate, each trial's order rotates AB, BA, ...
        let first: Vec<(usize, usize, Side)> = (1..=MIN_PAIRS)
            .flat_map(|n| {
                let side = if n % 2 == 1 {
                    Side::Baseline
                } else {
                    Side::Candidate
                };
                [(0, n, side), (1, n, side)]
            })
            .collect();
        assert_eq!(calls[..2 * MIN_PAIRS], first[..]);
        // Then only the undecided case, one second per trial, until 20 s would pass.
        assert!(calls[2 * MIN_PAIRS..].iter().all(|c| c.0 == 1), "{calls:?}");
        assert_eq!(calls.len(), 20, "{calls:?}");
        assert_eq!(results[0].verdict, Verdict::NoChange);
        assert_eq!(results[1].verdict, Verdict::Unstable);
        assert_eq!(results[1].trials.len(), 20 - MIN_PAIRS);
        assert!(stopped.contains("--max-time 20s"), "{stopped}");
        // Every trial is announced before it runs and after it ends.
        let events = events.into_inner();
        let started = events
            .iter()
            .filter(|e| matches!(e, Event::TrialStarted { .. }))
            .count();
        assert_eq!(started, calls.len());
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
        assert_eq!(runs.get(), MIN_PAIRS as u64);
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
