//! Verdicts that hold for a whole comparison: many cases, looked at more than once.
//!
//! The exit code promises that when no case changed, the run says "regression" (or
//! "improvement") for any case with probability at most [`ALPHA`], however many cases the
//! suite has and however often the trials are looked at. Three pieces give that:
//!
//! - **Per case**: the exact two-sided sign test of the per-trial log ratios
//!   (`sign_test`). Under "no change", with trials in rotated order on fresh servers, each
//!   trial's ratio is as likely above 1 as below it, whatever the noise's shape. (The
//!   Wilcoxon signed-rank test was tried in its place: in the simulation below, where one
//!   trial in ten carries a ±40% regime flip, it found 406 of the 500 slow cases against
//!   the sign test's 498 and blamed an unchanged one, because a flip gets the largest
//!   rank; the sign test counts it once.)
//! - **Across cases**: Holm's step-down procedure (Holm 1979, "A simple sequentially
//!   rejective multiple test procedure", *Scand. J. Statist.* 6:65–70). It controls the
//!   family-wise error rate at the level it is run at under any dependence between cases,
//!   and rejects at least what Bonferroni does. [`holm_adjusted`] gives each case's adjusted
//!   p-value, shown beside the raw one.
//! - **Across looks**: looks happen at trial counts fixed before the first trial
//!   ([`look_trials`]), not after every trial, at most [`MAX_LOOKS`] of them, and look `k`
//!   spends [`look_alpha`]`(k)` of α: a third at the first look, and 2α/21 at each of the
//!   seven after it, α in all. By the union bound the run's error stays under α whatever
//!   the looks' correlation: a conservative alpha-spending plan in the sense of Lan &
//!   DeMets (1983, "Discrete sequential boundaries for clinical trials", *Biometrika*
//!   70:659–663; Jennison & Turnbull 2000, *Group Sequential Methods*, ch. 7). The first
//!   plan (2/3 at the first look, the rest decaying as 1/k²) left a single case with 36
//!   trials, −4.2% and an interval of −6.4% .. −2.3% inconclusive at p = 0.0039 against a
//!   look share of 0.00028: the later looks, where a small change is found, need their
//!   share.
//! - **The first look comes when a call is possible.** The sign test's smallest p-value on
//!   n trials is 2 · 0.5ⁿ, and Holm's strictest step over m cases is α₁/m, so the first
//!   look is at the least n ≥ 6 with 2 · 0.5ⁿ ≤ α₁/m: 7 trials for one case, 10 for 5, 12
//!   for 20 or 32. Later looks come at about ×4/3 the trials (12, 16, 22, 30, ...), which keeps
//!   every later look able to call a case too. That is the price of a suite-wide
//!   promise: fewer cases in the time trials (screened by exact counts first) make it
//!   cheaper.
//!
//! A case is a **regression** (or improvement) at a look when Holm rejects it at that
//! look's α and its point estimate is past the threshold in that direction. It is **no
//! change** when its distribution-free 95% interval of the median ([`median_interval`])
//! lies inside ±threshold. Otherwise it stays open for the next look; a case still open
//! when the time is up is **inconclusive**, with its minimum detectable effect. Decided
//! cases get no more trials, but they stay in the family with p = 1: Holm's steps at
//! every look are those of all m cases (α/m for the smallest p, then α/(m − 1), ...).
//! A true "no change" case can then be rejected at look k only if its p-value is at most
//! α_k over the number of unchanged cases, whichever cases were decided before, so each
//! look's false-alarm chance stays under α_k.

use super::*;

/// Trials every case has at look `k` (1-based) of a comparison of `cases` cases: the first
/// look at the least n ≥ [`MIN_PAIRS`] where the sign test can reach Holm's strictest step
/// (2 · 0.5ⁿ ≤ α₁ / cases), then about ×4/3 each: for one case 7, 10, 14, 19, 26, ...;
/// for 20 cases 12, 16, 22, 30, ...
pub fn look_trials(k: usize, cases: usize, alpha: f64) -> usize {
    let strictest = look_alpha(alpha, 1) / cases.max(1) as f64;
    let mut n = MIN_PAIRS;
    while 2.0 * 0.5f64.powi(n as i32) > strictest {
        n += 1;
    }
    for _ in 1..k.max(1) {
        n = (n * 4).div_ceil(3);
    }
    n
}

/// The most looks a comparison takes; after the last one, open cases are inconclusive.
pub const MAX_LOOKS: usize = 8;

/// The share of `alpha` look `k` (1-based) may spend: a third at the first, 2/21 at each
/// of the next seven, none after [`MAX_LOOKS`]; the shares sum to `alpha`.
pub fn look_alpha(alpha: f64, k: usize) -> f64 {
    match k {
        0 | 1 => alpha / 3.0,
        k if k <= MAX_LOOKS => alpha * 2.0 / 3.0 / (MAX_LOOKS - 1) as f64,
        _ => 0.0,
    }
}

/// Holm-adjusted p-values: sorted ascending, the i-th (0-based) of m becomes
/// max over j ≤ i of min(1, (m − j)·p(j)). A hypothesis is rejected at level α exactly
/// when its adjusted p-value is ≤ α.
pub fn holm_adjusted(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The distribution-free interval of the median of `x` at confidence at least
/// `confidence`: the order statistics [x(k), x(n−k+1)] for the largest k whose coverage,
/// 1 − 2·P(Bin(n, ½) ≤ k − 1), is still ≥ `confidence` (Conover 1999, *Practical
/// Nonparametric Statistics*, §3.2). Returns (low, high, coverage), or `None` when n is
/// too small for any k (for 95%: fewer than 6 values).
pub fn median_interval(x: &[f64], confidence: f64) -> Option<(f64, f64, f64)> {
    let n = x.len();
    if n == 0 {
        return None;
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    // cdf[k] = P(Bin(n, ½) ≤ k).
    let mut cdf = Vec::with_capacity(n + 1);
    let mut sum = 0.0;
    for i in 0..=n {
        sum += (ln_choose(n, i) - n as f64 * 2f64.ln()).exp();
        cdf.push(sum);
    }
    let coverage = |k: usize| 1.0 - 2.0 * cdf[k - 1];
    let k = (1..=n / 2)
        .take_while(|&k| coverage(k) >= confidence)
        .last()?;
    Some((sorted[k - 1], sorted[n - k], coverage(k)))
}

/// One case's evidence at a look, as it is shown beside its verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The look (1-based) the verdict was reached at, or the last one for an open case.
    pub look: usize,
    /// The share of α that look spent.
    pub alpha: f64,
    /// The cases in the family (all of the comparison's).
    pub family: usize,
    /// The sign test's p-value for this case alone.
    pub raw_p: f64,
    /// Its Holm-adjusted p-value in that family.
    pub adjusted_p: f64,
}

/// What a look decides for one open case.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub evidence: Evidence,
}

/// Look `look` at the open cases' primary comparisons (each with its sign test p and
/// 95% interval) of a comparison of `cases` cases in all: which are decided, and each
/// case's evidence. The decided cases count in Holm's steps with p = 1. A case that
/// decides nothing comes back `Inconclusive` (still open).
pub fn decide(
    open: &[(&Comparison, Better)],
    cases: usize,
    look: usize,
    alpha: f64,
    threshold: f64,
) -> Vec<Decision> {
    let spend = look_alpha(alpha, look);
    let mut raw: Vec<f64> = open.iter().map(|(c, _)| c.sign_p.unwrap_or(1.0)).collect();
    let open_count = raw.len();
    raw.resize(cases.max(open_count), 1.0);
    let adjusted = holm_adjusted(&raw);
    raw.truncate(open_count);
    open.iter()
        .zip(raw.iter().zip(&adjusted))
        .map(|(&(c, better), (&raw_p, &adjusted_p))| {
            let (up, down) = (1.0 + threshold, 1.0 - threshold);
            let rejected = adjusted_p <= spend && c.pairs >= MIN_PAIRS;
            let verdict = if rejected && c.ratio > up {
                worse_if(better == Better::Lower)
            } else if rejected && c.ratio < down {
                worse_if(better == Better::Higher)
            } else if c
                .ci_low
                .zip(c.ci_high)
                .is_some_and(|(low, high)| low > down && high < up)
            {
                Verdict::NoChange
            } else {
                Verdict::Inconclusive
            };
            Decision {
                verdict,
                evidence: Evidence {
                    look,
                    alpha: spend,
                    family: cases.max(open_count),
                    raw_p,
                    adjusted_p,
                },
            }
        })
        .collect()
}

fn worse_if(worse: bool) -> Verdict {
    if worse {
        Verdict::Regression
    } else {
        Verdict::Improvement
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn looks_grow_by_a_third_and_their_alphas_sum_to_alpha() {
        let trials = |m| {
            (1..=6)
                .map(|k| look_trials(k, m, ALPHA))
                .collect::<Vec<_>>()
        };
        assert_eq!(trials(1), [7, 10, 14, 19, 26, 35]);
        assert_eq!(trials(20), [12, 16, 22, 30, 40, 54]);
        assert_eq!(trials(5)[0], 10);
        assert_eq!(trials(32)[0], 12);
        assert_eq!(trials(64)[0], 13);
        assert!(close(look_alpha(0.05, 1), 0.05 / 3.0));
        let total: f64 = (1..1000).map(|k| look_alpha(0.05, k)).sum();
        assert!(close(total, 0.05), "{total}");
        assert_eq!(look_alpha(0.05, MAX_LOOKS + 1), 0.0);
        // One case, 7 trials all one way, decides at the first look...
        assert!(2.0 * 0.5f64.powi(7) <= look_alpha(0.05, 1));
        // ...and every look can call a case at its trial count, for any family size.
        for m in [1, 5, 20, 32, 100] {
            for k in 1..=MAX_LOOKS {
                let n = look_trials(k, m, ALPHA) as i32;
                assert!(
                    2.0 * 0.5f64.powi(n) <= look_alpha(ALPHA, k) / m as f64,
                    "{m} {k}"
                );
            }
        }
    }

    #[test]
    fn holm_matches_the_textbook() {
        // Four hypotheses at 5%: sorted 0.005 ≤ 0.05/4, 0.01 ≤ 0.05/3, then 0.03 > 0.05/2
        // stops: the first two are rejected.
        let p = [0.01, 0.04, 0.03, 0.005];
        let adj = holm_adjusted(&p);
        assert!(close(adj[3], 0.02));
        assert!(close(adj[0], 0.03));
        assert!(close(adj[2], 0.06));
        assert!(close(adj[1], 0.06), "monotone: {adj:?}");
        let rejected: Vec<bool> = adj.iter().map(|a| *a <= 0.05).collect();
        assert_eq!(rejected, [true, false, false, true]);
        assert_eq!(holm_adjusted(&[0.9]), [0.9]);
        assert_eq!(holm_adjusted(&[0.6, 0.7]), [1.0, 1.0]);
        assert!(holm_adjusted(&[]).is_empty());
    }

    #[test]
    fn the_median_interval_has_its_stated_coverage() {
        let x: Vec<f64> = (1..=6).map(f64::from).collect();
        // n = 6 at 95%: k = 1, coverage 1 − 2/64.
        let (low, high, cov) = median_interval(&x, 0.95).unwrap();
        assert_eq!((low, high), (1.0, 6.0));
        assert!(close(cov, 1.0 - 2.0 / 64.0));
        assert!(
            median_interval(&x[..5], 0.95).is_none(),
            "5 values cannot reach 95%"
        );
        // n = 10: k = 2 (1 − 2·11/1024 = 97.9%); k = 3 would be 89.1%.
        let x: Vec<f64> = (1..=10).map(f64::from).collect();
        let (low, high, cov) = median_interval(&x, 0.95).unwrap();
        assert_eq!((low, high), (2.0, 9.0));
        assert!(close(cov, 1.0 - 2.0 * 11.0 / 1024.0));
        // n = 20: k = 6, coverage 95.9%.
        let x: Vec<f64> = (1..=20).map(f64::from).collect();
        let (low, high, cov) = median_interval(&x, 0.95).unwrap();
        assert_eq!((low, high), (6.0, 15.0));
        assert!((cov - 0.9586).abs() < 1e-4, "{cov}");
    }

    /// Simulated per-trial log ratios with a fixed seed: noise of `spread` (relative)
    /// with one trial in ten hit by a regime flip of ±40% that the slice median did not
    /// absorb, shifted by `shift`.
    fn trial_logs(rng: &mut SmallRng, n: usize, shift: f64, spread: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let mut x = shift + spread * (rng.random::<f64>() - 0.5) * 2.0;
                if rng.random_range(0..10) == 0 {
                    x += if rng.random::<bool>() { 0.4 } else { -0.4 };
                }
                x
            })
            .collect()
    }

    /// A whole comparison as the schedule runs it: looks at `look_trials`, decided cases
    /// get no more trials, at most `looks` looks. Returns the verdicts.
    fn simulate(rng: &mut SmallRng, shifts: &[f64], spread: f64, looks: usize) -> Vec<Verdict> {
        let m = shifts.len();
        let n_max = look_trials(looks, m, ALPHA);
        let logs: Vec<Vec<f64>> = shifts
            .iter()
            .map(|&s| trial_logs(rng, n_max, s, spread))
            .collect();
        let mut verdicts = vec![Verdict::Inconclusive; shifts.len()];
        for look in 1..=looks {
            let n = look_trials(look, m, ALPHA);
            let open: Vec<usize> = (0..shifts.len())
                .filter(|&i| verdicts[i] == Verdict::Inconclusive)
                .collect();
            if open.is_empty() {
                break;
            }
            let comparisons: Vec<Comparison> = open
                .iter()
                .map(|&i| {
                    let pairs: Vec<Vec<(f64, f64)>> =
                        logs[i][..n].iter().map(|l| vec![(1.0, l.exp())]).collect();
                    compare_grouped(&pairs, Better::Higher, 0.02)
                })
                .collect();
            let family: Vec<(&Comparison, Better)> =
                comparisons.iter().map(|c| (c, Better::Higher)).collect();
            for (d, &i) in decide(&family, m, look, ALPHA, 0.02).iter().zip(&open) {
                verdicts[i] = d.verdict;
            }
        }
        verdicts
    }

    #[test]
    fn a_suite_of_unchanged_cases_false_alarms_under_alpha() {
        // 400 simulated A/A comparisons of 20 cases, up to 6 looks (40 trials): the share
        // with any case called a regression or improvement stays under 5%.
        let mut rng = SmallRng::seed_from_u64(13);
        let runs = 400;
        let alarms = (0..runs)
            .filter(|_| {
                simulate(&mut rng, &[0.0; 20], 0.03, 6)
                    .iter()
                    .any(|v| matches!(v, Verdict::Regression | Verdict::Improvement))
            })
            .count();
        eprintln!("simulated A/A: {alarms} of {runs} comparisons of 20 cases false-alarmed");
        assert!(alarms as f64 / runs as f64 <= ALPHA, "{alarms} of {runs}");
    }

    #[test]
    fn a_six_percent_slowdown_is_found_and_the_rest_is_not_blamed() {
        // 20 cases, 5 of them 6% slower, trial noise ±3% and regime flips, up to 5 looks
        // (40 trials).
        let mut rng = SmallRng::seed_from_u64(14);
        let mut shifts = vec![0.0; 20];
        for s in &mut shifts[..5] {
            *s = (0.94f64).ln();
        }
        let runs = 100;
        let (mut found, mut blamed) = (0, 0);
        for _ in 0..runs {
            let v = simulate(&mut rng, &shifts, 0.03, 5);
            found += v[..5].iter().filter(|v| **v == Verdict::Regression).count();
            blamed += v[5..]
                .iter()
                .filter(|v| **v != Verdict::Inconclusive && **v != Verdict::NoChange)
                .count();
        }
        eprintln!(
            "simulated 6% slowdowns: {found} of {} found, {blamed} unchanged blamed",
            5 * runs
        );
        assert!(
            found as f64 >= 0.9 * (5 * runs) as f64,
            "found {found} of {}",
            5 * runs
        );
        assert_eq!(blamed, 0);
    }

    #[test]
    fn a_look_calls_only_what_survives_holm_and_passes_the_threshold() {
        let make = |logs: &[f64]| {
            let pairs: Vec<Vec<(f64, f64)>> = logs.iter().map(|l| vec![(1.0, l.exp())]).collect();
            compare_grouped(&pairs, Better::Higher, 0.02)
        };
        // All 10 trials 5% down: p = 2/1024 = 0.0020.
        let down = make(&[
            -0.05, -0.06, -0.04, -0.05, -0.055, -0.045, -0.05, -0.052, -0.049, -0.051,
        ]);
        // All 10 trials 0.5% down: as significant, but under the threshold, and the
        // interval is inside ±2%.
        let small = make(&[
            -0.005, -0.006, -0.004, -0.005, -0.0055, -0.0045, -0.005, -0.0052, -0.0049, -0.0051,
        ]);
        // Noise.
        let noise = make(&[
            0.03, -0.02, 0.01, -0.04, 0.02, -0.01, 0.05, -0.03, 0.01, -0.02,
        ]);
        let alone = decide(&[(&down, Better::Higher)], 1, 1, ALPHA, 0.02);
        assert_eq!(alone[0].verdict, Verdict::Regression);
        assert!(close(alone[0].evidence.raw_p, 2.0 / 1024.0));
        let three = decide(
            &[
                (&down, Better::Higher),
                (&small, Better::Higher),
                (&noise, Better::Higher),
            ],
            3,
            1,
            ALPHA,
            0.02,
        );
        assert_eq!(three[0].verdict, Verdict::Regression, "{three:?}");
        assert_eq!(three[1].verdict, Verdict::NoChange);
        assert_eq!(three[2].verdict, Verdict::Inconclusive);
        assert!(close(three[0].evidence.adjusted_p, 3.0 * 2.0 / 1024.0));
        assert_eq!(three[0].evidence.family, 3);
        // The same drop in a lower-is-better metric is an improvement.
        assert_eq!(
            decide(&[(&down, Better::Lower)], 1, 1, ALPHA, 0.02)[0].verdict,
            Verdict::Improvement
        );
        // In a family of 10 at the first look (α 1.67%, so 0.167% each at best), 10 trials
        // cannot call it: p·10 = 1.95% > 1.67%; nor when the other 9 were decided before
        // and only it is open: they keep their place in Holm's steps.
        let many: Vec<(&Comparison, Better)> = std::iter::once((&down, Better::Higher))
            .chain(std::iter::repeat_n((&noise, Better::Higher), 9))
            .collect();
        assert_eq!(
            decide(&many, 10, 1, ALPHA, 0.02)[0].verdict,
            Verdict::Inconclusive
        );
        let last_open = decide(&[(&down, Better::Higher)], 10, 1, ALPHA, 0.02);
        assert_eq!(last_open[0].verdict, Verdict::Inconclusive);
        assert!(close(last_open[0].evidence.adjusted_p, 10.0 * 2.0 / 1024.0));
    }
}
