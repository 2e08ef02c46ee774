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

/// System calls per request that a change must move by to count, when one build's
/// processes agree: 0.01 is 100 calls in a 10,000-request window. A call the command path
/// makes adds 1 per request; one per pipelined batch of 16, 0.0625; the clock-driven
/// calls of serverCron at `hz 1` (reading its RSS, a timer's `epoll_wait`) a few per
/// window, under 0.001.
pub const SYSCALL_THRESHOLD_PER_REQUEST: f64 = 0.01;

/// Compares counts of system calls per request (`baseline[k]`, `candidate[k]`: round `k`,
/// as [`compare_counts`]). A kind the command path makes a fixed number of times per
/// request is exact: it appears, disappears or moves by whole calls per request (or per
/// batch). Batching-dependent kinds (`epoll_wait`, `read`, `write` at pipeline > 1) vary
/// with timing, so the change must pass `threshold` (calls per request) plus twice the
/// range of the rounds' differences. The verdict is by the difference, not the ratio (a
/// kind may appear from zero); `ratio` is candidate / baseline, infinite for a new kind.
/// `mde_pct` is unused (`None`); the widened bar comes back beside the comparison.
pub fn compare_calls(baseline: &[f64], candidate: &[f64], threshold: f64) -> (Comparison, f64) {
    let median = |v: &[f64]| crate::stats::median(v).unwrap_or(f64::NAN);
    let diffs: Vec<f64> = baseline
        .iter()
        .zip(candidate)
        .map(|(b, c)| c - b)
        .filter(|d| d.is_finite())
        .collect();
    let diff = median(&diffs);
    let range = if diffs.len() > 1 {
        diffs.iter().copied().fold(f64::MIN, f64::max)
            - diffs.iter().copied().fold(f64::MAX, f64::min)
    } else {
        0.0
    };
    let bar = threshold + 2.0 * range;
    let (b, c) = (median(baseline), median(candidate));
    let ratio = if b > 0.0 {
        c / b
    } else if c > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    let verdict = if diffs.is_empty() || baseline.len() != candidate.len() {
        Verdict::Inconclusive
    } else if diff > bar {
        Verdict::Regression
    } else if diff < -bar {
        Verdict::Improvement
    } else {
        Verdict::NoChange
    };
    let spread_of = |v: &[f64]| if v.len() > 1 { cv(v) } else { 0.0 };
    let comparison = Comparison {
        pairs: 1,
        baseline_median: b,
        candidate_median: c,
        ratio,
        ci_low: ratio.is_finite().then_some(ratio),
        ci_high: ratio.is_finite().then_some(ratio),
        ci_coverage: Some(1.0),
        sign_p: None,
        mann_whitney_p: None,
        baseline_cv: spread_of(baseline),
        candidate_cv: spread_of(candidate),
        mde_pct: None,
        verdict,
    };
    (comparison, bar)
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
    #[test]
    fn system_calls_move_by_whole_calls_and_varying_kinds_need_more() {
        // One getppid per request appears: exact, +1.
        let (c, bar) = compare_calls(&[0.0], &[1.0], SYSCALL_THRESHOLD_PER_REQUEST);
        assert_eq!(c.verdict, Verdict::Regression);
        assert!(c.ratio.is_infinite());
        assert!((bar - 0.01).abs() < 1e-12);
        // A few cron calls in the window: the same count.
        let (c, _) = compare_calls(&[3.0004], &[3.0009], SYSCALL_THRESHOLD_PER_REQUEST);
        assert_eq!(c.verdict, Verdict::NoChange);
        // epoll_wait at pipeline 16 whose rounds differ by up to 0.02: a 0.04 move is
        // within 0.01 + 2 × 0.02.
        let (c, bar) = compare_calls(
            &[0.0625, 0.0625, 0.0625],
            &[0.1025, 0.0925, 0.1125],
            SYSCALL_THRESHOLD_PER_REQUEST,
        );
        assert!((bar - 0.05).abs() < 1e-9, "{bar}");
        assert_eq!(c.verdict, Verdict::NoChange);
        // Fewer calls: better.
        let (c, _) = compare_calls(&[2.0, 2.0], &[1.0, 1.0], SYSCALL_THRESHOLD_PER_REQUEST);
        assert_eq!(c.verdict, Verdict::Improvement);
    }
}
