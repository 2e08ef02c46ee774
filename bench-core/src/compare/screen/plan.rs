//! Which cases a screened comparison times, in what order: the changed cases, largest
//! change first, then guards whose counts did not move, each place filled by the cheapest
//! case that can fill it; the budget cuts from the end.

use super::*;

/// Unmoved cases timed as guards against what counts cannot see.
pub const GUARDS: usize = 2;

/// How a case sorts among the moved: system calls moved first (a call costs hundreds of
/// nanoseconds, more than most instruction changes), then by the instruction change.
pub(super) fn weight(case: &CaseResult) -> (bool, f64) {
    let instructions = case
        .metrics
        .first()
        .filter(|m| is_exact(m) && !is_syscalls(m))
        .map_or(0.0, |m| m.comparison.change_pct().abs());
    let instructions = if instructions.is_finite() {
        instructions
    } else {
        0.0
    };
    (syscalls_moved(case), instructions)
}

/// What guard choice needs to know of a case besides its counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub pipeline: u32,
    /// Its working set, in keys.
    pub keyspace: u64,
    /// What one timed trial of it is expected to take, in seconds (its preloads weigh
    /// most: a trial on 1,000,000 keys of 1024 B takes about three on 100,000 of 32 B).
    pub trial_secs: f64,
}

/// The unmoved cases in the order they are worth timing as guards: those whose counts
/// vary between processes first (there the counts see least), then one on the largest
/// working set when there are several (memory stalls, which no count sees, weigh most
/// there), then the shallowest pipeline (where the kernel's share is largest) and the
/// deepest, each depth once, then the rest by the size of their exact change. Where
/// several cases could fill one of those places, the cheapest trial takes it (then the
/// largest exact change): a guard costs the same number of trials whichever case it is,
/// and the time it saves goes to the changed cases.
pub fn unmoved_order(screened: &[CaseResult], shapes: &[Shape]) -> Vec<usize> {
    let change = |i: usize| weight(&screened[i]).1;
    let noisy = |i: usize| {
        screened[i]
            .metrics
            .first()
            .is_some_and(|m| m.comparison.mde_pct.is_some())
    };
    let mut unmoved: Vec<usize> = (0..screened.len())
        .filter(|&i| !moved(&screened[i]))
        .collect();
    unmoved.sort_by(|&a, &b| change(b).total_cmp(&change(a)).then(a.cmp(&b)));
    let mut order: Vec<usize> = unmoved.iter().copied().filter(|&i| noisy(i)).collect();
    let smallest = unmoved.iter().map(|&i| shapes[i].keyspace).min();
    let largest = unmoved.iter().map(|&i| shapes[i].keyspace).max();
    if let (Some(small), Some(large)) = (smallest, largest)
        && large > small
        && !order.iter().any(|&g| shapes[g].keyspace == large)
        && let Some(&i) = cheapest(
            shapes,
            &mut unmoved.iter().filter(|&&i| shapes[i].keyspace == large),
        )
    {
        order.push(i);
    }
    let shallowest = unmoved.iter().map(|&i| shapes[i].pipeline).min();
    let deepest = unmoved.iter().map(|&i| shapes[i].pipeline).max();
    for depth in [shallowest, deepest].into_iter().flatten() {
        let covered = order.iter().any(|&g| shapes[g].pipeline == depth);
        if let Some(&i) = cheapest(
            shapes,
            &mut unmoved
                .iter()
                .filter(|&&i| shapes[i].pipeline == depth && !order.contains(&i)),
        ) && !covered
        {
            order.push(i);
        }
    }
    for &i in &unmoved {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    order
}

/// The first of the cheapest `candidates` to time (`min_by` keeps the first of equals).
fn cheapest<'a>(
    shapes: &[Shape],
    candidates: &mut dyn Iterator<Item = &'a usize>,
) -> Option<&'a usize> {
    candidates.min_by(|&&a, &&b| shapes[a].trial_secs.total_cmp(&shapes[b].trial_secs))
}

/// The cases to time, in order, from the screen's results and each case's shape: the
/// moved cases ([`weight`]: system calls moved first, then the largest instruction change
/// first), then the first [`GUARDS`] of [`unmoved_order`]. `fits(cases)` says whether
/// timing these cases (indices, the first of the order) fits the budget; the list is cut
/// to the most that fit, so guards go first when time is short: the changed cases are
/// the question the run was asked, and an unmoved count already vouches for its case.
pub fn timed_cases(
    screened: &[CaseResult],
    shapes: &[Shape],
    fits: &dyn Fn(&[usize]) -> bool,
) -> Vec<(usize, Screen)> {
    let mut moved_cases: Vec<usize> = (0..screened.len())
        .filter(|&i| moved(&screened[i]))
        .collect();
    moved_cases.sort_by(|&a, &b| {
        let (wa, wb) = (weight(&screened[a]), weight(&screened[b]));
        wb.0.cmp(&wa.0).then(wb.1.total_cmp(&wa.1)).then(a.cmp(&b))
    });
    let mut order: Vec<(usize, Screen)> = moved_cases
        .into_iter()
        .map(|i| (i, Screen::Moved))
        .collect();
    order.extend(
        unmoved_order(screened, shapes)
            .into_iter()
            .take(GUARDS)
            .map(|i| (i, Screen::Guard)),
    );
    let indices: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
    let mut m = order.len();
    while m > 0 && !fits(&indices[..m]) {
        m -= 1;
    }
    order.truncate(m);
    order
}
