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
//! - **95% confidence interval**: percentile bootstrap of that median over the pairs,
//!   resampling pairs (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*,
//!   ch. 13), 4,000 resamples, seeded, so the same trials always give the same interval.
//! - **Sign test** on the pairs (exact binomial, two-sided; Conover 1999, *Practical
//!   Nonparametric Statistics*, §3.4): assumes nothing about the noise distribution.
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
//! Verdict (see [`Verdict`]): a change is called only when the interval excludes 1, the sign
//! test agrees (p < 0.05), and the point estimate moves past the threshold; "no change" needs
//! the whole interval inside ±threshold. Anything else is unstable: the trials could not say.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Bootstrap resamples: the 2.5% and 97.5% quantiles move by < 0.1% of the ratio beyond this.
pub const BOOTSTRAP_RESAMPLES: usize = 4000;
const BOOTSTRAP_SEED: u64 = 0x5eed_b007;
/// Two-sided 5%.
pub const ALPHA: f64 = 0.05;
/// z for 97.5% and for 80% (power).
const Z_975: f64 = 1.959_964;
const Z_80: f64 = 0.841_621;
/// √(π/2): the median's standard error relative to the mean's under normal noise.
const MEDIAN_EFFICIENCY: f64 = 1.253_314;
/// Fewer pairs than this can never decide: the sign test cannot reach p < 0.05 with fewer
/// than 6 pairs (2 · 0.5⁶ = 0.031).
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
    /// The trials could not decide (interval too wide, or the tests disagree).
    Unstable,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::NoChange => "no change",
            Verdict::Unstable => "unstable",
        }
    }

    /// Whether more trials cannot change the call.
    pub fn is_decided(self) -> bool {
        self != Verdict::Unstable
    }
}

/// Everything computed from the pairs of one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Independent pairs the statistics ran over (in the perf suite: trials).
    pub pairs: usize,
    pub baseline_median: f64,
    pub candidate_median: f64,
    /// Median of the per-pair ratios candidate/baseline.
    pub ratio: f64,
    /// 95% paired bootstrap interval of the ratio; `None` with fewer than 2 pairs.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Exact two-sided sign test on the pairs (`None` for exact counts, which need none).
    pub sign_p: Option<f64>,
    /// Two-sided Mann-Whitney U on the two sides.
    pub mann_whitney_p: Option<f64>,
    pub baseline_cv: f64,
    pub candidate_cv: f64,
    /// Minimum detectable effect, percent (80% power, 5% two-sided).
    pub mde_pct: Option<f64>,
    pub verdict: Verdict,
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
    let ci = bootstrap_ci(&logs);
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
        ci_low: ci.map(|c| c.0),
        ci_high: ci.map(|c| c.1),
        sign_p: Some(sign_p),
        mann_whitney_p: Some(mann_whitney_p),
        baseline_cv: cv(&base),
        candidate_cv: cv(&cand),
        mde_pct,
        verdict: Verdict::Unstable,
    };
    c.verdict = verdict(&c, better, threshold);
    c
}

/// Compares exact counts (instructions per request under callgrind, bytes per item), one
/// measurement per side: no interval, because there is no noise to bound; the change alone
/// decides against the threshold.
pub fn compare_exact(baseline: f64, candidate: f64, better: Better, threshold: f64) -> Comparison {
    let ratio = candidate / baseline;
    let verdict = if !ratio.is_finite() || baseline <= 0.0 {
        Verdict::Unstable
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
        sign_p: None,
        mann_whitney_p: None,
        baseline_cv: 0.0,
        candidate_cv: 0.0,
        mde_pct: None,
        verdict,
    }
}

/// The call for one metric; see the module documentation.
pub fn verdict(c: &Comparison, better: Better, threshold: f64) -> Verdict {
    let (Some(low), Some(high)) = (c.ci_low, c.ci_high) else {
        return Verdict::Unstable;
    };
    if c.pairs < MIN_PAIRS {
        return Verdict::Unstable;
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
    Verdict::Unstable
}

/// The case's call from its primary metric (throughput, bytes, sync time) and, when there
/// is one, a second signal of the same cost measured another way (the server's CPU time per
/// request, where lower is better). A regression or improvement in the primary metric
/// stands only if the second signal moved the same way (its point estimate); if it did not,
/// the case is unstable: a throughput drop the server's own CPU does not show is more
/// likely machine noise than a slower server. Returns the verdict and a note for people.
pub fn case_verdict(
    primary: &Comparison,
    primary_better: Better,
    confirm: Option<&Comparison>,
) -> (Verdict, Option<String>) {
    let Some(confirm) = confirm else {
        return (primary.verdict, None);
    };
    // Did the primary metric move toward "worse"?
    let primary_worse = match primary_better {
        Better::Higher => primary.ratio < 1.0,
        Better::Lower => primary.ratio > 1.0,
    };
    let cost_rose = confirm.ratio > 1.0;
    let described = format!("server CPU per request {:+.1}%", confirm.change_pct());
    match primary.verdict {
        Verdict::Regression | Verdict::Improvement if primary_worse != cost_rose => (
            Verdict::Unstable,
            Some(format!("not confirmed: {described}")),
        ),
        Verdict::Regression | Verdict::Improvement => {
            (primary.verdict, Some(format!("confirmed: {described}")))
        }
        v => (v, Some(described)),
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n − 1); 0 for fewer than two values.
fn sd(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// Median absolute deviation from the median.
fn mad(x: &[f64]) -> f64 {
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

/// 95% percentile-bootstrap interval of `exp(median(logs))`, resampling pairs.
fn bootstrap_ci(logs: &[f64]) -> Option<(f64, f64)> {
    let n = logs.len();
    if n < 2 {
        return None;
    }
    let mut rng = SmallRng::seed_from_u64(BOOTSTRAP_SEED);
    let mut resample = vec![0.0; n];
    let mut medians: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            for v in resample.iter_mut() {
                *v = logs[rng.random_range(0..n)];
            }
            crate::stats::median(&resample).unwrap_or(f64::NAN)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| {
        medians[((q * (medians.len() - 1) as f64).round() as usize).min(medians.len() - 1)]
    };
    Some((at(0.025).exp(), at(0.975).exp()))
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

fn ln_choose(n: usize, k: usize) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

fn ln_factorial(n: usize) -> f64 {
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
fn exact_mann_whitney(n1: usize, n2: usize, u: f64) -> f64 {
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
fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

/// What one metric is and which way is better.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric {
    /// Key in a trial's numbers, e.g. `ops_per_sec`.
    pub key: &'static str,
    /// Column label for people.
    pub label: &'static str,
    pub better: Better,
}

/// One trial's numbers, by metric key.
pub type Trial = BTreeMap<String, f64>;

/// A baseline and a candidate measurement run back to back; `order` is "AB" (baseline
/// first) or "BA". Pairs of one `trial` (perf: its slices) share server processes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialPair {
    pub trial: usize,
    pub pair: usize,
    pub order: String,
    pub baseline: Trial,
    pub candidate: Trial,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub metric: String,
    pub label: String,
    pub better: Better,
    pub comparison: Comparison,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub case: String,
    pub verdict: Verdict,
    pub note: Option<String>,
    /// The primary metric first.
    pub metrics: Vec<MetricResult>,
    pub trials: Vec<TrialPair>,
}

/// Analyzes one case's pairs: every metric compared, the first one primary, `confirm`
/// (a lower-is-better metric key) the second signal of [`case_verdict`].
pub fn analyze(
    case: &str,
    metrics: &[Metric],
    confirm: Option<&str>,
    trials: &[TrialPair],
    threshold: f64,
) -> CaseResult {
    let results: Vec<MetricResult> = metrics
        .iter()
        .map(|m| {
            let side = |t: &Trial| t.get(m.key).copied().unwrap_or(f64::NAN);
            let mut groups: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut last = None;
            for p in trials {
                if last != Some(p.trial) {
                    groups.push(Vec::new());
                    last = Some(p.trial);
                }
                let group = groups.last_mut().expect("pushed above");
                group.push((side(&p.baseline), side(&p.candidate)));
            }
            MetricResult {
                metric: m.key.to_string(),
                label: m.label.to_string(),
                better: m.better,
                comparison: compare_grouped(&groups, m.better, threshold),
            }
        })
        .collect();
    let primary = &results[0];
    let second = confirm.and_then(|key| {
        results
            .iter()
            .find(|r| r.metric == key && r.comparison.pairs > 0)
    });
    let (verdict, note) = case_verdict(
        &primary.comparison,
        primary.better,
        second.map(|r| &r.comparison),
    );
    CaseResult {
        case: case.to_string(),
        verdict,
        note,
        metrics: results,
        trials: trials.to_vec(),
    }
}

/// One side of a comparison, as the user named it and as it was built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SideInfo {
    pub spec: String,
    pub version: String,
    pub source_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub run_id: String,
    pub suite: String,
    /// `time` (interleaved wall-clock trials) or `instructions` (callgrind).
    pub mode: String,
    pub threshold_pct: f64,
    pub baseline: SideInfo,
    pub candidate: SideInfo,
    pub elapsed_secs: f64,
    /// Why trials stopped: every case decided, or `--max-time`.
    pub stopped: String,
    pub cases: Vec<CaseResult>,
}

impl CompareReport {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.cases.iter().filter(|c| c.verdict == verdict).count()
    }
}

/// Escapes text for a Markdown table cell or line: Markdown punctuation gets a backslash,
/// `<`, `>` and `&` become entities (so nothing renders as HTML), newlines become spaces.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A number with 3–4 significant figures, thousands grouped for large ones.
fn figure(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        crate::report::group_thousands(v)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn ci_text(c: &Comparison) -> String {
    match (c.ci_low, c.ci_high) {
        (Some(_), Some(_)) if c.sign_p.is_none() => "exact count".into(),
        (Some(l), Some(h)) => format!("{:+.1}% .. {:+.1}%", (l - 1.0) * 100.0, (h - 1.0) * 100.0),
        _ => "-".into(),
    }
}

/// The main table: one row per case, its primary metric, the verdict.
pub fn verdict_table(report: &CompareReport) -> String {
    let header = [
        "case",
        "metric",
        "baseline",
        "candidate",
        "change",
        "95% CI",
        "pairs",
        "verdict",
        "note",
    ];
    let rows: Vec<Vec<String>> = report
        .cases
        .iter()
        .map(|case| {
            let m = &case.metrics[0];
            let c = &m.comparison;
            vec![
                escape_markdown(&case.case),
                m.label.clone(),
                figure(c.baseline_median),
                figure(c.candidate_median),
                format!("{:+.2}%", c.change_pct()),
                ci_text(c),
                c.pairs.to_string(),
                case.verdict.label().to_string(),
                escape_markdown(case.note.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    crate::report::aligned(&header, &rows)
}

/// Every metric of every case with its tests: the detail under the verdicts.
pub fn detail_table(report: &CompareReport) -> String {
    let header = [
        "case",
        "metric",
        "baseline",
        "candidate",
        "change",
        "95% CI",
        "sign p",
        "U p",
        "CV base",
        "CV cand",
        "MDE",
    ];
    let p = |v: Option<f64>| v.map_or("-".into(), |p| format!("{p:.3}"));
    let rows: Vec<Vec<String>> = report
        .cases
        .iter()
        .flat_map(|case| {
            case.metrics.iter().map(move |m| {
                let c = &m.comparison;
                vec![
                    escape_markdown(&case.case),
                    m.label.clone(),
                    figure(c.baseline_median),
                    figure(c.candidate_median),
                    format!("{:+.2}%", c.change_pct()),
                    ci_text(c),
                    p(c.sign_p),
                    p(c.mann_whitney_p),
                    format!("{:.1}%", c.baseline_cv * 100.0),
                    format!("{:.1}%", c.candidate_cv * 100.0),
                    c.mde_pct.map_or("-".into(), |m| format!("{m:.1}%")),
                ]
            })
        })
        .collect();
    crate::report::aligned(&header, &rows)
}

/// The summary for a pull-request comment: plain Markdown, no HTML, everything that came
/// from a source tree or a config escaped.
pub fn markdown(report: &CompareReport) -> String {
    let side = |s: &SideInfo| {
        format!(
            "{} (Valkey {}, {})",
            escape_markdown(&s.spec),
            escape_markdown(&s.version),
            escape_markdown(&s.source_id)
        )
    };
    let regressions = report.count(Verdict::Regression);
    let headline = if regressions > 0 {
        format!("**{regressions} regression(s)**")
    } else {
        "**no regression**".to_string()
    };
    let mut out = format!(
        "## valkey-bench compare: {headline}\n\n\
         - baseline: {}\n- candidate: {}\n- suite: {}, mode: {}, threshold: {}%\n\
         - {} case(s): {} regression, {} improvement, {} no change, {} unstable; \
         {:.0} s, stopped: {}\n\n",
        side(&report.baseline),
        side(&report.candidate),
        escape_markdown(&report.suite),
        escape_markdown(&report.mode),
        report.threshold_pct,
        report.cases.len(),
        regressions,
        report.count(Verdict::Improvement),
        report.count(Verdict::NoChange),
        report.count(Verdict::Unstable),
        report.elapsed_secs,
        escape_markdown(&report.stopped),
    );
    out.push_str(&verdict_table(report));
    out.push_str("\n### Every metric\n\n");
    out.push_str(&detail_table(report));
    out.push_str(METHOD_NOTE);
    out
}

/// How to read the tables, printed under them.
pub const METHOD_NOTE: &str = "\nChange is the median of per-pair ratios candidate/baseline. \
Trials alternate AB/BA on fresh servers; in the perf suite a pair is two adjacent slices of one trial. \
95% CI: paired bootstrap of the median. A regression needs \
the CI to exclude 0, the sign test p below 0.05, the change past the threshold, and (time mode) the \
server's CPU per request to move the same way. No change: the whole CI within ±threshold. \
Unstable: the trials could not decide. MDE: the smallest change these pairs detect at 80% power.\n";

#[cfg(test)]
mod tests {
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
    fn noise_or_too_few_pairs_is_unstable() {
        let (b, c) = pairs(8, 0.97, 0.15, 4);
        assert_eq!(
            compare(&b, &c, Better::Higher, 0.02).verdict,
            Verdict::Unstable
        );
        let (b, c) = pairs(5, 0.5, 0.0, 5);
        let r = compare(&b, &c, Better::Higher, 0.02);
        assert_eq!(r.verdict, Verdict::Unstable, "five pairs can never decide");
        assert_eq!(
            compare(&[], &[], Better::Higher, 0.02).verdict,
            Verdict::Unstable
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
    fn a_change_needs_the_server_cpu_to_agree() {
        let (b, c) = pairs(20, 0.95, 0.01, 7);
        let throughput = compare(&b, &c, Better::Higher, 0.02);
        // The server's CPU per request rose about as much: confirmed.
        let (cb, cc) = pairs(20, 1.05, 0.01, 8);
        let cpu = compare(&cb, &cc, Better::Lower, 0.02);
        let (v, note) = case_verdict(&throughput, Better::Higher, Some(&cpu));
        assert_eq!(v, Verdict::Regression);
        assert!(note.unwrap().starts_with("confirmed"));
        // It fell instead: the drop is not the server's doing.
        let (cb, cc) = pairs(20, 0.99, 0.01, 9);
        let cpu = compare(&cb, &cc, Better::Lower, 0.02);
        let (v, note) = case_verdict(&throughput, Better::Higher, Some(&cpu));
        assert_eq!(v, Verdict::Unstable);
        assert!(note.unwrap().starts_with("not confirmed"));
        // Without a second signal the primary decides alone.
        assert_eq!(
            case_verdict(&throughput, Better::Higher, None).0,
            Verdict::Regression
        );
        // No change stays no change whatever the CPU did.
        let (b, c) = pairs(20, 1.0, 0.005, 10);
        let same = compare(&b, &c, Better::Higher, 0.02);
        assert_eq!(
            case_verdict(&same, Better::Higher, Some(&cpu)).0,
            Verdict::NoChange
        );
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
        let case = analyze("<img src=x>|GET", &[metric], None, &trials, 0.02);
        assert_eq!(case.verdict, Verdict::Regression);
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
    fn the_bootstrap_is_reproducible() {
        let (b, c) = pairs(12, 1.01, 0.03, 6);
        assert_eq!(
            compare(&b, &c, Better::Higher, 0.02),
            compare(&b, &c, Better::Higher, 0.02)
        );
    }
}
