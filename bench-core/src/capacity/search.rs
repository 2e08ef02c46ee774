//! The search for the highest rate that holds the objective: bracket, then bisect, then
//! verify. It only decides which rate to try next from the verdicts so far
//! ([`judge`](super::judge) decides each rate); whoever runs the trials asks it.
//!
//! - **Bracket**: from the start rate, double until a rate fails and halve until one
//!   passes.
//! - **Bisect** between the highest passing rate and the lowest failing one, at their
//!   geometric middle, until the two are within the resolution. A rate left undecided
//!   (at the objective within the machine's noise) cannot narrow the bracket: the search
//!   then bisects the gaps between it and the decided rates on either side, and stops
//!   when those are within the resolution. The answer's interval then spans the
//!   undecided rates, wider than the resolution, and says so.
//! - **Verify**: the objective holds at 0.9 r* and does not at 1.1 r*, each decided by
//!   its own trials; otherwise the answer is marked unverified, with what was seen.
//!
//! r* is the highest passing rate (never a rate that was not seen to pass); its interval
//! is [r*, the lowest failing rate].

use super::judge::RateVerdict;

/// What the search is told at the start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// The first rate tried, requests/s.
    pub start: f64,
    /// The bracket's relative width to stop at: 0.02 stops at hi ≤ 1.02 lo.
    pub resolution: f64,
    /// No rate below or above these is tried.
    pub min_rate: f64,
    pub max_rate: f64,
}

/// What the search wants next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Decide this rate.
    Try(f64),
    Done(Outcome),
}

/// Where it ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Found(Answer),
    /// No rate passed down to the lowest the search may try (which failed, or stayed
    /// undecided).
    NothingPasses {
        lowest_tried: f64,
    },
    /// Even the highest rate allowed passes.
    EverythingPasses {
        highest_tried: f64,
    },
    /// The generator, not the server, was the limit at this rate.
    GeneratorBound {
        rate: f64,
        why: String,
    },
    /// A rate's trials did not count, repeatedly.
    Invalid {
        rate: f64,
        why: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// r*, the highest rate that passed.
    pub rate: f64,
    /// [r*, the lowest rate that failed].
    pub interval: (f64, f64),
    /// Rates inside the interval that stayed undecided.
    pub undecided: Vec<f64>,
    /// `None` until verified; then whether 0.9 r* passed and 1.1 r* failed, and if not,
    /// what each did.
    pub verified: Option<Result<(), String>>,
}

impl Answer {
    /// The interval's width relative to r*.
    pub fn width(&self) -> f64 {
        self.interval.1 / self.interval.0 - 1.0
    }
}

/// The rates tried and their verdicts, and what comes next.
#[derive(Clone, Debug)]
pub struct Search {
    pub settings: Settings,
    /// Every decided rate, in the order tried.
    pub tried: Vec<(f64, RateVerdict)>,
    /// The answer waiting for verification, and the verification's verdicts so far.
    verifying: Option<(Answer, Vec<(f64, RateVerdict)>)>,
    done: Option<Outcome>,
}

impl Search {
    pub fn new(settings: Settings) -> Search {
        Search {
            settings,
            tried: Vec::new(),
            verifying: None,
            done: None,
        }
    }

    /// Whether the rates asked for now verify an answer (0.9 and 1.1 times it).
    pub fn verifying(&self) -> bool {
        self.verifying.is_some()
    }

    /// Records the verdict of the rate [`step`](Self::step) asked for. While verifying,
    /// every verdict (a generator-bound or invalid one too) is the verification's: the
    /// answer stands, unverified, with what was seen.
    pub fn record(&mut self, rate: f64, verdict: RateVerdict) {
        if let Some((_, seen)) = &mut self.verifying {
            seen.push((rate, verdict));
            return;
        }
        match verdict {
            RateVerdict::GeneratorBound(why) => {
                self.done = Some(Outcome::GeneratorBound { rate, why });
            }
            RateVerdict::Invalid(why) => self.done = Some(Outcome::Invalid { rate, why }),
            verdict => self.tried.push((rate, verdict)),
        }
    }

    /// The highest passing rate below the lowest failing one, and that failing rate.
    pub fn bracket(&self) -> (Option<f64>, Option<f64>) {
        let hi = self
            .tried
            .iter()
            .filter(|(_, v)| *v == RateVerdict::Fail)
            .map(|&(r, _)| r)
            .reduce(f64::min);
        let lo = self
            .tried
            .iter()
            .filter(|(r, v)| *v == RateVerdict::Pass && hi.is_none_or(|h| *r < h))
            .map(|&(r, _)| r)
            .reduce(f64::max);
        (lo, hi)
    }

    /// What to do next.
    pub fn step(&mut self) -> Step {
        if let Some(outcome) = &self.done {
            return Step::Done(outcome.clone());
        }
        if let Some((answer, seen)) = &self.verifying {
            let checks = [(0.9, RateVerdict::Pass), (1.1, RateVerdict::Fail)];
            if let Some(&(factor, _)) = checks.get(seen.len()) {
                return Step::Try(answer.rate * factor);
            }
            let mut answer = answer.clone();
            let wrong: Vec<String> = checks
                .iter()
                .zip(seen)
                .filter(|((_, want), (_, got))| got != want)
                .map(|((factor, want), (rate, got))| {
                    let why = match got {
                        RateVerdict::GeneratorBound(why) | RateVerdict::Invalid(why) => {
                            format!(" ({why})")
                        }
                        _ => String::new(),
                    };
                    format!(
                        "{factor} r* ({rate:.0}/s): {}{why}, not {}",
                        got.label(),
                        want.label()
                    )
                })
                .collect();
            answer.verified = Some(match wrong.is_empty() {
                true => Ok(()),
                false => Err(wrong.join("; ")),
            });
            let outcome = Outcome::Found(answer);
            self.done = Some(outcome.clone());
            return Step::Done(outcome);
        }
        let s = self.settings;
        let rates = || self.tried.iter().map(|&(r, _)| r);
        let (lo, hi) = self.bracket();
        let Some(lo) = lo else {
            // Nothing passes yet: halve below the lowest rate tried.
            let Some(lowest) = rates().reduce(f64::min) else {
                return Step::Try(s.start.clamp(s.min_rate, s.max_rate));
            };
            if lowest <= s.min_rate {
                return self.finish(Outcome::NothingPasses {
                    lowest_tried: lowest,
                });
            }
            return Step::Try((lowest / 2.0).max(s.min_rate));
        };
        let Some(hi) = hi else {
            // Nothing fails yet: double above the highest.
            let highest = rates().reduce(f64::max).unwrap_or(lo);
            if highest >= s.max_rate {
                return self.finish(Outcome::EverythingPasses {
                    highest_tried: highest,
                });
            }
            return Step::Try((highest * 2.0).min(s.max_rate));
        };
        // Bisect the widest gap that a decided rate bounds and that is over the resolution.
        let mut points: Vec<(f64, bool)> = vec![(lo, true), (hi, true)];
        points.extend(
            self.tried
                .iter()
                .filter(|(r, v)| *v == RateVerdict::Undecided && *r > lo && *r < hi)
                .map(|&(r, _)| (r, false)),
        );
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let gap = points
            .windows(2)
            .filter(|w| (w[0].1 || w[1].1) && w[1].0 / w[0].0 - 1.0 > s.resolution)
            .max_by(|a, b| (a[1].0 / a[0].0).total_cmp(&(b[1].0 / b[0].0)));
        if let Some(w) = gap {
            return Step::Try((w[0].0 * w[1].0).sqrt());
        }
        let undecided = points.iter().filter(|p| !p.1).map(|p| p.0).collect();
        self.verifying = Some((
            Answer {
                rate: lo,
                interval: (lo, hi),
                undecided,
                verified: None,
            },
            Vec::new(),
        ));
        self.step()
    }

    fn finish(&mut self, outcome: Outcome) -> Step {
        self.done = Some(outcome.clone());
        Step::Done(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            start: 10_000.0,
            resolution: 0.02,
            min_rate: 100.0,
            max_rate: 10_000_000.0,
        }
    }

    /// Runs a search against a rule that decides every rate.
    fn run(settings: Settings, mut rule: impl FnMut(f64) -> RateVerdict) -> (Outcome, Vec<f64>) {
        let mut search = Search::new(settings);
        let mut asked = Vec::new();
        loop {
            match search.step() {
                Step::Try(rate) => {
                    asked.push(rate);
                    assert!(asked.len() < 100, "the search does not end: {asked:?}");
                    search.record(rate, rule(rate));
                }
                Step::Done(outcome) => return (outcome, asked),
            }
        }
    }

    fn cliff(capacity: f64) -> impl FnMut(f64) -> RateVerdict {
        move |r| match r <= capacity {
            true => RateVerdict::Pass,
            false => RateVerdict::Fail,
        }
    }

    #[test]
    fn brackets_then_bisects_to_the_resolution_then_verifies() {
        for capacity in [150.0, 7_300.0, 10_000.0, 64_000.0, 2_500_000.0] {
            let (outcome, asked) = run(settings(), cliff(capacity));
            let Outcome::Found(answer) = outcome else {
                panic!("{capacity}: {outcome:?}");
            };
            let (lo, hi) = answer.interval;
            assert!(lo <= capacity && capacity < hi, "{capacity}: {lo}..{hi}");
            assert!(hi / lo - 1.0 <= 0.02, "{capacity}: {lo}..{hi}");
            assert_eq!(answer.rate, lo);
            assert_eq!(answer.verified, Some(Ok(())), "{capacity}");
            // Verification is the last two rates tried.
            let n = asked.len();
            assert_eq!(&asked[n - 2..], &[lo * 0.9, lo * 1.1]);
            assert!(n <= 20, "{capacity}: {n} rates: {asked:?}");
        }
    }

    #[test]
    fn the_ends_of_the_range_are_answers_of_their_own() {
        let (outcome, _) = run(settings(), |_| RateVerdict::Fail);
        assert_eq!(
            outcome,
            Outcome::NothingPasses {
                lowest_tried: 100.0
            }
        );
        let (outcome, _) = run(settings(), |_| RateVerdict::Pass);
        assert_eq!(
            outcome,
            Outcome::EverythingPasses {
                highest_tried: 10_000_000.0
            }
        );
    }

    #[test]
    fn a_generator_bound_or_invalid_rate_stops_the_search_saying_why() {
        let (outcome, _) = run(settings(), |r| match r < 30_000.0 {
            true => RateVerdict::Pass,
            false => RateVerdict::GeneratorBound("busy".into()),
        });
        assert_eq!(
            outcome,
            Outcome::GeneratorBound {
                rate: 40_000.0,
                why: "busy".into()
            }
        );
        let (outcome, _) = run(settings(), |_| RateVerdict::Invalid("late".into()));
        assert!(matches!(outcome, Outcome::Invalid { rate, .. } if rate == 10_000.0));
    }

    #[test]
    fn undecided_rates_widen_the_interval_and_are_named() {
        // Pass to 9,500, undecided to 10,500, fail above.
        let (outcome, _) = run(settings(), |r| {
            if r <= 9_500.0 {
                RateVerdict::Pass
            } else if r <= 10_500.0 {
                RateVerdict::Undecided
            } else {
                RateVerdict::Fail
            }
        });
        let Outcome::Found(answer) = outcome else {
            panic!("{outcome:?}");
        };
        let (lo, hi) = answer.interval;
        assert!((9_500.0 / 1.02..=9_500.0).contains(&lo), "{lo}");
        assert!((10_500.0..=10_500.0 * 1.02).contains(&hi), "{hi}");
        assert!(!answer.undecided.is_empty());
        assert!(
            answer
                .undecided
                .iter()
                .all(|&u| u > 9_500.0 && u <= 10_500.0)
        );
        // 1.1 r* falls in the undecided band: the objective may still hold there, so the
        // answer is not verified, and says where.
        let Some(Err(why)) = &answer.verified else {
            panic!("{answer:?}");
        };
        assert!(
            why.contains("1.1 r*") && why.contains("undecided, not fail"),
            "{why}"
        );
    }

    #[test]
    fn a_verification_that_cannot_run_leaves_the_answer_unverified() {
        // 1.1 r* hits the generator's limit: the answer stands, unverified.
        let (mut best, mut worst) = (0.0f64, f64::INFINITY);
        let (outcome, _) = run(settings(), |r| {
            if (r / (1.1 * best) - 1.0).abs() < 1e-9 {
                return RateVerdict::GeneratorBound("busy".into());
            }
            let v = cliff(10_000.0)(r);
            match v {
                RateVerdict::Pass if r < worst => best = best.max(r),
                _ => worst = worst.min(r),
            }
            v
        });
        let Outcome::Found(answer) = outcome else {
            panic!("{outcome:?}");
        };
        let Some(Err(why)) = &answer.verified else {
            panic!("{answer:?}");
        };
        assert!(why.contains("generator-bound (busy), not fail"), "{why}");
    }

    #[test]
    fn a_lucky_pass_is_caught_by_verification() {
        // True capacity 10,000; the first trial of 12,000 passes by luck, then the rule
        // is honest: 0.9 × 12,000 = 10,800 fails.
        let mut lucky = true;
        let (outcome, _) = run(
            Settings {
                start: 12_000.0,
                ..settings()
            },
            |r| {
                if r == 12_000.0 && lucky {
                    lucky = false;
                    return RateVerdict::Pass;
                }
                cliff(10_000.0)(r)
            },
        );
        let Outcome::Found(answer) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(answer.rate, 12_000.0);
        let Some(Err(why)) = &answer.verified else {
            panic!("a lucky pass verified: {answer:?}");
        };
        assert!(why.contains("0.9 r*"), "{why}");
    }
}
