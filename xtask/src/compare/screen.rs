//! The default mode (`--mode auto`) of a perf comparison: every case's instruction count
//! on both sides first (`instructions.rs`, one callgrind server per side serving the
//! cases in turn), then wall-clock trials on the cases bench-core's `compare::screen`
//! picks (guards that did not move, then the moved cases), as many as `--max-time` fits,
//! on the schedule of `plan/interleave.rs`. The statistics and the merge rule are
//! bench-core's.

use std::time::Duration;

use bench_core::compare::screen::{self, Screen};
use bench_core::compare::{ALPHA, CaseResult, family};
use bench_core::shutdown::Shutdown;
use bench_core::suite::PerfCase;

use super::sides::{PERF_CONFIRM, PERF_METRICS, Sides};
use super::{instructions, trials};
use crate::events::Event;
use crate::plan::interleave::{Schedule, humanize};
use crate::run::CaseContext;
use crate::suites::instructions::{RUNS, SeedFile};
use crate::suites::perf::SLICES;

/// Server rounds per side that count a moved case again.
const RECOUNTS: usize = 2;

/// What the screened comparison needs beyond the cases and sides.
pub struct Budget {
    /// The whole comparison's time after the builds: the screen, then the trials.
    pub max_time: Duration,
    /// The timed trials' threshold and the screen's (fractions).
    pub threshold: f64,
    pub instructions_threshold: f64,
    pub slice_seconds: f64,
}

/// Screens, times, merges; returns the cases and why the trials stopped.
#[allow(clippy::too_many_arguments)]
pub fn compare_cases(
    cases: Vec<PerfCase>,
    sides: &Sides,
    ctxs: &[CaseContext<'_>; 2],
    seed: Option<&SeedFile>,
    budget: &Budget,
    clock: &dyn Fn() -> Duration,
    emit: &dyn Fn(Event),
    shutdown: &Shutdown,
) -> anyhow::Result<(Vec<CaseResult>, String)> {
    let started = clock();
    // With the seed pinned both sides of one round agree to a few hundredths of a percent
    // (moved cases get two more rounds, which measure what rounds add);
    // without, RUNS rounds up front tame the seed's ±0.3%.
    let runs = if seed.is_some() { 1 } else { RUNS };
    let mut counted = instructions::count_sides(&cases, ctxs, seed, runs, emit)?;
    let mut screened = instructions::results(&counted, budget.instructions_threshold);
    // A count that moved is counted again on two more fresh servers per side: a case
    // whose count varies between processes (ZADD's clock-seeded skiplist levels) then
    // shows its spread over three, and only a move past the threshold plus twice that
    // spread stands (`compare::compare_counts`).
    let moved_first: Vec<usize> = (0..cases.len())
        .filter(|&i| screened[i].verdict != bench_core::compare::Verdict::NoChange)
        .collect();
    if runs == 1 && !moved_first.is_empty() {
        emit(Event::Step {
            message: format!(
                "screen: {} case(s) moved; counting them twice more on fresh servers",
                moved_first.len()
            ),
        });
        let again: Vec<PerfCase> = moved_first.iter().map(|&i| cases[i].clone()).collect();
        let recount = instructions::count_sides(&again, ctxs, seed, RECOUNTS, emit)?;
        for side in 0..2 {
            for (&i, record) in moved_first.iter().zip(&recount[side]) {
                counted[side][i].add_runs(record);
            }
        }
        screened = instructions::results(&counted, budget.instructions_threshold);
    }
    instructions::write(sides, &counted)?;
    let moved = screened
        .iter()
        .filter(|c| c.verdict != bench_core::compare::Verdict::NoChange)
        .count();
    let screen_took = clock() - started;
    let left = budget.max_time.saturating_sub(screen_took);
    let per_trial = trial_estimate(budget.slice_seconds);
    let needs = |m: usize| per_trial * (family::look_trials(1, m, ALPHA) * m) as u32;
    let pipelines: Vec<u32> = cases.iter().map(|c| c.pipeline).collect();
    let wanted = screen::timed_cases(&screened, &pipelines, &|_| true);
    let timed = screen::timed_cases(&screened, &pipelines, &|m| needs(m) <= left);
    emit(Event::Step {
        message: format!(
            "screen: {moved} of {} case(s) moved past {:.1}% in instructions ({}); timing {} of them{}",
            cases.len(),
            budget.instructions_threshold * 100.0,
            humanize(screen_took),
            timed.len(),
            if timed.is_empty() {
                String::new()
            } else {
                format!(
                    " ({}), about {}",
                    timed
                        .iter()
                        .map(|(i, role)| format!(
                            "{}{}",
                            cases[*i].name,
                            if *role == Screen::Guard {
                                " as a guard"
                            } else {
                                ""
                            }
                        ))
                        .collect::<Vec<_>>()
                        .join(", "),
                    humanize(needs(timed.len()))
                )
            }
        ),
    });
    if timed.len() < wanted.len() {
        emit(Event::Warning {
            message: format!(
                "--max-time {} leaves {} after the screen: {} of the {} case(s) worth timing fit (about {} per trial); \
                 raise --max-time to time more; the counts decide the rest",
                humanize(budget.max_time),
                humanize(left),
                timed.len(),
                wanted.len(),
                humanize(per_trial),
            ),
        });
    }
    let mut timed_results: Vec<Option<(CaseResult, Screen)>> = vec![None; cases.len()];
    let mut stopped = format!("screen: {moved} moved (exact counts)");
    if !timed.is_empty() {
        let names: Vec<String> = timed.iter().map(|(i, _)| cases[*i].name.clone()).collect();
        let timed_cases: Vec<PerfCase> = timed.iter().map(|(i, _)| cases[*i].clone()).collect();
        let mut trial = trials::Perf::new(timed_cases, ctxs, sides);
        let schedule = Schedule {
            names: &names,
            metrics: &PERF_METRICS,
            confirm: Some(PERF_CONFIRM),
            threshold: budget.threshold,
            max_time: left.saturating_sub(clock() - started - screen_took),
            budget: format!(
                "the {} that --max-time {} left after the screen",
                humanize(left),
                humanize(budget.max_time)
            ),
        };
        let (results, why) = schedule.run(clock, emit, shutdown, &mut |i, n, order| {
            trial.run(i, n, order)
        })?;
        for ((i, role), result) in timed.iter().zip(results) {
            timed_results[*i] = Some((result, *role));
        }
        stopped = format!("{stopped}; timed: {why}");
    }
    let merged = screened
        .into_iter()
        .zip(timed_results)
        .map(|(s, t)| screen::merge(s, t))
        .collect();
    Ok((merged, stopped))
}

/// About how long one perf trial takes: a warming slice and [`SLICES`] measured ones per
/// side, plus two fresh servers and their preloads (measured here at about 1 s).
fn trial_estimate(slice_seconds: f64) -> Duration {
    Duration::from_secs_f64(2.0 * (SLICES + 1) as f64 * slice_seconds + 1.0)
}
