//! The default comparison: screen every case by exact instruction counts, then spend
//! wall-clock trials where they can decide something.
//!
//! Instruction counts under callgrind are exact (with the hash seed pinned, one build
//! repeats to 0.0003%), cheap per case once a server runs, and blind to what costs time
//! without costing user-space instructions: the kernel's share (at pipeline 1 most of a
//! request is `read`/`write`), cache and memory stalls (large values), I/O and threads.
//! So the plan is:
//! 1. **Screen.** Count every case on both sides. A case whose count moved by the
//!    instructions threshold has *moved*; its exact count decides it (a regression
//!    or an improvement), as in rustc's perf CI, where instruction counts are the primary
//!    metric because wall clock is too noisy to gate on.
//! 2. **Time.** Wall-clock trials (`family.rs`: Holm over the timed cases, α spent over
//!    looks) run on [`GUARDS`] cases that did not move, chosen for what instructions cannot
//!    see ([`timed_cases`]), then on the moved cases, most moved first, as many as the
//!    time budget fits. A timed case that the family calls a regression or an improvement
//!    takes that verdict ([`merge`]): the guard against a slowdown the count missed.
//! 3. An untimed or undecided case keeps its exact verdict; the report says which cases
//!    were timed and, for an undecided one, the smallest change its trials could see.
//!
//! The run's false-alarm rate is then the time family's (≤ α over the timed cases) plus
//! the count's: side by side, a count of one build against itself moves by a few
//! hundredths of a percent, except where the server draws random numbers from a
//! clock-seeded generator (ZADD) or, across rounds run at other moments, where clock-driven
//! event-loop work grows with a slower stream; a moved case is counted in two more rounds
//! and must move past the threshold plus twice the range of the rounds' ratios
//! (`compare_counts`). A change in the command path is found by its count
//! whatever the machine's noise.

use super::*;

/// Unmoved cases timed as guards against what instruction counts cannot see.
pub const GUARDS: usize = 2;

/// Why a case of a screened comparison was timed, or that it was not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Screen {
    /// Its instruction count moved past the threshold; timed to show what that costs.
    Moved,
    /// Its count did not move; timed as a guard.
    Guard,
    /// Its count decided it; the budget timed others.
    NotTimed,
}

/// The cases to time, in order, from the screen's results (`screened[i]`, exact) and each
/// case's pipeline depth: up to [`GUARDS`] unmoved cases (those whose count varies
/// between processes first, then the shallowest pipeline, where the kernel's share is
/// largest, and the deepest, each depth once, then by size of their exact change), then
/// the moved cases (and any the count could not decide), the largest change first. `fits(m)`
/// says whether `m` timed cases fit the budget; the list is cut to the most that fit.
pub fn timed_cases(
    screened: &[CaseResult],
    pipelines: &[u32],
    fits: &dyn Fn(usize) -> bool,
) -> Vec<(usize, Screen)> {
    let change = |i: usize| {
        let c = screened[i]
            .metrics
            .first()
            .map_or(0.0, |m| m.comparison.change_pct().abs());
        if c.is_finite() { c } else { 0.0 }
    };
    // A count that varies between processes (its bar widened) is the first guard: there
    // the count sees least.
    let noisy = |i: usize| {
        screened[i]
            .metrics
            .first()
            .is_some_and(|m| m.comparison.mde_pct.is_some())
    };
    let by_change = |mut v: Vec<usize>| {
        // Largest change first; ties in suite order.
        v.sort_by(|&a, &b| change(b).total_cmp(&change(a)).then(a.cmp(&b)));
        v
    };
    let unmoved = by_change(
        (0..screened.len())
            .filter(|&i| screened[i].verdict == Verdict::NoChange)
            .collect(),
    );
    let moved = by_change(
        (0..screened.len())
            .filter(|&i| screened[i].verdict != Verdict::NoChange)
            .collect(),
    );
    let mut guards: Vec<usize> = unmoved.iter().copied().filter(|&i| noisy(i)).collect();
    guards.truncate(GUARDS);
    let shallowest = unmoved.iter().map(|&i| pipelines[i]).min();
    let deepest = unmoved.iter().map(|&i| pipelines[i]).max();
    for depth in [shallowest, deepest].into_iter().flatten() {
        let covered = guards.iter().any(|&g| pipelines[g] == depth);
        if let Some(&i) = unmoved
            .iter()
            .find(|&&i| pipelines[i] == depth && !guards.contains(&i))
            && !covered
        {
            guards.push(i);
        }
    }
    for &i in &unmoved {
        if guards.len() < GUARDS && !guards.contains(&i) {
            guards.push(i);
        }
    }
    guards.truncate(GUARDS);
    let mut order: Vec<(usize, Screen)> = guards.into_iter().map(|i| (i, Screen::Guard)).collect();
    order.extend(moved.into_iter().map(|i| (i, Screen::Moved)));
    let mut m = order.len();
    while m > 0 && !fits(m) {
        m -= 1;
    }
    order.truncate(m);
    order
}

/// One case of a screened comparison: its exact result, and what its timed trials
/// found if it was timed (`role` Moved or Guard). A time verdict of regression or
/// improvement stands; otherwise the exact one does. Metrics: the count first, then the
/// time metrics; trials and evidence are the timed ones.
pub fn merge(screened: CaseResult, timed: Option<(CaseResult, Screen)>) -> CaseResult {
    let Some((time, role)) = timed else {
        return CaseResult {
            screen: Some(Screen::NotTimed),
            ..screened
        };
    };
    let decided_by_time = matches!(time.verdict, Verdict::Regression | Verdict::Improvement);
    let verdict = if decided_by_time {
        time.verdict
    } else {
        screened.verdict
    };
    let why = match role {
        Screen::Guard => "time guard",
        _ => "timed",
    };
    let primary = time.metrics.first();
    let time_note = match (time.verdict, primary) {
        (Verdict::Inconclusive, Some(m)) => match m.comparison.mde_pct {
            Some(mde) => format!(
                "{why}: {} {:+.1}%, undecided (MDE {mde:.1}%)",
                m.label,
                m.comparison.change_pct()
            ),
            None => format!("{why}: undecided"),
        },
        (v, Some(m)) => format!(
            "{why}: {} {:+.1}%, {}",
            m.label,
            m.comparison.change_pct(),
            v.label()
        ),
        (v, None) => format!("{why}: {}", v.label()),
    };
    let mut notes: Vec<String> = screened.note.into_iter().collect();
    notes.push(time_note);
    notes.extend(time.note);
    let mut metrics = screened.metrics;
    metrics.extend(time.metrics);
    CaseResult {
        case: screened.case,
        verdict,
        note: Some(notes.join("; ")),
        metrics,
        trials: time.trials,
        evidence: time.evidence,
        screen: Some(role),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(name: &str, change: f64) -> CaseResult {
        super::super::analysis::tests::exact_case(name, 1000.0, 1000.0 * (1.0 + change))
    }

    fn timed(verdict: Verdict, change: f64) -> CaseResult {
        let mut c = compare(
            &[100.0; 8],
            &[100.0 * (1.0 + change); 8],
            Better::Higher,
            0.02,
        );
        c.verdict = verdict;
        CaseResult {
            case: "x".into(),
            verdict,
            note: None,
            metrics: vec![MetricResult {
                metric: "ops_per_sec".into(),
                label: "ops/s".into(),
                better: Better::Higher,
                comparison: c,
            }],
            trials: Vec::new(),
            evidence: None,
            screen: None,
        }
    }

    #[test]
    fn guards_cover_both_pipeline_ends_then_moved_by_size() {
        // Cases 0..4 at P1, 4..8 at P16; 2 and 5 moved (5 more), 1 and 6 nearly did.
        let changes = [0.0, 0.004, 0.03, 0.0, 0.0, -0.08, 0.003, 0.0];
        let screened: Vec<CaseResult> = changes
            .iter()
            .enumerate()
            .map(|(i, c)| exact(&format!("c{i}"), *c))
            .collect();
        let pipelines = [1, 1, 1, 1, 16, 16, 16, 16];
        let all = timed_cases(&screened, &pipelines, &|_| true);
        assert_eq!(
            all,
            vec![
                (1, Screen::Guard),
                (6, Screen::Guard),
                (5, Screen::Moved),
                (2, Screen::Moved)
            ]
        );
        // The budget cuts from the end: the least moved goes first, the guards last.
        let three = timed_cases(&screened, &pipelines, &|m| m <= 3);
        assert_eq!(three.len(), 3);
        assert_eq!(three[2], (5, Screen::Moved));
        assert!(timed_cases(&screened, &pipelines, &|_| false).is_empty());
        // Every case moved: no guards, the moved ones by size.
        let moved: Vec<CaseResult> = [0.01, 0.05, 0.02].iter().map(|c| exact("m", *c)).collect();
        let order: Vec<usize> = timed_cases(&moved, &[1, 1, 16], &|_| true)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(order, [1, 2, 0]);
    }

    #[test]
    fn a_count_that_varies_between_processes_is_the_first_guard() {
        let mut screened: Vec<CaseResult> = (0..4).map(|i| exact(&format!("c{i}"), 0.0)).collect();
        // c3 (P16): rounds disagreed, its bar widened to 2.5%; it did not pass it.
        screened[3] = CaseResult {
            metrics: vec![MetricResult {
                comparison: compare_counts(
                    &[1000.0, 1000.0, 1000.0],
                    &[1002.0, 1012.0, 1006.0],
                    Better::Lower,
                    0.005,
                ),
                ..screened[3].metrics[0].clone()
            }],
            ..screened[3].clone()
        };
        screened[3].verdict = screened[3].metrics[0].comparison.verdict;
        assert_eq!(screened[3].verdict, Verdict::NoChange);
        let got = timed_cases(&screened, &[1, 1, 16, 16], &|_| true);
        // Then the shallowest depth; the deepest is covered by c3.
        assert_eq!(got, vec![(3, Screen::Guard), (0, Screen::Guard)]);
    }

    #[test]
    fn one_pipeline_depth_still_gets_two_guards() {
        let screened: Vec<CaseResult> = (0..4).map(|i| exact(&format!("c{i}"), 0.0)).collect();
        let got = timed_cases(&screened, &[16; 4], &|_| true);
        assert_eq!(got, vec![(0, Screen::Guard), (1, Screen::Guard)]);
    }

    #[test]
    fn a_decided_time_verdict_overrides_the_count_and_an_open_one_does_not() {
        // A guard whose count did not move but whose time did: the regression stands.
        let m = merge(
            exact("g", 0.0),
            Some((timed(Verdict::Regression, -0.06), Screen::Guard)),
        );
        assert_eq!(m.verdict, Verdict::Regression);
        assert_eq!(m.metrics.len(), 2);
        assert_eq!(m.screen, Some(Screen::Guard));
        assert!(
            m.note
                .as_deref()
                .unwrap()
                .contains("time guard: ops/s -6.0%, regression")
        );
        // A moved count with undecided time: the count's regression, the MDE said.
        let m = merge(
            exact("m", 0.03),
            Some((timed(Verdict::Inconclusive, -0.01), Screen::Moved)),
        );
        assert_eq!(m.verdict, Verdict::Regression);
        assert!(
            m.note.as_deref().unwrap().contains("undecided (MDE"),
            "{:?}",
            m.note
        );
        // An unmoved guard with undecided time keeps its exact no change.
        let m = merge(
            exact("g", 0.0),
            Some((timed(Verdict::Inconclusive, 0.01), Screen::Guard)),
        );
        assert_eq!(m.verdict, Verdict::NoChange);
        // Untimed: exact, marked.
        let m = merge(exact("u", 0.002), None);
        assert_eq!(m.verdict, Verdict::NoChange);
        assert_eq!(m.screen, Some(Screen::NotTimed));
        assert_eq!(m.metrics.len(), 1);
    }
}
