//! The default mode (`--mode auto`) of a perf comparison: every case's exact counts on
//! both sides first (`instructions.rs`: instructions and system calls per request, one
//! callgrind server per side serving the cases in turn), then wall-clock trials on the
//! cases bench-core's `compare::screen` picks (guards that did not move, then the changed
//! cases), as many as `--max-time` fits, on the schedule of `plan/interleave.rs`; when a
//! guard's time moves where its counts did not, more unmoved cases in the time left. Time
//! decides every direction; the statistics and the merge rule are bench-core's.

use std::time::Duration;

use bench_core::compare::screen::{self, Screen};
use bench_core::compare::{ALPHA, CaseResult, family};
use bench_core::perf::PerfCase;
use bench_core::shutdown::Shutdown;

use super::sides::{PERF_CONFIRM, PERF_METRICS, Sides};
use super::{instructions, trials};
use crate::case::CaseContext;
use crate::case::preload::Reads;
use crate::counts::instructions::{RUNS, SeedFile};
use crate::events::Event;
use crate::plan::interleave::{Schedule, humanize};
use crate::suites::perf::{self, SLICES};

/// Server rounds per side that count a moved case again.
const RECOUNTS: usize = 2;

/// Marginal moves recounted whatever the budget: one round's count of a small move is not
/// trusted (under load a process can run an extra event-loop pass per batch, +2.8% of a
/// GET/P16 count, seen once in a full test run), and a few cases cost a server start and
/// seconds, which the first pass's pace per case cannot estimate.
const ALWAYS_RECOUNTED: usize = 4;

/// What the screened comparison needs beyond the cases and sides.
pub struct Budget {
    /// The whole comparison's time after the builds: the screen, then the trials.
    pub max_time: Duration,
    /// The timed trials' threshold and the screen's (fractions).
    pub threshold: f64,
    pub instructions_threshold: f64,
    pub slice_seconds: f64,
}

/// Screens (counting on `count_ctxs`' servers: this machine's), times (on `ctxs`':
/// the run's hosts), merges; returns the cases, why the trials stopped, and the findings
/// across cases.
#[allow(clippy::too_many_arguments)]
pub fn compare_cases(
    cases: Vec<PerfCase>,
    sides: &Sides,
    count_ctxs: &[CaseContext<'_>; 2],
    ctxs: &[CaseContext<'_>; 2],
    seed: Option<&SeedFile>,
    syscalls: bool,
    budget: &Budget,
    clock: &dyn Fn() -> Duration,
    emit: &dyn Fn(Event),
    shutdown: &Shutdown,
) -> anyhow::Result<(Vec<CaseResult>, String, Vec<String>)> {
    let started = clock();
    // With the seed pinned both sides of one round agree to a few hundredths of a percent
    // (moved cases get two more rounds, which measure what rounds add);
    // without, RUNS rounds up front tame the seed's ±0.3%.
    let runs = if seed.is_some() { 1 } else { RUNS };
    let counting = instructions::Counting {
        seed,
        runs,
        syscalls,
    };
    let mut counted = instructions::count_sides(&cases, count_ctxs, counting, emit)?;
    let mut screened = instructions::results(&counted, budget.instructions_threshold);
    // A count that moved by as little as processes of one build can differ is counted
    // again on two more fresh servers per side: a case whose count varies between
    // processes (ZADD's clock-seeded skiplist levels, a batching-dependent system call)
    // then shows its spread over three, and only a move past the threshold plus twice
    // that spread stands (`compare::compare_counts`, `compare::compare_calls`). A case
    // that moved clearly more is timed anyway (`screen::worth_recounting`).
    //
    // The recount is planned to end by about half of `--max-time`, at the first pass's
    // pace (a round of a case costs about what it cost there: an estimate, which fresh
    // servers and a large preload can exceed), the smallest moves first; a case it does
    // not reach stays changed on its one round.
    let mut moved_first = screen::recount_order(&screened);
    let first_pass = clock() - started;
    let per_round = first_pass.as_secs_f64() / cases.len().max(1) as f64;
    let room = (budget.max_time / 2)
        .saturating_sub(first_pass)
        .as_secs_f64();
    let fit =
        ((room / (RECOUNTS as f64 * per_round).max(1e-3)).floor() as usize).max(ALWAYS_RECOUNTED);
    if runs == 1 && moved_first.len() > fit {
        emit(Event::Warning {
            message: format!(
                "screen: {} case(s) moved by as little as processes can differ; recounting the {fit} \
                 with the smallest moves that fit half of --max-time {} (about {} a case, at the \
                 first pass's pace); the rest stay changed on one round's count",
                moved_first.len(),
                humanize(budget.max_time),
                humanize(Duration::from_secs_f64(RECOUNTS as f64 * per_round)),
            ),
        });
        moved_first.truncate(fit);
    }
    if runs == 1 && !moved_first.is_empty() {
        emit(Event::Step {
            message: format!(
                "screen: {} case(s) moved by as little as processes can differ; counting them twice more on fresh servers",
                moved_first.len()
            ),
        });
        let again: Vec<PerfCase> = moved_first.iter().map(|&i| cases[i].clone()).collect();
        let recount = instructions::count_sides(
            &again,
            count_ctxs,
            instructions::Counting {
                runs: RECOUNTS,
                ..counting
            },
            emit,
        )?;
        for side in 0..2 {
            for (&i, record) in moved_first.iter().zip(&recount[side]) {
                counted[side][i].add_runs(record);
            }
        }
        screened = instructions::results(&counted, budget.instructions_threshold);
    }
    instructions::write(sides, &counted)?;
    let moved = screened.iter().filter(|c| screen::moved(c)).count();
    let screen_took = clock() - started;
    let left = budget.max_time.saturating_sub(screen_took);
    // A first look of these cases: each the trials the family's size asks for.
    let needs = |plan: &[usize]| {
        let one_each: Duration = plan
            .iter()
            .map(|&i| trial_estimate(&cases[i], budget.slice_seconds))
            .sum();
        one_each * family::look_trials(1, plan.len(), ALPHA) as u32
    };
    let shapes: Vec<screen::Shape> = cases
        .iter()
        .map(|c| screen::Shape {
            pipeline: c.pipeline,
            keyspace: c.keyspace,
            trial_secs: trial_estimate(c, budget.slice_seconds).as_secs_f64(),
        })
        .collect();
    let wanted = screen::timed_cases(&screened, &shapes, &|_| true);
    let wanted_plan: Vec<usize> = wanted.iter().map(|(i, _)| *i).collect();
    let timed_plan =
        |timed: &[(usize, Screen)]| -> Vec<usize> { timed.iter().map(|(i, _)| *i).collect() };
    let timed = screen::timed_cases(&screened, &shapes, &|plan| needs(plan) <= left);
    let counted_what = if syscalls {
        "instructions or system calls"
    } else {
        "instructions"
    };
    emit(Event::Step {
        message: format!(
            "screen: {moved} of {} case(s) changed in {counted_what} ({}); timing {} of them{}",
            cases.len(),
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
                    humanize(needs(&timed_plan(&timed)))
                )
            }
        ),
    });
    if timed.len() < wanted.len() {
        let guards =
            |plan: &[(usize, Screen)]| plan.iter().filter(|(_, r)| *r == Screen::Guard).count();
        emit(Event::Warning {
            message: format!(
                "--max-time {} leaves {} after the screen: {} of the {} case(s) worth timing fit (a first look of \
                 them all needs about {}); {}: about {} in all would time them all",
                humanize(budget.max_time),
                humanize(left),
                timed.len(),
                wanted.len(),
                humanize(needs(&wanted_plan)),
                if timed.len() < wanted.len() - guards(&wanted) {
                    "a changed case left untimed is inconclusive (\"changed, not timed\"), and no guard is timed"
                        .to_string()
                } else {
                    format!(
                        "every changed case is timed, {} of {} guard(s)",
                        guards(&timed),
                        guards(&wanted)
                    )
                },
                humanize(screen_took + needs(&wanted_plan)),
            ),
        });
    }
    let mut timed_results: Vec<Option<(CaseResult, Screen)>> = vec![None; cases.len()];
    let mut stopped = format!("screen: {moved} changed (exact counts)");
    let time = |plan: &[(usize, Screen)], max_time: Duration, budget_text: String| {
        let names: Vec<String> = plan.iter().map(|(i, _)| cases[*i].name.clone()).collect();
        let timed_cases: Vec<PerfCase> = plan.iter().map(|(i, _)| cases[*i].clone()).collect();
        let mut trial = trials::Perf::new(timed_cases, ctxs, sides);
        let schedule = Schedule {
            names: &names,
            metrics: &PERF_METRICS,
            confirm: Some(PERF_CONFIRM),
            threshold: budget.threshold,
            max_time,
            budget: budget_text,
        };
        schedule.run(clock, emit, shutdown, &mut |i, n, order| {
            trial.run(i, n, order)
        })
    };
    if !timed.is_empty() {
        let max_time = left.saturating_sub(clock() - started - screen_took);
        let (results, why) = time(
            &timed,
            max_time,
            format!(
                "the {} that --max-time {} left after the screen",
                humanize(left),
                humanize(budget.max_time)
            ),
        )?;
        for ((i, role), result) in timed.iter().zip(results) {
            timed_results[*i] = Some((result, *role));
        }
        stopped = format!("{stopped}; timed: {why}");
    }
    // A guard whose time moved while its counts did not: the counts are blind to this
    // change, so they vouch for no unmoved case; the rest of the budget times more of
    // them (a family of its own, run only once time has measured a change).
    let blind_guards: Vec<String> = timed_results
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let (result, _) = t.as_ref()?;
            screen::blind(&screened[i], result, budget.threshold).then(|| cases[i].name.clone())
        })
        .collect();
    if !blind_guards.is_empty() {
        let rest = budget.max_time.saturating_sub(clock() - started);
        let untimed: Vec<usize> = screen::unmoved_order(&screened, &shapes)
            .into_iter()
            .filter(|&i| timed_results[i].is_none())
            .collect();
        let mut m = untimed.len();
        while m > 0 && needs(&untimed[..m]) > rest {
            m -= 1;
        }
        let plan: Vec<(usize, Screen)> = untimed[..m].iter().map(|&i| (i, Screen::Guard)).collect();
        emit(Event::Warning {
            message: format!(
                "the counts are blind to this change: time moved in {} while its counts did not; \
                 timing {m} more unmoved case(s) of {} in the {} left",
                blind_guards.join(", "),
                untimed.len(),
                humanize(rest)
            ),
        });
        if !plan.is_empty() {
            let (results, why) = time(&plan, rest, format!("the {} left", humanize(rest)))?;
            for ((i, role), result) in plan.iter().zip(results) {
                timed_results[*i] = Some((result, *role));
            }
            stopped = format!("{stopped}; unmoved cases timed: {why}");
        }
    }
    let rule = screen::Rule {
        threshold: budget.threshold,
        blind: !blind_guards.is_empty(),
    };
    let merged: Vec<CaseResult> = screened
        .into_iter()
        .zip(timed_results)
        .map(|(s, t)| screen::merge(s, t, rule))
        .collect();
    let mut findings = screen::findings(&merged, &blind_guards);
    let not_timed = merged
        .iter()
        .filter(|c| screen::changed_not_timed(c))
        .count();
    if not_timed > 0 {
        findings.push(format!(
            "{not_timed} changed case(s) not timed: --max-time {} fit {} timed case(s); about {} \
             (--max-time {}) would time every changed case",
            humanize(budget.max_time),
            timed.len(),
            humanize(needs(&wanted_plan)),
            humanize_up(screen_took + needs(&wanted_plan)),
        ));
    }
    Ok((merged, stopped, findings))
}

/// A duration rounded up to whole minutes, as `--max-time` takes it.
fn humanize_up(d: Duration) -> String {
    format!("{}m", d.as_secs().div_ceil(60).max(1))
}

/// About how long one perf trial of `case` takes: a warming slice and [`SLICES`] measured
/// ones per side, two fresh servers (about 1 s), and each server's preload. Preload rates
/// measured on the 2-core VM with MSETs of 100 keys: ~1.2 µs a key of 32 B (2,000,000 in
/// 2.35 s), ~3.9 µs a key of 1024 B; a trial on 1,000,000 keys took ~10 s where the
/// estimate without preloads said 5.2 s.
fn trial_estimate(case: &PerfCase, slice_seconds: f64) -> Duration {
    let keys = match perf::preload(case, 0).reads {
        Reads::Strings => case.keyspace as f64,
        _ => 0.0,
    };
    let preload = keys * (1.2e-6 + case.value_size.unwrap_or(0) as f64 * 2.6e-9);
    Duration::from_secs_f64(2.0 * (SLICES + 1) as f64 * slice_seconds + 1.0 + 2.0 * preload)
}
