//! Exact counts (instructions per request): not samples, so no test is needed when one
//! build's processes agree; only a threshold, widened where they do not.

use super::*;

/// Compares exact counts (instructions per request under callgrind, bytes per item), one
/// measurement per side: no interval, because there is no noise to bound; the change alone
/// decides against the threshold.
pub fn compare_exact(baseline: f64, candidate: f64, better: Better, threshold: f64) -> Comparison {
    let ratio = candidate / baseline;
    let verdict = if !ratio.is_finite() || baseline <= 0.0 {
        Verdict::Inconclusive
    } else if ratio > 1.0 + threshold {
        match better {
            Better::Higher => Verdict::Improvement,
            Better::Lower => Verdict::Regression,
        }
    } else if ratio < 1.0 - threshold {
        match better {
            Better::Higher => Verdict::Regression,
            Better::Lower => Verdict::Improvement,
        }
    } else {
        Verdict::NoChange
    };
    Comparison {
        pairs: 1,
        baseline_median: baseline,
        candidate_median: candidate,
        ratio,
        ci_low: Some(ratio),
        ci_high: Some(ratio),
        ci_coverage: Some(1.0),
        sign_p: None,
        mann_whitney_p: None,
        baseline_cv: 0.0,
        candidate_cv: 0.0,
        mde_pct: None,
        verdict,
    }
}

/// Counts from one or more server processes per side (instruction counts): the medians
/// compared as [`compare_exact`] does, but a count that differs between processes of one
/// build is not exact. Then a change is called only past `threshold` plus twice the widest
/// relative range seen within a side (ZADD's skiplist levels come from `random()`, which
/// Valkey seeds from the clock: its count moves ~1% between processes), and that bar is
/// the comparison's `mde_pct`. The CV fields hold each side's spread.
pub fn compare_counts(
    baseline: &[f64],
    candidate: &[f64],
    better: Better,
    threshold: f64,
) -> Comparison {
    let median = |v: &[f64]| crate::stats::median(v).unwrap_or(f64::NAN);
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        if v.len() > 1 && lo > 0.0 {
            (hi - lo) / lo
        } else {
            0.0
        }
    };
    let spread = range(baseline).max(range(candidate));
    let bar = threshold + 2.0 * spread;
    let mut c = compare_exact(median(baseline), median(candidate), better, bar);
    let spread_of = |v: &[f64]| if v.len() > 1 { cv(v) } else { 0.0 };
    c.baseline_cv = spread_of(baseline);
    c.candidate_cv = spread_of(candidate);
    if spread * 100.0 >= EXACT_FLOOR_PCT {
        c.mde_pct = Some(bar * 100.0);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_that_vary_between_processes_need_a_larger_change() {
        // Repeatable counts: the threshold alone.
        let c = compare_counts(&[1000.0, 1000.0], &[1007.0, 1007.0], Better::Lower, 0.005);
        assert_eq!(c.verdict, Verdict::Regression);
        assert_eq!(c.mde_pct, None);
        // One build's processes 1% apart: +0.7% is within the noise (bar 0.5 + 2 = 2.5%).
        let c = compare_counts(&[1000.0, 1010.0], &[1012.0, 1016.0], Better::Lower, 0.005);
        assert_eq!(c.verdict, Verdict::NoChange);
        assert!((c.mde_pct.unwrap() - 2.5).abs() < 1e-9, "{:?}", c.mde_pct);
        // ... and +4% is past it.
        let c = compare_counts(&[1000.0, 1010.0], &[1045.0, 1050.0], Better::Lower, 0.005);
        assert_eq!(c.verdict, Verdict::Regression);
        // One process per side: exactly compare_exact.
        assert_eq!(
            compare_counts(&[1000.0], &[990.0], Better::Lower, 0.005),
            compare_exact(1000.0, 990.0, Better::Lower, 0.005)
        );
    }
}
