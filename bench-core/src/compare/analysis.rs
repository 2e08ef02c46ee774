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
    /// In the default (screened) mode: whether the case was timed, and why
    /// (`screen.rs`); `None` in time and instructions modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<screen::Screen>,
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
        screen: None,
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
    if !exact {
        return None;
    }
    if let Some(bar) = c.mde_pct {
        // A count that varies between processes of one build (`compare_counts`).
        return Some(format!(
            "the count varies between processes of one build: changes under {bar:.2}% are not called ({:+.2}%)",
            c.change_pct()
        ));
    }
    (c.verdict == Verdict::NoChange && c.change_pct().abs() >= EXACT_FLOOR_PCT)
        .then(|| format!("below threshold ({:+.2}%, exact)", c.change_pct()))
}

/// Exact counts that differ by less than this (percent) are the same count: with the hash
/// seed pinned, one build's counts of a case side by side agree to ~0.02% (a few
/// event-loop iterations more or less in 10,000 requests); the table shows two decimals.
pub const EXACT_FLOOR_PCT: f64 = 0.05;

/// Instruction counts that moved one way across cases: a finding of its own even when
/// every case is under the threshold (a small cost added on a path every command takes).
/// A case takes part when its direction is clear: an exact count that moved by at least
/// [`EXACT_FLOOR_PCT`], or a count that varies between processes and moved past its own
/// widened bar. Reported when at least 5 cases take part and the sign test over their
/// directions gives p < [`ALPHA`]; the text says how many cases took part and why the
/// others did not. A shift in counts is a change, not a direction of speed.
pub fn exact_shift(cases: &[CaseResult]) -> Option<String> {
    let exact: Vec<&MetricResult> = cases
        .iter()
        .filter_map(|c| c.metrics.first())
        .filter(|m| m.comparison.sign_p.is_none() && m.comparison.pairs == 1)
        .collect();
    let clear = |m: &MetricResult| {
        let c = &m.comparison;
        let change = c.change_pct();
        change.is_finite()
            && match c.mde_pct {
                None => change.abs() >= EXACT_FLOOR_PCT,
                Some(_) => c.verdict != Verdict::NoChange,
            }
    };
    let changes: Vec<f64> = exact
        .iter()
        .filter(|m| clear(m))
        .map(|m| m.comparison.change_pct())
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
    let same = exact
        .iter()
        .filter(|m| m.comparison.mde_pct.is_none() && !clear(m))
        .count();
    let varying = exact.len() - changes.len() - same;
    let mut left_out = Vec::new();
    if same > 0 {
        left_out.push(format!("{same} unchanged"));
    }
    if varying > 0 {
        left_out.push(format!(
            "{varying} whose counts vary between processes more than they moved"
        ));
    }
    let left_out = if left_out.is_empty() {
        String::new()
    } else {
        format!("; left out: {}", left_out.join(", "))
    };
    let median = crate::stats::median(&changes).expect("five or more");
    Some(format!(
        "a consistent shift in instruction counts: {moved} of the {} cases whose count moved went {way} \
         (median {median:+.2}%; sign test over the cases p = {p:.1e}){left_out}; of {} cases in all",
        changes.len(),
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
    /// The screen's threshold in a screened comparison (mode `auto`), percent;
    /// `threshold_pct` is then the timed trials'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions_threshold_pct: Option<f64>,
}

impl CompareReport {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.cases.iter().filter(|c| c.verdict == verdict).count()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One case's exact count comparison at a 0.5% threshold (shared with `screen.rs`).
    pub(crate) fn exact_case(name: &str, baseline: f64, candidate: f64) -> CaseResult {
        let comparison = compare_exact(baseline, candidate, Better::Lower, 0.005);
        CaseResult {
            case: name.into(),
            verdict: comparison.verdict,
            note: exact_note(&comparison),
            metrics: vec![MetricResult {
                metric: "instructions_per_request".into(),
                label: "instructions/req".into(),
                better: Better::Lower,
                comparison,
            }],
            trials: Vec::new(),
            evidence: None,
            screen: None,
        }
    }

    #[test]
    fn an_exact_count_under_the_threshold_says_how_far_it_moved() {
        let moved = exact_case("GET", 4000.0, 4015.2);
        assert_eq!(moved.verdict, Verdict::NoChange);
        assert_eq!(
            moved.note.as_deref(),
            Some("below threshold (+0.38%, exact)")
        );
        // The same count (to the processes' agreement) has no note.
        assert_eq!(exact_case("GET", 4033.35, 4033.31).note, None);
        // Past the threshold it is a regression, and the verdict says it.
        let regressed = exact_case("GET", 4000.0, 4040.0);
        assert_eq!(regressed.verdict, Verdict::Regression);
        assert_eq!(regressed.note, None);
    }

    #[test]
    fn a_shift_across_cases_is_a_finding() {
        // 8 cases, 7 up by 0.1–0.4%, one down: sign test p = 2 · 9/256 = 0.07: no finding.
        let mut cases: Vec<CaseResult> = (0..7)
            .map(|i| {
                exact_case(
                    &format!("c{i}"),
                    4000.0,
                    4000.0 * (1.001 + 0.0005 * i as f64),
                )
            })
            .collect();
        cases.push(exact_case("down", 4000.0, 3996.0));
        assert_eq!(exact_shift(&cases), None);
        // Two more up: 9 of 10, p = 2 · 11/1024 = 0.021.
        for i in 0..2 {
            cases.push(exact_case(&format!("d{i}"), 4000.0, 4008.0));
        }
        let finding = exact_shift(&cases).unwrap();
        assert!(
            finding.starts_with(
                "a consistent shift in instruction counts: 9 of the 10 cases whose count moved went up"
            ),
            "{finding}"
        );
        // Counts that agree to the processes' precision are not a direction.
        let same: Vec<CaseResult> = (0..10)
            .map(|i| exact_case(&format!("s{i}"), 4033.35, 4033.36))
            .collect();
        assert_eq!(exact_shift(&same), None);
        // Sampled comparisons never count.
        assert_eq!(exact_shift(&[]), None);
        // Counts that vary between processes take part once they moved past their own
        // widened bar, and the text says how many cases it speaks of and why others not.
        let varying = |name: &str, b: [f64; 3], c: [f64; 3]| {
            let comparison = compare_counts(&b, &c, Better::Lower, 0.005);
            CaseResult {
                verdict: comparison.verdict,
                metrics: vec![MetricResult {
                    comparison,
                    ..exact_case(name, 1.0, 1.0).metrics[0].clone()
                }],
                ..exact_case(name, 1.0, 1.0)
            }
        };
        let mut cases: Vec<CaseResult> = (0..5)
            .map(|i| exact_case(&format!("e{i}"), 4000.0, 4400.0))
            .collect();
        // Moved +10% with rounds 1% apart: past its bar (0.5 + 2 × 1 = 2.5%).
        cases.push(varying("v1", [1000.0; 3], [1100.0, 1110.0, 1105.0]));
        // Moved +0.7% with rounds 1% apart: within its bar, left out.
        cases.push(varying("v2", [1000.0; 3], [1002.0, 1012.0, 1007.0]));
        cases.push(exact_case("same", 4000.0, 4000.0));
        let finding = exact_shift(&cases).unwrap();
        assert!(
            finding.starts_with(
                "a consistent shift in instruction counts: 6 of the 6 cases whose count moved went up"
            ),
            "{finding}"
        );
        assert!(
            finding.ends_with(
                "left out: 1 unchanged, 1 whose counts vary between processes more than they moved; of 8 cases in all"
            ),
            "{finding}"
        );
    }
}
