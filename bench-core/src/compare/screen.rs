//! The default comparison: screen every case by exact counts, then let time say which way.
//!
//! Exact counts under callgrind (instructions per request, and the system calls per
//! request the server made in the same counted window, by kind) repeat between processes
//! of one build, so a count that moved says, whatever the machine's noise, that the case
//! **changed**. It does not say which way the case's speed went: Valkey's speed-ups often
//! trade instructions for fewer memory stalls (8.1.1 → 9.1.2 adds 8–27% instructions per
//! request and runs pipelined SET and GET 21–32% faster on a working set larger than the
//! cache), and a system call costs hundreds of nanoseconds that no instruction count sees.
//! So:
//! 1. **Screen.** Count every case on both sides. A case whose instructions moved past
//!    the instructions threshold, or any kind of system call past
//!    [`SYSCALL_THRESHOLD_PER_REQUEST`](super::SYSCALL_THRESHOLD_PER_REQUEST), has
//!    *moved*: a finding ("instructions/req +26.8%"), never a verdict.
//! 2. **Time.** Wall-clock trials (`family.rs`: Holm over the timed cases, α spent over
//!    looks) run on the moved cases, those whose system calls moved first, then the
//!    largest instruction change first, then on [`GUARDS`] unmoved cases chosen for what
//!    counts cannot see ([`timed_cases`]), as many as the time budget fits.
//! 3. **Verdicts** ([`merge`]): time alone says regression or improvement. A moved case is
//!    "no change" only when its timed interval lies within ±threshold; a moved case not
//!    timed is "changed, not timed" (inconclusive: exit 3). An unmoved case keeps "no
//!    change" on its counts unless time contradicts them: a timed interval entirely
//!    beyond ±threshold is inconclusive even where the family's rule did not decide it,
//!    and a guard whose time moved while its counts did not shows the counts **blind** to
//!    this change ([`blind`]): the rest of the budget times further unmoved cases, and
//!    unmoved cases still untimed are inconclusive.
//!
//! The run's false-alarm rate for "regression" is then the time family's (≤ α over the
//! timed cases), plus at most α more in a run whose guards showed the counts blind (the
//! further unmoved cases are a family of their own): counts never call one.

use super::*;

/// Why a case of a screened comparison was timed, or that it was not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Screen {
    /// Its counts moved; timed to say which way.
    Moved,
    /// Its counts did not move; timed as a guard against what counts cannot see.
    Guard,
    /// Not timed: its counts vouch for it when they did not move; when they moved, it is
    /// "changed, not timed".
    NotTimed,
}

/// The key of the total system calls per request among a screened case's metrics; each
/// kind is `syscalls_per_request.<name>`.
pub const SYSCALLS: &str = "syscalls_per_request";

/// Whether a metric is an exact count (no sampling: no sign test).
pub fn is_exact(m: &MetricResult) -> bool {
    m.comparison.sign_p.is_none()
}

/// Whether a metric counts system calls (its change is shown in calls per request).
pub fn is_syscalls(m: &MetricResult) -> bool {
    m.metric == SYSCALLS || m.metric.starts_with("syscalls_per_request.")
}

/// Whether any exact count of the case moved past its bar (or could not be compared).
pub fn moved(case: &CaseResult) -> bool {
    case.metrics
        .iter()
        .any(|m| is_exact(m) && m.comparison.verdict != Verdict::NoChange)
}

/// A count that moved by this much (percent of instructions) or more is beyond what
/// processes of one build differ by (ZADD's clock-seeded count, the noisiest, spreads ~1%):
/// counting it again would not change that it changed.
pub const CLEARLY_MOVED_PCT: f64 = 3.0;
/// The same for a kind of system call, in calls per request.
pub const CLEARLY_MOVED_CALLS: f64 = 0.5;

/// Whether a moved case is worth counting again to see whether its counts vary between
/// processes: one of its moved counts moved by no more than processes of one build can
/// differ ([`CLEARLY_MOVED_PCT`], [`CLEARLY_MOVED_CALLS`]). A case whose every moved
/// count moved clearly more is timed whatever a recount says, so recounting it would only
/// spend the budget; a marginal count beside a clear one is recounted, so that what the
/// case is said to have changed in (a kernel-side change, say) is not a single round's
/// noise.
pub fn worth_recounting(case: &CaseResult) -> bool {
    let clear = |m: &MetricResult| {
        let c = &m.comparison;
        if is_syscalls(m) {
            (c.candidate_median - c.baseline_median).abs() >= CLEARLY_MOVED_CALLS
        } else {
            c.change_pct().abs() >= CLEARLY_MOVED_PCT
        }
    };
    case.metrics
        .iter()
        .filter(|m| is_exact(m) && m.comparison.verdict != Verdict::NoChange)
        .any(|m| !clear(m))
}

/// The cases worth recounting ([`worth_recounting`]) in the order a short budget recounts
/// them: the smallest instruction change first, where a single round's count is likeliest
/// to be what processes of one build differ by.
pub fn recount_order(screened: &[CaseResult]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..screened.len())
        .filter(|&i| worth_recounting(&screened[i]))
        .collect();
    order.sort_by(|&a, &b| {
        weight(&screened[a])
            .1
            .total_cmp(&weight(&screened[b]).1)
            .then(a.cmp(&b))
    });
    order
}

/// Whether the case's system calls moved.
fn syscalls_moved(case: &CaseResult) -> bool {
    case.metrics
        .iter()
        .any(|m| is_syscalls(m) && m.comparison.verdict != Verdict::NoChange)
}

/// Whether a merged case is "changed, not timed": its counts moved and no trial timed it.
pub fn changed_not_timed(case: &CaseResult) -> bool {
    case.screen == Some(Screen::NotTimed) && case.verdict == Verdict::Inconclusive && moved(case)
}

/// The timed primary metric of a case (the first sampled one), if it was timed.
pub fn timed_primary(case: &CaseResult) -> Option<&MetricResult> {
    case.metrics.iter().find(|m| !is_exact(m))
}

/// What moved, as a finding: `instructions/req +26.8%, getppid +1.00/req`; `None` when
/// no count moved. Kinds of system calls by name (the total only when no kind moved on
/// its own).
pub fn changes(case: &CaseResult) -> Option<String> {
    let mut parts = Vec::new();
    for m in case.metrics.iter().filter(|m| is_exact(m)) {
        if m.comparison.verdict == Verdict::NoChange || m.metric == SYSCALLS {
            continue;
        }
        parts.push(change_text(m));
    }
    if parts.iter().all(|p| p.starts_with("instructions")) && syscalls_moved(case) {
        // Only the total moved: name it.
        if let Some(total) = case.metrics.iter().find(|m| m.metric == SYSCALLS) {
            parts.push(change_text(total));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A count's change as people read it: `instructions/req +26.8%`, and for system calls the
/// difference in calls per request, `getppid +1.00/req` (a kind may appear from zero).
pub fn change_text(m: &MetricResult) -> String {
    let c = &m.comparison;
    if is_syscalls(m) {
        format!(
            "{} {:+.2}/req",
            m.label,
            c.candidate_median - c.baseline_median
        )
    } else {
        format!("{} {:+.1}%", m.label, c.change_pct())
    }
}

/// Whether a timed case's interval lies entirely beyond ±`threshold` (a fraction).
pub fn beyond(c: &Comparison, threshold: f64) -> bool {
    c.ci_low
        .zip(c.ci_high)
        .is_some_and(|(low, high)| low > 1.0 + threshold || high < 1.0 - threshold)
}

/// Whether time moved where the counts did not: a timed unmoved case called a
/// regression or improvement, or whose interval lies entirely beyond ±`threshold`. Then
/// the counts are blind to this change and cannot vouch for any unmoved case.
pub fn blind(screened: &CaseResult, time: &CaseResult, threshold: f64) -> bool {
    if moved(screened) {
        return false;
    }
    matches!(time.verdict, Verdict::Regression | Verdict::Improvement)
        || timed_primary(time).is_some_and(|m| beyond(&m.comparison, threshold))
}

/// How [`merge`] judges.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The timed trials' threshold (a fraction).
    pub threshold: f64,
    /// A guard showed the counts blind to this change ([`blind`]): unmoved counts vouch
    /// for nothing.
    pub blind: bool,
}

/// One case of a screened comparison: its exact result, and what its timed trials found
/// if it was timed (`role` Moved or Guard). The verdict is time's; the counts say only
/// whether the case changed (module doc, step 3). Metrics: the counts first, then the
/// time metrics; trials and evidence are the timed ones.
pub fn merge(screened: CaseResult, timed: Option<(CaseResult, Screen)>, rule: Rule) -> CaseResult {
    let changed = changes(&screened);
    let mut notes: Vec<String> = Vec::new();
    match &changed {
        Some(c) => notes.push(format!("changed: {c}")),
        None => notes.extend(screened.note.clone()),
    }
    let Some((time, role)) = timed else {
        let verdict = if changed.is_some() {
            notes[0] = format!(
                "changed, not timed: {}",
                changed.as_deref().unwrap_or_default()
            );
            Verdict::Inconclusive
        } else if rule.blind {
            notes.push(
                "not timed, and a guard's time moved where its counts did not: the counts cannot vouch for it"
                    .into(),
            );
            Verdict::Inconclusive
        } else {
            Verdict::NoChange
        };
        notes.extend(kernel_side(&screened, None));
        return CaseResult {
            verdict,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            screen: Some(Screen::NotTimed),
            ..screened
        };
    };
    let why = match role {
        Screen::Guard => "time guard",
        _ => "timed",
    };
    let primary = timed_primary(&time);
    // Rounded: 0.07 * 100 is 7.000000000000001.
    let threshold_pct = (rule.threshold * 1e4).round() / 100.0;
    let outside = primary.is_some_and(|m| beyond(&m.comparison, rule.threshold));
    let verdict = match time.verdict {
        Verdict::Regression | Verdict::Improvement | Verdict::NoChange => time.verdict,
        Verdict::Inconclusive if changed.is_some() || outside || rule.blind => {
            Verdict::Inconclusive
        }
        // An unmoved guard whose interval neither lies within nor beyond ±threshold: the
        // counts vouch, and time does not contradict them (docs/design.md says why).
        Verdict::Inconclusive => Verdict::NoChange,
    };
    notes.push(match (time.verdict, primary) {
        (Verdict::Inconclusive, Some(m)) if outside => format!(
            "{why}: {} {:+.1}% ({}), beyond ±{threshold_pct}% but not significant for the whole comparison",
            m.label,
            m.comparison.change_pct(),
            interval_text(&m.comparison),
        ),
        (Verdict::Inconclusive, Some(m)) => match m.comparison.mde_pct {
            Some(mde) => format!(
                "{why}: {} {:+.1}%, undecided (MDE {mde:.1}%)",
                m.label,
                m.comparison.change_pct()
            ),
            None => format!("{why}: undecided"),
        },
        (Verdict::NoChange, Some(m)) => format!(
            "{why}: {} {:+.1}%, within ±{threshold_pct}%",
            m.label,
            m.comparison.change_pct()
        ),
        (v, Some(m)) => format!(
            "{why}: {} {:+.1}%, {}",
            m.label,
            m.comparison.change_pct(),
            v.label()
        ),
        (v, None) => format!("{why}: {}", v.label()),
    });
    notes.extend(time.note.clone());
    if let Some(kernel) = kernel_side(&screened, Some(&time)) {
        notes.push(kernel);
    }
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

fn interval_text(c: &Comparison) -> String {
    match (c.ci_low, c.ci_high) {
        (Some(l), Some(h)) => format!(
            "CI {:+.1}% .. {:+.1}%",
            (l - 1.0) * 100.0,
            (h - 1.0) * 100.0
        ),
        _ => "no CI".into(),
    }
}

/// The key of the server's system CPU per request among a timed case's metrics.
pub const SERVER_SYS: &str = "server_sys_us_per_request";

/// A kernel-side change in one case: its system calls moved (each one costs hundreds of
/// nanoseconds in the kernel, which no instruction count sees), or, timed and called a
/// regression, the server's system CPU per request rose past the threshold by the
/// metric's own test (`sys_rise`) while its instructions did not move. `None` otherwise.
pub fn kernel_side(screened: &CaseResult, time: Option<&CaseResult>) -> Option<String> {
    let instructions = screened
        .metrics
        .iter()
        .find(|m| is_exact(m) && !is_syscalls(m) && m.comparison.verdict != Verdict::NoChange);
    if syscalls_moved(screened) {
        let calls: Vec<String> = screened
            .metrics
            .iter()
            .filter(|m| {
                is_syscalls(m) && m.metric != SYSCALLS && m.comparison.verdict != Verdict::NoChange
            })
            .map(change_text)
            .collect();
        let calls = if calls.is_empty() {
            screened
                .metrics
                .iter()
                .find(|m| m.metric == SYSCALLS)
                .map(change_text)
                .unwrap_or_default()
        } else {
            calls.join(", ")
        };
        return Some(match instructions {
            None => format!("kernel-side change: {calls} with instructions unchanged"),
            Some(m) => format!("kernel-side change: {calls}, with {}", change_text(m)),
        });
    }
    if instructions.is_some() {
        return None;
    }
    let sys = sys_rise(time?)?;
    Some(format!(
        "kernel-side change: server system CPU/req {:+.1}% with instructions unchanged",
        sys.comparison.change_pct()
    ))
}

/// The server's system CPU per request of a timed case, when it names a kernel-side
/// change: the case is a regression by the run-wide rule (so an A/A run names one no more
/// often than it calls a regression) and the system CPU rose by its own test. The
/// metric's own test alone would false-alarm at its 5% in every case of every run:
/// `used_cpu_sys` over short slices is coarse.
fn sys_rise(time: &CaseResult) -> Option<&MetricResult> {
    (time.verdict == Verdict::Regression)
        .then(|| {
            time.metrics
                .iter()
                .find(|m| m.metric == SERVER_SYS && m.comparison.verdict == Verdict::Regression)
        })
        .flatten()
}

/// The key of the server's user CPU per request among a timed case's metrics.
pub const SERVER_USER: &str = "server_user_us_per_request";

/// In a comparison without counts (time mode): the regressions whose server system CPU
/// per request rose by the metric's own test (`sys_rise`), as one finding naming each with
/// its user CPU beside it. Instructions were not counted there, so it says only where the CPU went.
pub fn kernel_side_in_time(cases: &[CaseResult]) -> Option<String> {
    let named: Vec<String> = cases
        .iter()
        .filter(|c| c.screen.is_none())
        .filter_map(|c| {
            let find = |key: &str| c.metrics.iter().find(|m| m.metric == key);
            let sys = sys_rise(c)?;
            let user = find(SERVER_USER).map_or(String::new(), |m| {
                format!(", user CPU/req {:+.1}%", m.comparison.change_pct())
            });
            Some(format!(
                "{} (server system CPU/req {:+.1}%{user})",
                c.case,
                sys.comparison.change_pct()
            ))
        })
        .collect();
    (!named.is_empty()).then(|| format!("kernel-side change: {}", named.join("; ")))
}

/// What a screened comparison found across its cases, for the report's findings: how
/// many cases' counts changed and that counts do not say which way, kernel-side changes,
/// and counts shown blind. `blind_guards` names the guards whose time moved.
pub fn findings(cases: &[CaseResult], blind_guards: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let changed: Vec<&CaseResult> = cases.iter().filter(|c| moved(c)).collect();
    if !changed.is_empty() {
        let instr: Vec<f64> = changed
            .iter()
            .filter_map(|c| c.metrics.first())
            .filter(|m| is_exact(m) && !is_syscalls(m) && m.comparison.verdict != Verdict::NoChange)
            .map(|m| m.comparison.change_pct())
            .filter(|c| c.is_finite())
            .collect();
        let range = if instr.is_empty() {
            String::new()
        } else {
            let lo = instr.iter().copied().fold(f64::MAX, f64::min);
            let hi = instr.iter().copied().fold(f64::MIN, f64::max);
            if (hi - lo).abs() < 0.05 {
                format!(" instructions/req {lo:+.1}% in {}", instr.len())
            } else {
                format!(
                    " instructions/req {lo:+.1}% .. {hi:+.1}% in {}",
                    instr.len()
                )
            }
        };
        let calls = changed.iter().filter(|c| syscalls_moved(c)).count();
        let calls = if calls > 0 {
            format!(
                "{}system calls/req in {calls}",
                if range.is_empty() { " " } else { ", " }
            )
        } else {
            String::new()
        };
        let timed = changed
            .iter()
            .filter(|c| c.screen == Some(Screen::Moved))
            .count();
        out.push(format!(
            "exact counts changed in {} of {} cases ({}{}): a count says that a case changed, not which way; \
             time decides ({timed} of them timed)",
            changed.len(),
            cases.len(),
            range.trim_start(),
            calls,
        ));
    }
    let unmoved = cases.iter().filter(|c| !moved(c)).count();
    let guards = cases
        .iter()
        .filter(|c| c.screen == Some(Screen::Guard))
        .count();
    if unmoved > 0 && guards < GUARDS.min(unmoved) {
        out.push(format!(
            "{guards} of {} guard(s) timed ({}): the {unmoved} unchanged \
             case(s) rest on their exact counts, and what counts cannot see (memory stalls, contention) \
             was {}checked by time; a longer --max-time times the guards too",
            GUARDS.min(unmoved),
            if changed.is_empty() {
                "--max-time ran out"
            } else {
                "the changed cases took the time first"
            },
            if guards == 0 { "not " } else { "only partly " },
        ));
    }
    let kernel: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            c.note
                .as_deref()?
                .split("; ")
                .find(|n| n.starts_with("kernel-side change: "))
                .map(|n| format!("{} ({})", c.case, &n["kernel-side change: ".len()..]))
        })
        .collect();
    if !kernel.is_empty() {
        out.push(format!("kernel-side change: {}", kernel.join("; ")));
    }
    if !blind_guards.is_empty() {
        let untimed = cases
            .iter()
            .filter(|c| c.screen == Some(Screen::NotTimed) && !moved(c))
            .count();
        out.push(format!(
            "the counts are blind to this change: time moved in {} while its counts did not; \
             the rest of the budget timed further unmoved cases{}",
            blind_guards.join(", "),
            if untimed > 0 {
                format!(", and the {untimed} left untimed are inconclusive")
            } else {
                String::new()
            }
        ));
    }
    out
}

mod plan;
use plan::weight;
pub use plan::{GUARDS, Shape, timed_cases, unmoved_order};

#[cfg(test)]
mod tests;
