//! Descriptive statistics over repetitions.

/// The median: the middle value of the sorted sample, or the mean of the two middle
/// values for an even count (Hyndman & Fan 1996, definition 2's midpoint rule).
/// `None` for an empty sample. NaNs sort last.
pub fn median(sample: &[f64]) -> Option<f64> {
    if sample.is_empty() {
        return None;
    }
    let mut sorted = sample.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Relative range: (max − min) / median, in percent. A blunt but honest spread for the
/// handful of repetitions a perf case runs (a standard deviation of three values says
/// little). `None` for an empty sample or a zero median.
pub fn range_pct(sample: &[f64]) -> Option<f64> {
    let median = median(sample)?;
    if median == 0.0 {
        return None;
    }
    let min = sample.iter().copied().fold(f64::INFINITY, f64::min);
    let max = sample.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((max - min) / median * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn median_of_odd_even_and_empty_samples() {
        assert_eq!(median(&[]), None);
        assert!(close(median(&[5.0]), 5.0));
        assert!(close(median(&[3.0, 1.0, 2.0]), 2.0));
        assert!(close(median(&[4.0, 1.0, 3.0, 2.0]), 2.5));
        assert!(close(median(&[7.0, 7.0, 7.0, 1.0]), 7.0));
    }

    #[test]
    fn range_is_relative_to_the_median() {
        assert!(close(range_pct(&[90.0, 100.0, 110.0]), 20.0));
        assert!(close(range_pct(&[100.0, 100.0]), 0.0));
        assert_eq!(range_pct(&[0.0, 0.0]), None);
        assert_eq!(range_pct(&[]), None);
    }
}
