//! The tests and estimators the verdict uses: mean, SD, MAD, CV,
//! the sign test and Mann-Whitney U (methods and references in `compare/mod.rs`).

pub(crate) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n − 1); 0 for fewer than two values.
pub(crate) fn sd(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// Median absolute deviation from the median.
pub(crate) fn mad(x: &[f64]) -> f64 {
    let Some(m) = crate::stats::median(x) else {
        return f64::NAN;
    };
    let deviations: Vec<f64> = x.iter().map(|v| (v - m).abs()).collect();
    crate::stats::median(&deviations).unwrap_or(f64::NAN)
}

/// Coefficient of variation; NaN for an empty sample or a zero mean.
pub fn cv(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let m = mean(x);
    if m == 0.0 { f64::NAN } else { sd(x) / m }
}

/// Exact two-sided sign test: zero differences are dropped (Conover's recommendation).
pub fn sign_test(differences: &[f64]) -> f64 {
    let positive = differences.iter().filter(|d| **d > 0.0).count();
    let negative = differences.iter().filter(|d| **d < 0.0).count();
    let n = positive + negative;
    if n == 0 {
        return 1.0;
    }
    let k = positive.min(negative);
    // P(X ≤ k) for X ~ Binomial(n, 1/2), by summing C(n, i) / 2ⁿ in log space.
    let tail: f64 = (0..=k)
        .map(|i| (ln_choose(n, i) - n as f64 * 2f64.ln()).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

pub(crate) fn ln_choose(n: usize, k: usize) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

pub(crate) fn ln_factorial(n: usize) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

/// Two-sided Mann-Whitney U test of `x` against `y`. Exact when both samples have at most
/// 20 values and there are no ties; otherwise the normal approximation with tie and
/// continuity corrections. 1.0 when either sample is empty or every value is equal.
pub fn mann_whitney(x: &[f64], y: &[f64]) -> f64 {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    // Midranks of the pooled sample.
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pooled.len();
    let mut rank_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let midrank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_x += pooled[i..=j].iter().filter(|p| p.1).count() as f64 * midrank;
        i = j + 1;
    }
    let u = rank_x - (n1 * (n1 + 1)) as f64 / 2.0;
    let mean_u = (n1 * n2) as f64 / 2.0;
    if tie_term == 0.0 && n1 <= 20 && n2 <= 20 {
        return exact_mann_whitney(n1, n2, u);
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    let z = ((u - mean_u).abs() - 0.5).max(0.0) / var.sqrt();
    (2.0 * normal_upper_tail(z)).min(1.0)
}

/// P(U ≤ u) and P(U ≥ u) under H0 from the count of rank arrangements: the number of
/// ways `f(i, j, s)` that i values of x and j of y give U = s satisfies
/// f(i, j, s) = f(i − 1, j, s − j) + f(i, j − 1, s).
pub(crate) fn exact_mann_whitney(n1: usize, n2: usize, u: f64) -> f64 {
    let max = n1 * n2;
    // counts[j][s] for the current i.
    let mut prev: Vec<Vec<f64>> = (0..=n2)
        .map(|_| {
            let mut v = vec![0.0; max + 1];
            v[0] = 1.0;
            v
        })
        .collect();
    for _ in 1..=n1 {
        let mut next: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n2 + 1];
        for j in 0..=n2 {
            for s in 0..=max {
                let from_x = if s >= j { prev[j][s - j] } else { 0.0 };
                let from_y = if j > 0 { next[j - 1][s] } else { 0.0 };
                next[j][s] = from_x + from_y;
            }
        }
        prev = next;
    }
    let dist = &prev[n2];
    let total: f64 = dist.iter().sum();
    let u = u.round() as usize;
    let low: f64 = dist[..=u.min(max)].iter().sum::<f64>() / total;
    let high: f64 = dist[u.min(max)..].iter().sum::<f64>() / total;
    (2.0 * low.min(high)).min(1.0)
}

/// 1 − Φ(z) for z ≥ 0 (Abramowitz & Stegun 7.1.26 via erfc, |error| < 1.5e-7).
pub(crate) fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}
