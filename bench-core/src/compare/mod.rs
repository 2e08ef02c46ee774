//! Statistics of a baseline-versus-candidate comparison, and the verdict.
//!
//! The trials come in pairs: one baseline and one candidate run, back to back, in rotated
//! order (AB, BA, ...). Machine noise on a shared VM drifts slowly (other tenants, CPU
//! frequency, page cache), so the two halves of a pair see nearly the same machine, and the
//! ratio within a pair cancels most of the drift. Everything here works on those ratios.
//!
//! Methods, each with its reference:
//! - **Point estimate**: the median of the per-pair log ratios ln(candidate/baseline),
//!   exponentiated. Logs so that +10% and −10% are symmetric; the median because this
//!   machine's speed flips between regimes (~1.1M and ~0.65M GET/s on one server) at random
//!   moments, and a pair that straddles a flip is off by 40% or more: the median ignores a
//!   minority of such pairs where a mean would not.
//! - **95% confidence interval**: the distribution-free interval of the median from order
//!   statistics (`family::median_interval`; Conover 1999, *Practical Nonparametric
//!   Statistics*, §3.2), whose coverage is exact for any continuous distribution and is
//!   recorded beside it (`ci_coverage`). (A percentile bootstrap of the median, used
//!   before, is too narrow at 6 to 12 pairs: it once said "no change", −1.4..+1.0%, for a
//!   true −3%.) Fewer than 6 pairs cannot reach 95%: no interval.
//! - **Sign test** on the pairs (exact binomial, two-sided; Conover 1999, §3.4): assumes
//!   nothing about the noise distribution.
//! - **Mann-Whitney U** on the two sides as independent samples (two-sided; exact
//!   distribution for small samples without ties, else the normal approximation with tie
//!   and continuity corrections; Conover §5.1). Reported beside the paired test: if only
//!   the paired test sees a change, the pairing is doing the work.
//! - **Coefficient of variation** per side: sample standard deviation / mean.
//! - **Minimum detectable effect** at 5% significance and 80% power for the pairs run:
//!   `(z₀.₉₇₅ + z₀.₈) · √(π/2) · σ̂ / √n`, the normal-approximation power formula (Cohen
//!   1988, ch. 2) with the median's efficiency factor √(π/2) and a robust scale,
//!   σ̂ = 1.4826 · MAD of the log ratios, as a percentage.
//!
//! **Verdicts** hold for the whole comparison, not one case at one look: Holm across
//! cases and an alpha-spending plan across looks (`family.rs`, which has the rule and its
//! references). [`verdict`] is the single-metric, single-look reading a metric's table
//! row shows; the exit code never rests on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod analysis;
mod exact;
pub mod family;
mod render;
pub mod screen;
mod stats;

pub use analysis::*;
pub use exact::*;
pub use render::*;
use stats::*;
pub use stats::{cv, mann_whitney, sign_test};

/// The run's false-alarm rate: two-sided 5%, spent over cases and looks (`family.rs`).
pub const ALPHA: f64 = 0.05;
/// z for 97.5% and for 80% (power).
const Z_975: f64 = 1.959_964;
const Z_80: f64 = 0.841_621;
/// √(π/2): the median's standard error relative to the mean's under normal noise.
const MEDIAN_EFFICIENCY: f64 = 1.253_314;
/// Fewer pairs than this can never decide: the sign test cannot reach p < 0.05 with fewer
/// than 6 pairs (2 · 0.5⁶ = 0.031), nor the median's interval 95%. The first look.
pub const MIN_PAIRS: usize = 6;

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency, CPU per request, instructions, bytes.
    Lower,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Worse by more than the threshold, and the interval excludes no change.
    Regression,
    /// Better by more than the threshold, and the interval excludes no change.
    Improvement,
    /// The whole interval lies within ±threshold.
    NoChange,
    /// Not decided when the trials stopped: neither a change past the threshold that
    /// survives the family's correction, nor an interval inside ±threshold. ("unstable"
    /// in files written before; read as this.)
    #[serde(alias = "unstable")]
    Inconclusive,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::NoChange => "no change",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Whether more trials cannot change the call.
    pub fn is_decided(self) -> bool {
        self != Verdict::Inconclusive
    }
}

/// Everything computed from the pairs of one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Independent pairs the statistics ran over (in the perf suite: trials).
    pub pairs: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub baseline_median: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub candidate_median: f64,
    /// Median of the per-pair ratios candidate/baseline (infinite for a count that
    /// appeared from zero, written as `null`, as is NaN).
    #[serde(deserialize_with = "nan_if_null")]
    pub ratio: f64,
    /// Distribution-free 95% interval of the ratio (order statistics of the pairs' log
    /// ratios); `None` with fewer than 6 pairs.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The interval's exact coverage (≥ 0.95; 1 for exact counts).
    #[serde(default)]
    pub ci_coverage: Option<f64>,
    /// Exact two-sided sign test on the pairs (`None` for exact counts, which need none).
    pub sign_p: Option<f64>,
    /// Two-sided Mann-Whitney U on the two sides.
    pub mann_whitney_p: Option<f64>,
    #[serde(deserialize_with = "nan_if_null")]
    pub baseline_cv: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub candidate_cv: f64,
    /// Minimum detectable effect, percent (80% power, 5% two-sided).
    pub mde_pct: Option<f64>,
    pub verdict: Verdict,
}

/// JSON has no NaN or infinity: serde_json writes them as `null`; read that back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl Comparison {
    /// The change in percent, signed as the metric moved (`+3` is 3% higher).
    pub fn change_pct(&self) -> f64 {
        (self.ratio - 1.0) * 100.0
    }
}

/// Compares paired samples (`baseline[i]` ran next to `candidate[i]`). `threshold` is a
/// fraction (0.02 for 2%). Pairs with a non-positive or non-finite value are dropped.
pub fn compare(baseline: &[f64], candidate: &[f64], better: Better, threshold: f64) -> Comparison {
    let groups: Vec<Vec<(f64, f64)>> = baseline
        .iter()
        .zip(candidate)
        .map(|(b, c)| vec![(*b, *c)])
        .collect();
    compare_grouped(&groups, better, threshold)
}

/// Compares pairs that come in groups: the pairs of one group (the slices of one trial)
/// share server processes and are not independent, so each group becomes one pair first:
/// its log ratio is the median of its pairs' log ratios, its sides the geometric means.
/// The statistics then run over groups.
pub fn compare_grouped(groups: &[Vec<(f64, f64)>], better: Better, threshold: f64) -> Comparison {
    let valid = |(b, c): &&(f64, f64)| b.is_finite() && c.is_finite() && *b > 0.0 && *c > 0.0;
    let mut base = Vec::new();
    let mut cand = Vec::new();
    let mut logs = Vec::new();
    for group in groups {
        let pairs: Vec<(f64, f64)> = group.iter().filter(valid).copied().collect();
        if pairs.is_empty() {
            continue;
        }
        let slice_logs: Vec<f64> = pairs.iter().map(|(b, c)| (c / b).ln()).collect();
        let geomean = |f: fn(&(f64, f64)) -> f64| {
            (pairs.iter().map(|p| f(p).ln()).sum::<f64>() / pairs.len() as f64).exp()
        };
        base.push(geomean(|p| p.0));
        cand.push(geomean(|p| p.1));
        logs.push(crate::stats::median(&slice_logs).expect("nonempty"));
    }
    let n = logs.len();
    let ratio = crate::stats::median(&logs).map_or(f64::NAN, f64::exp);
    let ci = family::median_interval(&logs, 0.95);
    let sign_p = sign_test(&logs);
    let mann_whitney_p = mann_whitney(&base, &cand);
    let mde_pct = (n >= 2).then(|| {
        let scale = 1.4826 * mad(&logs);
        ((Z_975 + Z_80) * MEDIAN_EFFICIENCY * scale / (n as f64).sqrt()).exp_m1() * 100.0
    });
    let mut c = Comparison {
        pairs: n,
        baseline_median: crate::stats::median(&base).unwrap_or(f64::NAN),
        candidate_median: crate::stats::median(&cand).unwrap_or(f64::NAN),
        ratio,
        ci_low: ci.map(|c| c.0.exp()),
        ci_high: ci.map(|c| c.1.exp()),
        ci_coverage: ci.map(|c| c.2),
        sign_p: Some(sign_p),
        mann_whitney_p: Some(mann_whitney_p),
        baseline_cv: cv(&base),
        candidate_cv: cv(&cand),
        mde_pct,
        verdict: Verdict::Inconclusive,
    };
    c.verdict = verdict(&c, better, threshold);
    c
}

/// The reading of one metric on its own, at one look, unadjusted: the interval excludes
/// 1, the sign test p < 0.05 and the change is past the threshold; "no change" needs the
/// interval inside ±threshold. A case's verdict is the family's (`family::decide`).
pub fn verdict(c: &Comparison, better: Better, threshold: f64) -> Verdict {
    let (Some(low), Some(high)) = (c.ci_low, c.ci_high) else {
        return Verdict::Inconclusive;
    };
    if c.pairs < MIN_PAIRS {
        return Verdict::Inconclusive;
    }
    let (up, down) = (1.0 + threshold, 1.0 - threshold);
    let significant = c.sign_p.is_some_and(|p| p < ALPHA);
    if low > 1.0 && c.ratio > up && significant {
        return match better {
            Better::Higher => Verdict::Improvement,
            Better::Lower => Verdict::Regression,
        };
    }
    if high < 1.0 && c.ratio < down && significant {
        return match better {
            Better::Higher => Verdict::Regression,
            Better::Lower => Verdict::Improvement,
        };
    }
    if low > down && high < up {
        return Verdict::NoChange;
    }
    Verdict::Inconclusive
}

/// What the second signal says, for people: the server's CPU time per request beside a
/// throughput change. It is not a vote: on a shared machine it moves with the same noise
/// regime as throughput (an A/A run once showed −3.3% throughput "confirmed" by +4.6% CPU
/// per request), so it cannot confirm anything; the family's correction does that.
pub fn second_signal(confirm: Option<&Comparison>) -> Option<String> {
    confirm.map(|c| format!("server CPU per request {:+.1}%", c.change_pct()))
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn sign_test_matches_the_binomial() {
        // 6 of 6 positive: 2 · (1/2)^6.
        assert!(close(sign_test(&[1.0; 6]), 0.03125, 1e-12));
        // 8 of 10: 2 · P(X ≤ 2) = 2 · 56/1024.
        let d = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0];
        assert!(close(sign_test(&d), 112.0 / 1024.0, 1e-12));
        // Zeros are dropped; none left means no evidence.
        assert_eq!(sign_test(&[0.0, 0.0]), 1.0);
        assert!(close(sign_test(&[1.0, -1.0, 0.0]), 1.0, 1e-12));
        // Tiny samples cannot be significant.
        assert!(sign_test(&[1.0; 5]) > ALPHA);
    }

    #[test]
    fn mann_whitney_exact_small_samples() {
        // Complete separation of 3 and 3: 2 of the 20 arrangements are as extreme.
        assert!(close(
            mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]),
            0.1,
            1e-12
        ));
        assert!(close(
            mann_whitney(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]),
            0.1,
            1e-12
        ));
        // 4 and 4 separated: 2/70.
        let p = mann_whitney(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]);
        assert!(close(p, 2.0 / 70.0, 1e-12));
        // Interleaved samples: no evidence.
        assert!(mann_whitney(&[1.0, 3.0, 5.0], &[2.0, 4.0, 6.0]) > 0.5);
        assert_eq!(mann_whitney(&[], &[1.0]), 1.0);
    }

    #[test]
    fn mann_whitney_with_ties_uses_the_corrected_normal() {
        // All equal: zero variance, no evidence.
        assert_eq!(mann_whitney(&[2.0; 5], &[2.0; 5]), 1.0);
        // Ties across samples, clearly shifted: small p, and symmetric.
        let x = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0];
        let y = [4.0, 5.0, 5.0, 6.0, 6.0, 7.0, 7.0, 7.0];
        let p = mann_whitney(&x, &y);
        assert!(p < 0.01, "{p}");
        assert!(close(p, mann_whitney(&y, &x), 1e-12));
        // Large samples use the approximation: 30 vs 30 separated.
        let a: Vec<f64> = (0..30).map(f64::from).collect();
        let b: Vec<f64> = (30..60).map(f64::from).collect();
        assert!(mann_whitney(&a, &b) < 1e-6);
    }

    #[test]
    fn normal_tail_is_accurate() {
        assert!(close(normal_upper_tail(0.0), 0.5, 1e-7));
        assert!(close(normal_upper_tail(1.959_964), 0.025, 1e-6));
        assert!(close(normal_upper_tail(3.0), 0.001_349_9, 1e-6));
    }

    /// Pairs with the candidate `factor` times the baseline, around a drifting machine.
    fn pairs(n: usize, factor: f64, noise: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut base = Vec::new();
        let mut cand = Vec::new();
        for i in 0..n {
            let machine = 100_000.0 * (1.0 + 0.2 * ((i as f64) / 3.0).sin());
            base.push(machine * (1.0 + noise * rng.random_range(-1.0..1.0)));
            cand.push(machine * factor * (1.0 + noise * rng.random_range(-1.0..1.0)));
        }
        (base, cand)
    }

    #[test]
    fn a_clear_throughput_drop_is_a_regression() {
        let (b, c) = pairs(20, 0.95, 0.01, 1);
        let r = compare(&b, &c, Better::Higher, 0.02);
        assert_eq!(r.verdict, Verdict::Regression, "{r:?}");
        assert!(close(r.ratio, 0.95, 0.01));
        assert!(
            r.ci_low.unwrap() < 0.95 && r.ci_high.unwrap() > 0.94,
            "{r:?}"
        );
        assert!(r.ci_high.unwrap() < 1.0);
        // The same drop in a lower-is-better metric is an improvement.
        assert_eq!(
            compare(&b, &c, Better::Lower, 0.02).verdict,
            Verdict::Improvement
        );
        // Pairing removes the drift: each side alone varies ~20%, the pairs ~1%.
        assert!(r.baseline_cv > 0.1);
        assert!(r.mde_pct.unwrap() < 2.0, "{r:?}");
    }

    #[test]
    fn below_threshold_or_same_is_no_change() {
        let (b, c) = pairs(20, 1.0, 0.005, 2);
        assert_eq!(
            compare(&b, &c, Better::Higher, 0.02).verdict,
            Verdict::NoChange
        );
        // Significant but smaller than the threshold: not a regression.
        let (b, c) = pairs(30, 0.99, 0.002, 3);
        let r = compare(&b, &c, Better::Higher, 0.02);
        assert!(r.ci_high.unwrap() < 1.0);
        assert_eq!(r.verdict, Verdict::NoChange);
    }

    #[test]
    fn noise_or_too_few_pairs_is_inconclusive() {
        let (b, c) = pairs(8, 0.97, 0.15, 4);
        assert_eq!(
            compare(&b, &c, Better::Higher, 0.02).verdict,
            Verdict::Inconclusive
        );
        let (b, c) = pairs(5, 0.5, 0.0, 5);
        let r = compare(&b, &c, Better::Higher, 0.02);
        assert_eq!(
            r.verdict,
            Verdict::Inconclusive,
            "five pairs can never decide"
        );
        assert_eq!(
            compare(&[], &[], Better::Higher, 0.02).verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn zero_variance_and_bad_values() {
        // Identical sides: ratio exactly 1, interval [1, 1], no change.
        let r = compare(&[5.0; 8], &[5.0; 8], Better::Lower, 0.02);
        assert_eq!((r.ratio, r.ci_low, r.ci_high), (1.0, Some(1.0), Some(1.0)));
        assert_eq!(r.sign_p, Some(1.0));
        assert_eq!(r.verdict, Verdict::NoChange);
        assert_eq!(r.baseline_cv, 0.0);
        // A constant 10% increase: every test agrees.
        let r = compare(&[5.0; 8], &[5.5; 8], Better::Lower, 0.02);
        assert_eq!(r.verdict, Verdict::Regression);
        // Non-positive and non-finite values are dropped with their pair.
        let r = compare(
            &[1.0, 0.0, f64::NAN, 2.0],
            &[1.0, 1.0, 1.0, 2.0],
            Better::Lower,
            0.02,
        );
        assert_eq!(r.pairs, 2);
    }

    #[test]
    fn the_second_signal_is_a_note_not_a_vote() {
        let (cb, cc) = pairs(20, 1.05, 0.01, 8);
        let cpu = compare(&cb, &cc, Better::Lower, 0.02);
        let note = second_signal(Some(&cpu)).unwrap();
        assert!(note.starts_with("server CPU per request +"), "{note}");
        assert_eq!(second_signal(None), None);
    }

    #[test]
    fn groups_count_once_and_their_median_ignores_a_flip() {
        // Six trials of six slices: candidate 5% slower, one slice per trial straddling a
        // machine-speed flip (candidate 40% faster in that slice).
        let groups: Vec<Vec<(f64, f64)>> = (0..6)
            .map(|t| {
                (0..6)
                    .map(|k| {
                        let machine = if (t + k) % 2 == 0 { 1.0e6 } else { 0.6e6 };
                        let flip = if k == t % 6 { 1.4 / 0.95 } else { 1.0 };
                        (machine, machine * 0.95 * flip)
                    })
                    .collect()
            })
            .collect();
        let r = compare_grouped(&groups, Better::Higher, 0.02);
        assert_eq!(r.pairs, 6, "a group is one pair");
        assert!(close(r.ratio, 0.95, 1e-9), "{r:?}");
        assert_eq!(r.verdict, Verdict::Regression);
        // Plain pairs are groups of one.
        let flat = compare(&[1.0, 2.0], &[1.1, 2.2], Better::Higher, 0.02);
        assert_eq!(flat.pairs, 2);
        assert!(close(flat.ratio, 1.1, 1e-9));
        // Empty groups and invalid values drop out.
        let r = compare_grouped(
            &[vec![], vec![(0.0, 1.0)], vec![(1.0, 1.0)]],
            Better::Lower,
            0.02,
        );
        assert_eq!(r.pairs, 1);
    }

    #[test]
    fn the_pr_summary_escapes_what_came_from_outside() {
        assert_eq!(
            escape_markdown("a|b<c>&`d`\n*e*"),
            "a\\|b&lt;c&gt;&amp;\\`d\\` \\*e\\*"
        );
        let (b, c) = pairs(8, 0.9, 0.01, 11);
        let trials: Vec<TrialPair> = b
            .iter()
            .zip(&c)
            .enumerate()
            .map(|(i, (b, c))| TrialPair {
                trial: i + 1,
                pair: i + 1,
                order: if i % 2 == 0 { "AB" } else { "BA" }.into(),
                baseline: Trial::from([("ops_per_sec".to_string(), *b)]),
                candidate: Trial::from([("ops_per_sec".to_string(), *c)]),
            })
            .collect();
        let metric = Metric {
            key: "ops_per_sec",
            label: "ops/s",
            better: Better::Higher,
        };
        let mut cases = vec![analyze("<img src=x>|GET", &[metric], None, &trials, 0.02)];
        assert_eq!(cases[0].verdict, Verdict::Inconclusive, "open until a look");
        decide_look(&mut cases, &[0], 1, 0.02);
        assert_eq!(cases[0].verdict, Verdict::Regression);
        let case = cases.remove(0);
        let side = |spec: &str| SideInfo {
            spec: spec.into(),
            version: "8.1.1".into(),
            source_id: "tree:<b>".into(),
        };
        let report = CompareReport {
            run_id: "r".into(),
            suite: "perf".into(),
            mode: "time".into(),
            threshold_pct: 2.0,
            baseline: side("8.1.1"),
            candidate: side("/tmp/<script>"),
            elapsed_secs: 12.0,
            stopped: "every case decided".into(),
            cases: vec![case],
            findings: vec!["a <b>finding</b>".into()],
            instructions_threshold_pct: None,
        };
        let md = markdown(&report);
        assert!(
            md.starts_with("## valkey-bench compare: **1 regression(s)**"),
            "{md}"
        );
        assert!(!md.contains('<'), "{md}");
        assert!(md.contains("&lt;img src=x&gt;\\|GET"), "{md}");
        // Each table row has as many cells as its header.
        for table in [verdict_table(&report), detail_table(&report)] {
            let cells: Vec<usize> = table
                .lines()
                .map(|l| l.replace("\\|", "").matches('|').count())
                .collect();
            assert!(cells.iter().all(|&n| n == cells[0]), "{table}");
        }
    }

    #[test]
    fn the_interval_is_reproducible_and_brackets_the_estimate() {
        let (b, c) = pairs(12, 1.01, 0.03, 6);
        let r = compare(&b, &c, Better::Higher, 0.02);
        assert_eq!(r, compare(&b, &c, Better::Higher, 0.02));
        assert!(
            r.ci_low.unwrap() <= r.ratio && r.ratio <= r.ci_high.unwrap(),
            "{r:?}"
        );
        // 12 pairs: the 3rd and 10th order statistics, 96.1% coverage.
        assert!((r.ci_coverage.unwrap() - (1.0 - 2.0 * 79.0 / 4096.0)).abs() < 1e-9);
    }
}
