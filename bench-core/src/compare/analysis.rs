//! From trials to results: metrics, trial pairs, per-case results, the report of a
//! whole comparison.

use super::*;

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
    /// What the family decided this case on: the look, its α, the raw and Holm-adjusted
    /// p-values (time mode; `None` for exact counts).
    #[serde(default)]
    pub evidence: Option<family::Evidence>,
}

/// Analyzes one case's pairs: every metric compared, the first one primary, `confirm`
/// (a lower-is-better metric key) the second signal shown in the note. The verdict is
/// `Inconclusive` until a look of the family decides it ([`decide_look`]).
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
    let second = confirm.and_then(|key| {
        results
            .iter()
            .find(|r| r.metric == key && r.comparison.pairs > 0)
    });
    CaseResult {
        case: case.to_string(),
        verdict: Verdict::Inconclusive,
        note: second_signal(second.map(|r| &r.comparison)),
        metrics: results,
        trials: trials.to_vec(),
        evidence: None,
    }
}

/// Look `look` of a comparison at its open cases (`open`, indices into `cases`): Holm
/// over all the cases (the decided ones with p = 1) at the look's share of [`ALPHA`]
/// (`family::decide`); each open case gets its verdict (still `Inconclusive` if
/// undecided) and its evidence.
pub fn decide_look(cases: &mut [CaseResult], open: &[usize], look: usize, threshold: f64) {
    let family: Vec<(&Comparison, Better)> = open
        .iter()
        .map(|&i| {
            let m = &cases[i].metrics[0];
            (&m.comparison, m.better)
        })
        .collect();
    let decisions = family::decide(&family, cases.len(), look, ALPHA, threshold);
    for (d, &i) in decisions.into_iter().zip(open) {
        cases[i].verdict = d.verdict;
        cases[i].evidence = Some(d.evidence);
    }
}

/// The note for an exact count under the threshold: it moved, exactly, by this much
/// (`below threshold (+0.38%, exact)`), which "no change" would hide. `None` for an
/// unchanged count or a sampled comparison.
pub fn exact_note(c: &Comparison) -> Option<String> {
    let exact = c.sign_p.is_none() && c.pairs == 1;
    (exact && c.verdict == Verdict::NoChange && c.ratio != 1.0)
        .then(|| format!("below threshold ({:+.2}%, exact)", c.change_pct()))
}

/// Exact counts that moved one way across cases: a finding of its own even when every
/// case is under the threshold (a small cost added on a path every command takes). Reported
/// when at least 5 cases moved and the sign test over the cases' directions gives
/// p < [`ALPHA`].
pub fn exact_shift(cases: &[CaseResult]) -> Option<String> {
    let changes: Vec<f64> = cases
        .iter()
        .filter_map(|c| c.metrics.first())
        .filter(|m| m.comparison.sign_p.is_none())
        .map(|m| m.comparison.change_pct())
        .filter(|c| c.is_finite() && *c != 0.0)
        .collect();
    if changes.len() < 5 {
        return None;
    }
    let p = sign_test(&changes);
    if p >= ALPHA {
        return None;
    }
    let up = changes.iter().filter(|c| **c > 0.0).count();
    let (moved, way) = if 2 * up > changes.len() {
        (up, "up")
    } else {
        (changes.len() - up, "down")
    };
    let median = crate::stats::median(&changes).expect("five or more");
    Some(format!(
        "a consistent shift: {moved} of {} cases moved {way} (median {median:+.2}%, exact counts; sign test over the cases p = {p:.1e})",
        cases.len()
    ))
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
    /// What holds across cases, e.g. exact counts that all moved one way under the
    /// threshold.
    #[serde(default)]
    pub findings: Vec<String>,
}

impl CompareReport {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.cases.iter().filter(|c| c.verdict == verdict).count()
    }
}
