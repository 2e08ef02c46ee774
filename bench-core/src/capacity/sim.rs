//! The search against a simulated server whose capacity is known: does the answer's
//! interval cover it, and does verification catch what luck let through?
//!
//! The server is a single queue (M/M/1): at rate λ and service rate μ a request's time in
//! it is exponential with rate μ − λ, so its p99 is ln(100)/(μ − λ). μ is set so that p99
//! equals the objective's bound exactly at the capacity C. Each trial runs on a "fresh
//! server" whose speed is μ·f, f lognormal with a spread of a few percent: trials seconds
//! apart on a shared machine differ like that (this VM's throughput moved ±10–20%). At or
//! past μ·f the server falls behind: it completes μ·f a second and every latency is
//! seconds. C is the capacity of the median server (f = 1).

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

struct Server {
    capacity: f64,
    mu: f64,
    spread: f64,
    requests: u64,
}

impl Server {
    fn new(capacity: f64, bound_us: f64, spread: f64, requests: u64) -> Server {
        Server {
            capacity,
            mu: capacity + 100f64.ln() / (bound_us / 1e6),
            spread,
            requests,
        }
    }

    fn trial(&self, rate: f64, rng: &mut SmallRng) -> Trial {
        let f = (self.spread * normal(rng)).exp();
        let mu = self.mu * f;
        let mut histogram = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        let achieved = rate.min(mu);
        for _ in 0..self.requests {
            let us = match mu > rate {
                true => -(1.0 - rng.random::<f64>()).ln() / (mu - rate) * 1e6,
                false => 1e6 * (1.0 + rng.random::<f64>()),
            };
            histogram.saturating_record(us.max(1.0) as u64);
        }
        Trial {
            offered: rate,
            achieved,
            requests: self.requests,
            errors: 0,
            late_sends: 0,
            client_busy: Some(0.2),
            histogram,
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut SmallRng) -> f64 {
    let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// How a rate is decided: by the sequential test, or (as the tools that search by one
/// trial per rate do) by its first trial's percentile against the bound.
#[derive(Clone, Copy, PartialEq)]
enum Rule {
    Sequential,
    OneTrial,
}

/// A rate decided from one trial: its percentiles' midpoints against the bounds.
fn one_trial(judged: &Judged, objective: &Objective) -> RateVerdict {
    match judged {
        Judged::Measured {
            broken: Some(_), ..
        } => RateVerdict::Fail,
        Judged::Measured { percentiles, .. } => {
            let over = objective
                .bounds
                .iter()
                .zip(percentiles)
                .any(|(b, (low, high))| (low + high) / 2.0 > b.max_us);
            if over {
                RateVerdict::Fail
            } else {
                RateVerdict::Pass
            }
        }
        Judged::Invalid(why) => RateVerdict::Invalid(why.why().to_string()),
    }
}

/// One whole search: its outcome and the trials it took.
fn search(
    server: &Server,
    objective: &Objective,
    start: f64,
    seed: u64,
    rule: Rule,
) -> (Outcome, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut search = Search::new(Settings {
        start,
        resolution: 0.02,
        min_rate: 100.0,
        max_rate: 1e8,
    });
    let mut trials = 0;
    loop {
        match search.step() {
            Step::Try(rate) => {
                let mut test = RateTest::default();
                let verdict = loop {
                    trials += 1;
                    let judged =
                        judge(&server.trial(rate, &mut rng), objective, &Guards::default());
                    if rule == Rule::OneTrial {
                        break one_trial(&judged, objective);
                    }
                    test.add(judged);
                    if let Some(v) = test.verdict(objective) {
                        break v;
                    }
                };
                search.record(rate, verdict);
            }
            Step::Done(outcome) => return (outcome, trials),
        }
    }
}

/// Over `runs` seeded searches: how many intervals covered the capacity, how many
/// answers were verified, the median interval width and the most trials one took.
fn coverage(spread: f64, runs: u64, rule: Rule) -> (u64, u64, f64, usize) {
    let objective = Objective::parse("p99<=1ms").unwrap();
    let (mut covered, mut verified, mut widths, mut most) = (0, 0, Vec::new(), 0);
    for seed in 0..runs {
        // Capacities from 20,000 to 200,000/s, starts anywhere from a tenth to 3×.
        let mut rng = SmallRng::seed_from_u64(1000 + seed);
        let capacity = 20_000.0 * 10f64.powf(rng.random::<f64>());
        let start = capacity * 0.1 * 30f64.powf(rng.random::<f64>());
        let server = Server::new(capacity, 1000.0, spread, 2000);
        let (outcome, trials) = search(&server, &objective, start, seed, rule);
        let Outcome::Found(answer) = outcome else {
            panic!("seed {seed}: {outcome:?}");
        };
        let (lo, hi) = answer.interval;
        covered += u64::from(lo <= server.capacity && server.capacity <= hi);
        verified += u64::from(answer.verified == Some(Ok(())));
        widths.push(answer.width());
        most = most.max(trials);
    }
    widths.sort_by(f64::total_cmp);
    (covered, verified, widths[widths.len() / 2], most)
}

#[test]
fn the_interval_covers_the_capacity_in_at_least_95_percent_of_searches() {
    // Servers that differ by 1% from trial to trial, and by 3%.
    for spread in [0.01, 0.03] {
        let (covered, verified, width, most) = coverage(spread, 100, Rule::Sequential);
        eprintln!(
            "spread {spread}: covered {covered}, verified {verified}, median width {width:.3}, at most {most} trials"
        );
        assert!(covered >= 95, "spread {spread}: covered {covered} of 100");
        // Verified: 0.9 r* holds and 1.1 r* does not. Where the noise makes the interval
        // wider than 10%, 1.1 r* lies in it and may well hold: such an answer is left
        // unverified (at 3%, about half of them), which is what it should say.
        if spread <= 0.01 {
            assert!(
                verified >= 90,
                "spread {spread}: verified {verified} of 100"
            );
        }
        // The interval is as wide as the noise makes it, not wider (measured: a median
        // of 6.7% at 1%, 11.4% at 3%; at most 69 and 77 trials).
        let widest = if spread <= 0.01 { 0.09 } else { 0.16 };
        assert!(width < widest, "spread {spread}: median width {width}");
        assert!(most <= 100, "spread {spread}: {most} trials");
    }
}

#[test]
fn one_trial_per_rate_misses_the_capacity_far_more_often() {
    // As the tools that decide each rate by one trial do: at 1% noise between trials
    // their interval covered the capacity in 39 of 100 searches.
    let (covered, _, _, _) = coverage(0.01, 100, Rule::OneTrial);
    eprintln!("one trial per rate: covered {covered} of 100");
    assert!(covered < 85, "one trial per rate covered {covered} of 100");
}

#[test]
fn without_noise_the_search_stops_at_the_resolution() {
    let objective = Objective::parse("p99<=1ms").unwrap();
    let server = Server::new(50_000.0, 1000.0, 0.0, 20_000);
    let (outcome, _) = search(&server, &objective, 10_000.0, 7, Rule::Sequential);
    let Outcome::Found(answer) = outcome else {
        panic!("{outcome:?}");
    };
    let (lo, hi) = answer.interval;
    // Sampling error alone moves the cliff by a little: within a few percent of C.
    assert!(lo <= 50_000.0 * 1.01 && hi >= 50_000.0 * 0.99, "{lo}..{hi}");
    assert!(
        answer.width() <= 0.02 || !answer.undecided.is_empty(),
        "{answer:?}"
    );
    assert_eq!(answer.verified, Some(Ok(())));
}
