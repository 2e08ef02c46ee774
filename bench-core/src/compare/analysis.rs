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
