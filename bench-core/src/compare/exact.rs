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

/// Counts of one case from rounds of server processes, `baseline[k]` and `candidate[k]`
/// from round `k` (the same cases served in the same order on both sides, so a round's
/// ratio compares like with like even where rounds differ in what the servers served
/// before). One round: [`compare_exact`]. Several: the median of the rounds' ratios,
/// and a count whose ratio varies between rounds is not exact (ZADD's skiplist levels
/// come from `random()`, which Valkey seeds from the clock: its count moves ~1% between
/// processes). Then a change is called only past `threshold` plus twice the range of the
/// rounds' ratios, and that bar is the comparison's `mde_pct` (the case's own threshold).
/// The CV fields hold each side's spread over its rounds.
pub fn compare_counts(
    baseline: &[f64],
    candidate: &[f64],
    better: Better,
    threshold: f64,
) -> Comparison {
    if baseline.len() == 1 && candidate.len() == 1 {
        return compare_exact(baseline[0], candidate[0], better, threshold);
    }
    let ratios: Vec<f64> = baseline
        .iter()
        .zip(candidate)
        .map(|(b, c)| c / b)
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    let median = |v: &[f64]| crate::stats::median(v).unwrap_or(f64::NAN);
    let ratio = median(&ratios);
    let range = ratios.iter().copied().fold(f64::MIN, f64::max)
        - ratios.iter().copied().fold(f64::MAX, f64::min);
    let range = if ratios.len() > 1 {
        range.max(0.0)
    } else {
        0.0
    };
    let bar = threshold + 2.0 * range;
    let b = median(baseline);
    let mut c = compare_exact(b, b * ratio, better, bar);
    c.candidate_median = median(candidate);
    let spread_of = |v: &[f64]| if v.len() > 1 { cv(v) } else { 0.0 };
    c.baseline_cv = spread_of(baseline);
    c.candidate_cv = spread_of(candidate);
    if ratios.is_empty() || baseline.len() != candidate.len() {
        c.verdict = Verdict::Inconclusive;
    } else if range * 100.0 >= EXACT_FLOOR_PCT {
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
        // Rounds whose ratios are +0.2% and +1.2%: +0.7% is within the noise (bar 0.5 + 2 ×
        // 1.0 = 2.5%), the case's own threshold.
        let c = compare_counts(&[1000.0, 1000.0], &[1002.0, 1012.0], Better::Lower, 0.005);
        assert_eq!(c.verdict, Verdict::NoChange);
        assert!((c.mde_pct.unwrap() - 2.5).abs() < 1e-6, "{:?}", c.mde_pct);
        assert!((c.change_pct() - 0.7).abs() < 1e-6, "{}", c.change_pct());
        // ... and rounds at +4.5% and +4.0% are past it.
        let c = compare_counts(&[1000.0, 1010.0], &[1045.0, 1050.4], Better::Lower, 0.005);
        assert_eq!(c.verdict, Verdict::Regression);
        // Rounds that differ in what they served before shift both sides alike: the ratio
        // does not vary, so the count stays exact.
        let c = compare_counts(&[1000.0, 1100.0], &[1010.0, 1111.0], Better::Lower, 0.005);
        assert_eq!(c.verdict, Verdict::Regression);
        assert_eq!(c.mde_pct, None);
        // One process per side: exactly compare_exact.
        assert_eq!(
            compare_counts(&[1000.0], &[990.0], Better::Lower, 0.005),
            compare_exact(1000.0, 990.0, Better::Lower, 0.005)
        );
    }
}
