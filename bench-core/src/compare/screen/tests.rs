//! The screen's rules on constructed cases: what a count may decide, and what only time may.

use super::*;

/// Cases of these pipeline depths, all on one working set.
fn shapes(pipelines: &[u32]) -> Vec<Shape> {
    pipelines
        .iter()
        .map(|&pipeline| Shape {
            pipeline,
            keyspace: 1000,
            trial_secs: 5.0,
        })
        .collect()
}

fn exact(name: &str, change: f64) -> CaseResult {
    super::super::analysis::tests::exact_case(name, 1000.0, 1000.0 * (1.0 + change))
}

/// An exact case whose system calls (one kind, `name`) went from `b` to `c` per
/// request, instructions `change`.
fn with_calls(name: &str, change: f64, b: f64, c: f64) -> CaseResult {
    let mut case = exact(name, change);
    let (comparison, _) = compare_calls(&[b], &[c], SYSCALL_THRESHOLD_PER_REQUEST);
    for (metric, label) in [
        (SYSCALLS.to_string(), "syscalls/req".to_string()),
        (format!("{SYSCALLS}.getppid"), "getppid".to_string()),
    ] {
        case.metrics.push(MetricResult {
            metric,
            label,
            better: Better::Lower,
            comparison: comparison.clone(),
        });
    }
    case
}

/// A timed result: ops/s `change` over 8 trials; `verdict` as the family decided.
fn timed(verdict: Verdict, change: f64) -> CaseResult {
    timed_with(verdict, &[100.0 * (1.0 + change); 8])
}

fn timed_with(verdict: Verdict, candidate: &[f64]) -> CaseResult {
    let c = compare(&[100.0; 8], candidate, Better::Higher, 0.02);
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

const RULE: Rule = Rule {
    threshold: 0.02,
    blind: false,
};

/// With two working sets, one guard is on the larger (where memory stalls, which no count
/// sees, weigh most), the other covers a pipeline end the first did not.
#[test]
fn a_guard_runs_on_the_largest_working_set() {
    let screened: Vec<CaseResult> = (0..6).map(|i| exact(&format!("c{i}"), 0.0)).collect();
    let shape = |pipeline, keyspace| Shape {
        pipeline,
        keyspace,
        trial_secs: 5.0,
    };
    let shapes = [
        shape(1, 100_000),
        shape(16, 100_000),
        shape(1, 1_000_000),
        shape(16, 1_000_000),
        shape(1, 100_000),
        shape(16, 100_000),
    ];
    let guards = timed_cases(&screened, &shapes, &|_| true);
    assert_eq!(guards, vec![(2, Screen::Guard), (1, Screen::Guard)]);
    // One working set: the pipeline ends, as before.
    let one: Vec<Shape> = shapes.iter().map(|s| shape(s.pipeline, 5)).collect();
    assert_eq!(
        timed_cases(&screened, &one, &|_| true),
        vec![(0, Screen::Guard), (1, Screen::Guard)]
    );
}

/// A guard costs the same number of trials whichever case it is: of the cases that could
/// fill a place, the cheapest trial takes it, so the time goes to the changed cases.
#[test]
fn the_cheapest_case_that_fills_a_guards_place_takes_it() {
    let mut screened: Vec<CaseResult> = (0..4).map(|i| exact(&format!("c{i}"), 0.0)).collect();
    // c0 has the largest exact change (still under the threshold) and the dearest trial.
    screened[0] = exact("c0", 0.004);
    let shape = |pipeline, keyspace, trial_secs| Shape {
        pipeline,
        keyspace,
        trial_secs,
    };
    let shapes = [
        shape(1, 1_000_000, 13.0),
        shape(1, 1_000_000, 6.0),
        shape(16, 100_000, 9.0),
        shape(16, 100_000, 4.0),
    ];
    assert_eq!(
        timed_cases(&screened, &shapes, &|_| true),
        vec![(1, Screen::Guard), (3, Screen::Guard)]
    );
    // At equal cost, the larger exact change decides.
    let even: Vec<Shape> = shapes
        .iter()
        .map(|s| shape(s.pipeline, s.keyspace, 5.0))
        .collect();
    assert_eq!(
        timed_cases(&screened, &even, &|_| true),
        vec![(0, Screen::Guard), (2, Screen::Guard)]
    );
}

#[test]
fn moved_by_size_then_guards_covering_both_pipeline_ends() {
    // Cases 0..4 at P1, 4..8 at P16; 2 and 5 moved (5 more), 1 and 6 nearly did.
    let changes = [0.0, 0.004, 0.03, 0.0, 0.0, -0.08, 0.003, 0.0];
    let screened: Vec<CaseResult> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| exact(&format!("c{i}"), *c))
        .collect();
    let pipelines = [1, 1, 1, 1, 16, 16, 16, 16];
    let all = timed_cases(&screened, &shapes(&pipelines), &|_| true);
    assert_eq!(
        all,
        vec![
            (5, Screen::Moved),
            (2, Screen::Moved),
            (1, Screen::Guard),
            (6, Screen::Guard)
        ]
    );
    // The budget cuts from the end: the guards go first, then the least moved.
    let three = timed_cases(&screened, &shapes(&pipelines), &|m: &[usize]| m.len() <= 3);
    assert_eq!(three, all[..3]);
    let one = timed_cases(&screened, &shapes(&pipelines), &|m: &[usize]| m.len() <= 1);
    assert_eq!(one, vec![(5, Screen::Moved)]);
    assert!(timed_cases(&screened, &shapes(&pipelines), &|_| false).is_empty());
    // Every case moved: no guards, the moved ones by size.
    let moved: Vec<CaseResult> = [0.01, 0.05, 0.02].iter().map(|c| exact("m", *c)).collect();
    let order: Vec<usize> = timed_cases(&moved, &shapes(&[1, 1, 16]), &|_| true)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(order, [1, 2, 0]);
    // A case whose system calls moved goes before any instruction change.
    let mixed = vec![
        exact("a", 0.2),
        with_calls("b", 0.0, 1.0, 2.0),
        exact("c", 0.0),
    ];
    let order: Vec<(usize, Screen)> = timed_cases(&mixed, &shapes(&[1, 1, 1]), &|_| true);
    assert_eq!(
        order,
        vec![(1, Screen::Moved), (0, Screen::Moved), (2, Screen::Guard)]
    );
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
    let got = timed_cases(&screened, &shapes(&[1, 1, 16, 16]), &|_| true);
    // Then the shallowest depth; the deepest is covered by c3.
    assert_eq!(got, vec![(3, Screen::Guard), (0, Screen::Guard)]);
}

#[test]
fn one_pipeline_depth_still_gets_two_guards() {
    let screened: Vec<CaseResult> = (0..4).map(|i| exact(&format!("c{i}"), 0.0)).collect();
    let got = timed_cases(&screened, &shapes(&[16; 4]), &|_| true);
    assert_eq!(got, vec![(0, Screen::Guard), (1, Screen::Guard)]);
}

#[test]
fn a_moved_count_is_a_change_never_a_direction() {
    // Instructions +26.8%, untimed: changed, not timed; inconclusive, not a regression.
    let m = merge(exact("m", 0.268), None, RULE);
    assert_eq!(m.verdict, Verdict::Inconclusive);
    assert_eq!(m.screen, Some(Screen::NotTimed));
    assert_eq!(
        m.note.as_deref(),
        Some("changed, not timed: instructions/req +26.8%")
    );
    // Timed faster: time says improvement, whatever the count says.
    let m = merge(
        exact("m", 0.268),
        Some((timed(Verdict::Improvement, 0.32), Screen::Moved)),
        RULE,
    );
    assert_eq!(m.verdict, Verdict::Improvement);
    assert!(
        m.note
            .as_deref()
            .unwrap()
            .starts_with("changed: instructions/req +26.8%; timed: ops/s +32.0%, improvement"),
        "{:?}",
        m.note
    );
    // Timed and undecided: inconclusive, with the MDE; never the count's call.
    let m = merge(
        exact("m", 0.03),
        Some((timed(Verdict::Inconclusive, -0.01), Screen::Moved)),
        RULE,
    );
    assert_eq!(m.verdict, Verdict::Inconclusive);
    assert!(m.note.as_deref().unwrap().contains("undecided (MDE"));
    // Timed within ±threshold: no change in time, the count's change still said.
    let m = merge(
        exact("m", 0.03),
        Some((timed(Verdict::NoChange, 0.001), Screen::Moved)),
        RULE,
    );
    assert_eq!(m.verdict, Verdict::NoChange);
    assert!(
        m.note
            .as_deref()
            .unwrap()
            .contains("changed: instructions/req +3.0%")
    );
    assert!(m.note.as_deref().unwrap().contains("within ±2%"));
    // A system call appeared: changed, named by kind.
    let m = merge(with_calls("k", 0.0, 0.0, 1.0), None, RULE);
    assert_eq!(m.verdict, Verdict::Inconclusive);
    assert!(
        m.note
            .as_deref()
            .unwrap()
            .starts_with("changed, not timed: getppid +1.00/req; kernel-side change"),
        "{:?}",
        m.note
    );
}

#[test]
fn unmoved_counts_vouch_unless_time_contradicts_them() {
    // Untimed and unmoved: the counts vouch.
    let m = merge(exact("u", 0.002), None, RULE);
    assert_eq!(m.verdict, Verdict::NoChange);
    assert_eq!(m.metrics.len(), 1);
    // ... but not once a guard showed them blind.
    let m = merge(
        exact("u", 0.0),
        None,
        Rule {
            blind: true,
            ..RULE
        },
    );
    assert_eq!(m.verdict, Verdict::Inconclusive);
    // A guard whose time regressed: the regression stands, and it is blindness.
    let screened = exact("g", 0.0);
    let time = timed(Verdict::Regression, -0.06);
    assert!(blind(&screened, &time, 0.02));
    let m = merge(screened, Some((time, Screen::Guard)), RULE);
    assert_eq!(m.verdict, Verdict::Regression);
    assert!(
        m.note
            .as_deref()
            .unwrap()
            .contains("time guard: ops/s -6.0%, regression")
    );
    // A guard whose interval lies beyond -2% though the family did not decide it:
    // inconclusive, never no change, and the counts are blind.
    let slower = [91.0, 92.0, 93.0, 90.0, 92.5, 91.5, 93.5, 92.0];
    let time = timed_with(Verdict::Inconclusive, &slower);
    assert!(beyond(&time.metrics[0].comparison, 0.02));
    assert!(blind(&exact("g", 0.0), &time, 0.02));
    let m = merge(exact("g", 0.0), Some((time, Screen::Guard)), RULE);
    assert_eq!(m.verdict, Verdict::Inconclusive);
    assert!(
        m.note
            .as_deref()
            .unwrap()
            .contains("beyond ±2% but not significant"),
        "{:?}",
        m.note
    );
    // A guard whose interval straddles the threshold: the counts vouch.
    let wide = [97.0, 103.0, 99.0, 101.0, 96.0, 104.0, 100.0, 100.5];
    let time = timed_with(Verdict::Inconclusive, &wide);
    assert!(!beyond(&time.metrics[0].comparison, 0.02));
    assert!(!blind(&exact("g", 0.0), &time, 0.02));
    let m = merge(exact("g", 0.0), Some((time.clone(), Screen::Guard)), RULE);
    assert_eq!(m.verdict, Verdict::NoChange);
    // ... unless the counts were shown blind: then time alone decides, and it did not.
    let m = merge(
        exact("g", 0.0),
        Some((time, Screen::Guard)),
        Rule {
            blind: true,
            ..RULE
        },
    );
    assert_eq!(m.verdict, Verdict::Inconclusive);
    // A moved case is never "blindness": its counts saw the change.
    assert!(!blind(
        &exact("m", 0.05),
        &timed(Verdict::Regression, -0.06),
        0.02
    ));
}

#[test]
fn a_kernel_side_change_is_named() {
    // A system call planted, instructions unmoved.
    let case = with_calls("k", 0.0, 2.0, 3.0);
    let time = timed(Verdict::Regression, -0.08);
    let merged = merge(case, Some((time, Screen::Moved)), RULE);
    assert_eq!(merged.verdict, Verdict::Regression);
    assert!(
        merged
            .note
            .as_deref()
            .unwrap()
            .contains("kernel-side change: getppid +1.00/req with instructions unchanged"),
        "{:?}",
        merged.note
    );
    // The server's system CPU rose in a guard whose counts did not move, and time called
    // it a regression.
    let mut time = timed(Verdict::Regression, -0.06);
    let mut sys = compare(&[1.0; 8], &[1.2; 8], Better::Lower, 0.02);
    sys.verdict = Verdict::Regression;
    time.metrics.push(MetricResult {
        metric: SERVER_SYS.into(),
        label: "server sys µs/req".into(),
        better: Better::Lower,
        comparison: sys,
    });
    let merged = merge(exact("g", 0.0), Some((time, Screen::Guard)), RULE);
    assert!(
        merged
            .note
            .as_deref()
            .unwrap()
            .contains("kernel-side change: server system CPU/req +20.0%"),
        "{:?}",
        merged.note
    );
    let found = findings(std::slice::from_ref(&merged), &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("kernel-side change: g (server system CPU/req +20.0%"));
    // The same rise in a case time did not call a regression names nothing: the metric's
    // own test alone false-alarms (an A/A run in time mode named one).
    let mut undecided = merged.clone();
    undecided.screen = None;
    undecided.verdict = Verdict::Inconclusive;
    assert_eq!(kernel_side_in_time(std::slice::from_ref(&undecided)), None);
    undecided.verdict = Verdict::Regression;
    assert!(
        kernel_side_in_time(std::slice::from_ref(&undecided))
            .unwrap()
            .starts_with("kernel-side change: g (server system CPU/req +20.0%")
    );
    // Instructions that moved as well: still kernel-side, with both named.
    assert_eq!(
        kernel_side(
            &with_calls("k", 0.05, 2.0, 3.0),
            Some(&timed(Verdict::Regression, -0.1))
        )
        .as_deref(),
        Some("kernel-side change: getppid +1.00/req, with instructions/req +5.0%")
    );
    // Instructions moved and system calls did not: the system CPU is not named.
    let mut time = timed(Verdict::Regression, -0.1);
    let mut sys = compare(&[1.0; 8], &[1.2; 8], Better::Lower, 0.02);
    sys.verdict = Verdict::Regression;
    time.metrics.push(MetricResult {
        metric: SERVER_SYS.into(),
        label: "server sys µs/req".into(),
        better: Better::Lower,
        comparison: sys,
    });
    assert_eq!(kernel_side(&exact("i", 0.05), Some(&time)), None);
    // A system call planted in a case that was not timed: named all the same.
    let untimed = merge(with_calls("k", 0.0, 0.0, 1.0), None, RULE);
    assert!(changed_not_timed(&untimed));
    assert!(
        untimed
            .note
            .as_deref()
            .unwrap()
            .ends_with("; kernel-side change: getppid +1.00/req with instructions unchanged"),
        "{:?}",
        untimed.note
    );
}

#[test]
fn findings_count_the_changed_cases_and_say_counts_do_not_give_a_direction() {
    let cases: Vec<CaseResult> = vec![
        merge(exact("a", 0.1), None, RULE),
        merge(
            exact("b", 0.2),
            Some((timed(Verdict::Improvement, 0.3), Screen::Moved)),
            RULE,
        ),
        merge(exact("c", 0.0), None, RULE),
    ];
    let found = findings(&cases, &["g".into()]);
    assert_eq!(
        found[0],
        "exact counts changed in 2 of 3 cases (instructions/req +10.0% .. +20.0% in 2): a count says \
         that a case changed, not which way; time decides (1 of them timed)"
    );
    // c did not move and was not timed: no guard checked what counts cannot see.
    assert!(
        found[1].starts_with("0 of 1 guard(s) timed (the changed cases took the time first)"),
        "{}",
        found[1]
    );
    assert!(found[1].contains("was not checked by time"));
    assert!(found[2].starts_with("the counts are blind to this change: time moved in g"));
    assert!(found[2].ends_with("and the 1 left untimed are inconclusive"));
    // With its guard timed, that finding is gone.
    let mut guarded = cases.clone();
    guarded[2] = merge(
        exact("c", 0.0),
        Some((timed(Verdict::NoChange, 0.0), Screen::Guard)),
        RULE,
    );
    assert!(
        !findings(&guarded, &[])
            .iter()
            .any(|f| f.contains("guard(s) timed"))
    );
}

#[test]
fn the_smallest_marginal_moves_are_recounted_first() {
    let screened = [
        exact("far", 0.12),
        exact("two", 0.02),
        exact("same", 0.001),
        exact("one", 0.008),
        exact("down", -0.015),
    ];
    assert_eq!(recount_order(&screened), [3, 4, 1]);
}

#[test]
fn only_a_case_that_moved_by_as_little_as_noise_is_counted_again() {
    assert!(worth_recounting(&exact("near", 0.008)));
    assert!(!worth_recounting(&exact("far", 0.12)));
    assert!(!worth_recounting(&exact("same", 0.001)));
    // A whole system call per request is no noise, whatever the instructions did.
    assert!(!worth_recounting(&with_calls("k", 0.0, 0.0, 1.0)));
    assert!(worth_recounting(&with_calls("b", 0.0, 0.0625, 0.125)));
    // A clear instruction change beside a marginal system-call one: the marginal one is
    // counted again before the case is said to have changed in it.
    assert!(worth_recounting(&with_calls("m", 0.12, 1.0, 1.011)));
}
