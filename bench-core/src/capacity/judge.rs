//! Whether one offered rate holds the objective.
//!
//! A trial is judged first by its guards. One the generator could not drive (its thread
//! near saturation, where the engine measures it) or that had errors the objective does
//! not allow is *invalid*, not failed, and says why. One that did not sustain its rate
//! (completed under 0.99 of it) or had more errors than allowed is *broken*: it counts
//! against the rate whatever its latency, since the requests never sent are not in its
//! histogram. Late sends do not make a trial invalid: the latency counts from the
//! intended send times, so lateness can only make a trial look worse, never better.
//! Whether a trial's lateness, or its unsustained rate, was the generator's or a full
//! window's (the server's) is not told apart yet; trials record their late sends.
//! Each bound's percentile becomes an interval from the trial's HDR counts: the values
//! at ranks n·q ∓ 1.96·√(n·q·(1−q)) (+1 at the top), the binomial's normal
//! approximation of the order-statistic interval of a quantile (Conover 1999, *Practical
//! Nonparametric Statistics*, §3.2), its ends taken at the buckets' outer edges.
//!
//! The rate is then decided by a sequential test over its trials, each on a fresh server:
//! one trial never decides (trials seconds apart differ more than one trial's sampling
//! error says: the machine's speed drifts). From two trials on, per bound, a one-sided t
//! bound at α = 0.01 on the logarithms of the trials' interval ends: *pass* when the upper
//! confidence bound of the trials' upper ends is under the objective for every bound and
//! no trial is broken, *fail* when the lower confidence bound of the lower ends is over it
//! for some bound, or two trials are broken. Up to [`MAX_TRIALS`] trials, so at most five
//! looks: for one bound the chance that a rate is called wrongly stays under 5%
//! (Bonferroni over the looks); with k bounds a false fail is up to k times that. A rate
//! still open after them is *undecided*: its latency sits at the objective within the
//! machine's noise (or one trial of it was broken and the rest were not).

use hdrhistogram::Histogram;

use super::objective::Objective;

/// Trials with measurements at one rate, at most.
pub const MAX_TRIALS: usize = 6;
/// Invalid trials at one rate before the rate itself is given up as invalid.
pub const MAX_INVALID: usize = 3;

/// What a trial at one rate measured.
#[derive(Clone, Debug)]
pub struct Trial {
    /// Requests per second asked for.
    pub offered: f64,
    /// Requests per second completed.
    pub achieved: f64,
    pub requests: u64,
    pub errors: u64,
    /// Sends 1 ms or more behind their intended time.
    pub late_sends: u64,
    /// The busiest generator thread's share of the run spent working (0 to 1), where the
    /// engine measures it.
    pub client_busy: Option<f64>,
    /// Every measured request's latency, µs.
    pub histogram: Histogram<u64>,
}

/// When a trial does not count, or counts against its rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guards {
    /// Achieved over offered, at least (default 0.99). Below it the rate was not sustained
    /// and the trial is broken: the requests never sent are not in its histogram, so its
    /// latency cannot pass it. (With a bounded window per connection, a server that falls
    /// behind fills the windows and the sends wait; a generator that ran out of CPU would
    /// look the same, and is not told apart yet.)
    pub min_achieved: f64,
    /// A generator thread busier than this (default 0.9) is the limit, not the server.
    pub max_client_busy: f64,
}

impl Default for Guards {
    fn default() -> Guards {
        Guards {
            min_achieved: 0.99,
            max_client_busy: 0.9,
        }
    }
}

/// One trial, judged.
#[derive(Clone, Debug, PartialEq)]
pub enum Judged {
    /// Per bound of the objective (in its order), the percentile's interval, µs; and why
    /// the trial fails whatever its latency (more errors than the objective allows, or a
    /// rate not sustained), if it does.
    Measured {
        percentiles: Vec<(f64, f64)>,
        broken: Option<String>,
    },
    Invalid(Invalid),
}

/// Why a trial does not count.
#[derive(Clone, Debug, PartialEq)]
pub enum Invalid {
    /// The generator was the limit: no rate above this one can be measured with it.
    GeneratorBound(String),
    Other(String),
}

impl Invalid {
    pub fn why(&self) -> &str {
        match self {
            Invalid::GeneratorBound(why) | Invalid::Other(why) => why,
        }
    }
}

/// Judges one trial by `guards` and `objective`.
pub fn judge(trial: &Trial, objective: &Objective, guards: &Guards) -> Judged {
    let invalid = |why: String| Judged::Invalid(Invalid::Other(why));
    if let Some(busy) = trial.client_busy.filter(|&b| b > guards.max_client_busy) {
        return Judged::Invalid(Invalid::GeneratorBound(format!(
            "the generator was busy {:.0}% of the time at {:.0}/s: it, not the server, is the limit (more --threads, or another client host)",
            busy * 100.0,
            trial.offered
        )));
    }
    if trial.histogram.is_empty() {
        return invalid("no request was measured".into());
    }
    let mut broken = match objective.max_errors {
        None if trial.errors > 0 => {
            return invalid(format!(
                "{} errors: a trial with errors measured something else (allow some with errors<=N)",
                trial.errors
            ));
        }
        Some(max) if trial.errors > max => {
            Some(format!("{} errors, more than {max}", trial.errors))
        }
        _ => None,
    };
    let percentiles: Vec<(f64, f64)> = objective
        .bounds
        .iter()
        .map(|b| percentile_interval(&trial.histogram, b.percentile / 100.0))
        .collect();
    let achieved = trial.achieved / trial.offered;
    // Requests the rate would have completed beyond those that were: a request or two at
    // a window's edge is no shortfall.
    let missing = trial.requests as f64 * (trial.offered / trial.achieved.max(1e-9) - 1.0);
    if broken.is_none() && achieved < guards.min_achieved && missing > 2.0 {
        // Shown rounded down, so a share just under the guard never reads as equal to it.
        let shown = (achieved * 1000.0).floor() / 1000.0;
        broken = Some(format!(
            "completed {:.0}/s of {:.0}/s offered ({shown:.3}, under {}): the rate was not sustained",
            trial.achieved, trial.offered, guards.min_achieved
        ));
    }
    Judged::Measured {
        percentiles,
        broken,
    }
}

/// The interval of quantile `q` (0 to 1) of the values counted in `h`: the values at the
/// ranks n·q ∓ 1.96·√(n·q·(1−q)), widened to their buckets' edges.
pub fn percentile_interval(h: &Histogram<u64>, q: f64) -> (f64, f64) {
    let n = h.len() as f64;
    let spread = 1.96 * (n * q * (1.0 - q)).sqrt();
    let low_rank = ((n * q - spread).floor() as u64).max(1);
    let high_rank = ((n * q + spread).ceil() as u64 + 1).min(h.len()).max(1);
    let low = value_at_rank(h, low_rank);
    let high = value_at_rank(h, high_rank);
    (
        h.lowest_equivalent(low) as f64,
        h.highest_equivalent(high) as f64,
    )
}

/// The `rank`-th smallest value counted (1-based).
fn value_at_rank(h: &Histogram<u64>, rank: u64) -> u64 {
    let mut seen = 0;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= rank {
            return v.value_iterated_to();
        }
    }
    h.max()
}

/// One rate's decision.
#[derive(Clone, Debug, PartialEq)]
pub enum RateVerdict {
    Pass,
    Fail,
    /// At the objective within the noise: [`MAX_TRIALS`] trials did not decide it.
    Undecided,
    /// The generator is the limit; the search stops.
    GeneratorBound(String),
    /// [`MAX_INVALID`] trials did not count; the last one's reason.
    Invalid(String),
}

impl RateVerdict {
    /// One word for it, as reports print it.
    pub fn label(&self) -> &'static str {
        match self {
            RateVerdict::Pass => "pass",
            RateVerdict::Fail => "fail",
            RateVerdict::Undecided => "undecided",
            RateVerdict::GeneratorBound(_) => "generator-bound",
            RateVerdict::Invalid(_) => "invalid",
        }
    }
}

/// One-sided t quantiles at α = 0.01 for 1 to 9 degrees of freedom (NIST/SEMATECH
/// e-Handbook of Statistical Methods, table 1.3.6.7.2, column 0.99).
const T_99: [f64; 9] = [
    31.821, 6.965, 4.541, 3.747, 3.365, 3.143, 2.998, 2.896, 2.821,
];

/// The trials at one rate so far, and what they decide.
#[derive(Clone, Debug, Default)]
pub struct RateTest {
    pub trials: Vec<Judged>,
}

impl RateTest {
    pub fn add(&mut self, judged: Judged) {
        self.trials.push(judged);
    }

    /// The rate's verdict, or `None` while it needs another trial.
    pub fn verdict(&self, objective: &Objective) -> Option<RateVerdict> {
        let mut measured = Vec::new();
        let mut invalid = Vec::new();
        for t in &self.trials {
            match t {
                Judged::Invalid(Invalid::GeneratorBound(why)) => {
                    return Some(RateVerdict::GeneratorBound(why.clone()));
                }
                Judged::Invalid(Invalid::Other(why)) => invalid.push(why.clone()),
                Judged::Measured {
                    percentiles,
                    broken,
                } => measured.push((percentiles, broken.is_some())),
            }
        }
        // What the measured trials decide comes first: invalid ones beside them do not
        // undo it. Only a rate they leave open is given up after too many invalid trials.
        let decided = Self::decide(&measured, objective);
        if decided.is_none() && invalid.len() >= MAX_INVALID {
            return Some(RateVerdict::Invalid(invalid.pop().unwrap_or_default()));
        }
        decided
    }

    /// What the measured trials (each its percentiles' intervals and whether its errors
    /// were over) decide.
    fn decide(measured: &[(&Vec<(f64, f64)>, bool)], objective: &Objective) -> Option<RateVerdict> {
        let n = measured.len();
        if n < 2 {
            return None;
        }
        // Two trials broken (errors over the allowance, the rate not sustained) fail it.
        if measured.iter().filter(|(_, over)| *over).count() >= 2 {
            return Some(RateVerdict::Fail);
        }
        let t = T_99[n - 2];
        let mut all_pass = measured.iter().all(|(_, over)| !over);
        for (i, bound) in objective.bounds.iter().enumerate() {
            let limit = bound.max_us.ln();
            let highs: Vec<f64> = measured.iter().map(|(p, _)| p[i].1.ln()).collect();
            let lows: Vec<f64> = measured.iter().map(|(p, _)| p[i].0.ln()).collect();
            let (hm, hs) = mean_sd(&highs);
            let (lm, ls) = mean_sd(&lows);
            let root = (n as f64).sqrt();
            if lm - t * ls / root > limit {
                return Some(RateVerdict::Fail);
            }
            if hm + t * hs / root >= limit {
                all_pass = false;
            }
        }
        if all_pass {
            return Some(RateVerdict::Pass);
        }
        (n >= MAX_TRIALS).then_some(RateVerdict::Undecided)
    }
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    fn trial(offered: f64, values: impl IntoIterator<Item = u64>) -> Trial {
        let histogram = histogram(values);
        Trial {
            offered,
            achieved: offered,
            requests: histogram.len(),
            errors: 0,
            late_sends: 0,
            client_busy: Some(0.3),
            histogram,
        }
    }

    fn objective(text: &str) -> Objective {
        Objective::parse(text).unwrap()
    }

    #[test]
    fn a_percentiles_interval_brackets_its_rank() {
        // 1..=10000: p99 is 9900; ±1.96·√(10000·0.99·0.01) ≈ ±19.5 ranks.
        let h = histogram(1..=10_000);
        let (low, high) = percentile_interval(&h, 0.99);
        assert!((9870.0..=9885.0).contains(&low), "{low}");
        assert!((9915.0..=9930.0).contains(&high), "{high}");
        // Few values: the interval reaches the ends.
        let h = histogram([5, 6, 7]);
        let (low, high) = percentile_interval(&h, 0.5);
        assert_eq!((low, high), (5.0, 7.0));
    }

    #[test]
    fn guards_make_a_trial_invalid_not_failed() {
        let o = objective("p99<=1ms");
        let good = trial(1000.0, 100..600);
        assert!(matches!(
            judge(&good, &o, &Guards::default()),
            Judged::Measured { .. }
        ));

        let busy = Trial {
            client_busy: Some(0.95),
            ..good.clone()
        };
        assert!(matches!(
            judge(&busy, &o, &Guards::default()),
            Judged::Invalid(Invalid::GeneratorBound(_))
        ));
        let short = Trial {
            achieved: 950.0,
            ..good.clone()
        };
        // 29 of 30 a second over one second is a request at the window's edge.
        let edge = Trial {
            offered: 30.0,
            achieved: 29.0,
            ..trial(30.0, 100..129)
        };
        assert!(matches!(
            judge(&edge, &o, &Guards::default()),
            Judged::Measured { .. }
        ));
        let Judged::Measured {
            broken: Some(why), ..
        } = judge(&short, &o, &Guards::default())
        else {
            panic!("a rate not sustained fails the trial");
        };
        assert!(why.contains("completed 950/s of 1000/s"), "{why}");
        // Just under the guard reads as under it, not as 0.990.
        let just_under = Trial {
            achieved: 989.72,
            requests: 100_000,
            ..short.clone()
        };
        let Judged::Measured {
            broken: Some(why), ..
        } = judge(&just_under, &o, &Guards::default())
        else {
            panic!("0.98972 of the rate is under 0.99");
        };
        assert!(why.contains("(0.989, under 0.99)"), "{why}");
        // Late sends are in the latency (counted from the intended send times): they can
        // only make a trial fail, so they do not make it invalid.
        let late = Trial {
            late_sends: 50,
            ..good.clone()
        };
        assert!(matches!(
            judge(&late, &o, &Guards::default()),
            Judged::Measured { .. }
        ));
        let errors = Trial {
            errors: 3,
            ..good.clone()
        };
        let Judged::Invalid(Invalid::Other(why)) = judge(&errors, &o, &Guards::default()) else {
            panic!("errors the objective does not allow make a trial invalid");
        };
        assert!(why.contains("3 errors"), "{why}");
        // With an allowance, they are judged: over it, the trial fails.
        let Judged::Measured { broken, .. } = judge(
            &errors,
            &objective("p99<=1ms,errors<=2"),
            &Guards::default(),
        ) else {
            panic!("errors within the objective are measured");
        };
        assert_eq!(broken.as_deref(), Some("3 errors, more than 2"));
        // A server that cannot keep up: behind schedule and clearly over the bound.
        let overloaded = Trial {
            achieved: 800.0,
            late_sends: 500,
            ..trial(1000.0, 5000..9000)
        };
        let Judged::Measured { broken, .. } = judge(&overloaded, &o, &Guards::default()) else {
            panic!("an overloaded server is measured");
        };
        assert!(broken.is_some_and(|why| why.contains("not sustained")));
    }

    fn decide(o: &Objective, trials: &[Trial]) -> Option<RateVerdict> {
        let mut test = RateTest::default();
        for t in trials {
            test.add(judge(t, o, &Guards::default()));
        }
        test.verdict(o)
    }

    #[test]
    fn one_trial_never_decides_a_rate() {
        let o = objective("p99<=1ms");
        assert_eq!(decide(&o, &[trial(1000.0, 100..500)]), None);
        assert_eq!(
            decide(&o, &[trial(1000.0, 100..500), trial(1000.0, 110..520)]),
            Some(RateVerdict::Pass)
        );
        assert_eq!(
            decide(&o, &[trial(1000.0, 2000..5000), trial(1000.0, 2100..5200)]),
            Some(RateVerdict::Fail)
        );
    }

    #[test]
    fn trials_that_disagree_take_more_trials_then_leave_the_rate_undecided() {
        let o = objective("p99<=1ms");
        // p99 about 900 and 1100 µs: the bound is within their spread.
        let trials: Vec<Trial> = (0..MAX_TRIALS)
            .map(|i| match i % 2 {
                0 => trial(1000.0, 0..910),
                _ => trial(1000.0, 0..1110),
            })
            .collect();
        for n in 2..MAX_TRIALS {
            assert_eq!(decide(&o, &trials[..n]), None, "after {n} trials");
        }
        assert_eq!(decide(&o, &trials), Some(RateVerdict::Undecided));
    }

    #[test]
    fn invalid_trials_are_retried_then_the_rate_is_given_up() {
        let o = objective("p99<=1ms");
        let errors = Trial {
            errors: 1,
            ..trial(1000.0, 100..500)
        };
        assert_eq!(decide(&o, &[errors.clone(), errors.clone()]), None);
        let three = [errors.clone(), errors.clone(), errors.clone()];
        let Some(RateVerdict::Invalid(why)) = decide(&o, &three) else {
            panic!("three invalid trials give the rate up");
        };
        assert!(why.contains("1 errors"), "{why}");
        // Invalid trials beside ones that decide do not undo the decision.
        let over = trial(1000.0, 2000..5000);
        let mixed = [errors.clone(), over.clone(), errors.clone(), errors, over];
        assert_eq!(decide(&o, &mixed), Some(RateVerdict::Fail));
        // Two trials that did not sustain the rate fail it, however fast their replies.
        let short = Trial {
            achieved: 900.0,
            ..trial(1000.0, 100..500)
        };
        assert_eq!(decide(&o, std::slice::from_ref(&short)), None);
        assert_eq!(decide(&o, &[short.clone(), short]), Some(RateVerdict::Fail));
        let busy = Trial {
            client_busy: Some(0.99),
            ..trial(1000.0, 100..500)
        };
        assert!(matches!(
            decide(&o, &[busy]),
            Some(RateVerdict::GeneratorBound(_))
        ));
    }

    #[test]
    fn every_bound_must_hold_and_one_broken_fails() {
        let o = objective("p50<=400us,p99<=1.2ms");
        // p50 ≈ 250 µs, p99 ≈ 495 µs: both hold.
        let ok = [trial(1000.0, 0..500), trial(1000.0, 0..505)];
        assert_eq!(decide(&o, &ok), Some(RateVerdict::Pass));
        // p50 ≈ 500 µs breaks the first bound though p99 holds.
        let slow_median = [trial(1000.0, 0..1000), trial(1000.0, 0..1005)];
        assert_eq!(decide(&o, &slow_median), Some(RateVerdict::Fail));
    }
}
