//! Instruction counts of both sides: `compare --mode instructions`, and the screen that
//! opens the default mode (`screen.rs`). Each side's cases are counted under callgrind
//! (`counts::instructions`), with the system calls of each counted window where perf can
//! trace them (`counts::syscalls`), both sides at once, the records written, and each
//! case compared exactly: instructions per request first, then system calls per request
//! in all and by kind.

use anyhow::Context;
use bench_core::compare::screen::SYSCALLS;
use bench_core::compare::{self, Better, CaseResult, MetricResult, Trial, TrialPair, Verdict};
use bench_core::perf::PerfCase;

use super::sides::Sides;
use crate::case::CaseContext;
use crate::counts::instructions::{InstructionsRecord, SeedFile, count};
use crate::counts::syscalls::VALGRIND_ONLY;
use crate::events::Event;
use crate::plan::Side;

/// How cases are counted.
#[derive(Clone, Copy)]
pub struct Counting<'a> {
    /// The fixed "/dev/urandom" the servers read, where it can be pinned.
    pub seed: Option<&'a SeedFile>,
    /// Server rounds per side.
    pub runs: usize,
    /// Whether system calls are counted too (`counts::syscalls::available`).
    pub syscalls: bool,
}

/// Counts every case on both sides, writes the records, and compares each case's counts
/// against `threshold` (a fraction).
pub fn compare_cases(
    cases: &[PerfCase],
    sides: &Sides,
    ctxs: &[CaseContext<'_>; 2],
    threshold: f64,
    counting: Counting<'_>,
    emit: &dyn Fn(Event),
) -> anyhow::Result<Vec<CaseResult>> {
    let counted = count_sides(cases, ctxs, counting, emit)?;
    write(sides, &counted)?;
    Ok(results(&counted, threshold))
}

/// Both sides' records of `cases`, counted at once, one server per side and round
/// (counts do not depend on the machine's load); the baseline's progress stands for both.
pub fn count_sides(
    cases: &[PerfCase],
    ctxs: &[CaseContext<'_>; 2],
    counting: Counting<'_>,
    emit: &dyn Fn(Event),
) -> anyhow::Result<[Vec<InstructionsRecord>; 2]> {
    let Counting {
        seed,
        runs,
        syscalls,
    } = counting;
    let pinned = seed.map(|s| s.path.as_path());
    let progress = |round: usize, case: &PerfCase| {
        let of = if runs > 1 {
            format!(" (server round {round} of {runs})")
        } else {
            String::new()
        };
        emit(Event::Step {
            message: format!("{}: counting both sides under callgrind{of}", case.name),
        });
    };
    let side_count = |side: Side, progress: &dyn Fn(usize, &PerfCase)| {
        let name = format!("{side:?}").to_lowercase();
        count(
            cases,
            &ctxs[side.index()],
            &name,
            pinned,
            runs,
            syscalls,
            progress,
        )
        .with_context(|| format!("counting the {name} under callgrind"))
    };
    let (baseline, candidate) = std::thread::scope(|s| {
        let candidate = s.spawn(|| side_count(Side::Candidate, &|_, _| {}));
        let baseline = side_count(Side::Baseline, &progress);
        let candidate = candidate
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the candidate's count panicked")));
        (baseline, candidate)
    });
    Ok([baseline?, candidate?])
}

/// Appends each side's records to its run directory.
pub fn write(sides: &Sides, counted: &[Vec<InstructionsRecord>; 2]) -> anyhow::Result<()> {
    for side in [Side::Baseline, Side::Candidate] {
        for record in &counted[side.index()] {
            sides.dir(side).append_serialized(record)?;
        }
    }
    Ok(())
}

/// Each case's comparison from both sides' records.
pub fn results(counted: &[Vec<InstructionsRecord>; 2], threshold: f64) -> Vec<CaseResult> {
    counted[0]
        .iter()
        .zip(&counted[1])
        .map(|(b, c)| exact_result(b, c, threshold))
        .collect()
}

/// One case's exact comparison from its two records.
fn exact_result(
    baseline: &InstructionsRecord,
    candidate: &InstructionsRecord,
    threshold: f64,
) -> CaseResult {
    let trial = |record: &InstructionsRecord| {
        let mut trial = Trial::from([(
            "instructions_per_request".to_string(),
            record.instructions_per_request,
        )]);
        for (run, total) in record.instructions.iter().enumerate() {
            trial.insert(
                format!("run{}_instructions_per_request", run + 1),
                *total as f64 / record.requests as f64,
            );
        }
        trial
    };
    let per_request = |r: &InstructionsRecord| -> Vec<f64> {
        r.instructions
            .iter()
            .map(|&total| total as f64 / r.requests as f64)
            .collect()
    };
    let comparison = compare::compare_counts(
        &per_request(baseline),
        &per_request(candidate),
        Better::Lower,
        threshold,
    );
    let mut metrics = vec![MetricResult {
        metric: "instructions_per_request".into(),
        label: "instructions/req".into(),
        better: Better::Lower,
        comparison,
    }];
    metrics.extend(syscall_metrics(baseline, candidate));
    let verdict = metrics[0].comparison.verdict;
    let mut notes: Vec<String> = compare::exact_note(&metrics[0].comparison)
        .into_iter()
        .collect();
    let calls: Vec<String> = metrics
        .iter()
        .filter(|m| compare::screen::is_syscalls(m) && m.comparison.verdict != Verdict::NoChange)
        .map(compare::screen::change_text)
        .collect();
    if !calls.is_empty() {
        notes.push(format!("system calls moved: {}", calls.join(", ")));
    }
    CaseResult {
        case: baseline.case.clone(),
        verdict,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        metrics,
        trials: vec![TrialPair {
            trial: 1,
            pair: 1,
            order: "AB".into(),
            baseline: trial(baseline),
            candidate: trial(candidate),
        }],
        evidence: None,
        screen: None,
    }
}

/// System calls per request, in all and by kind, compared round by round
/// (`compare::compare_calls`), less the kinds only valgrind makes
/// (`syscalls::VALGRIND_ONLY`); none when either side's were not counted in every round.
fn syscall_metrics(
    baseline: &InstructionsRecord,
    candidate: &InstructionsRecord,
) -> Vec<MetricResult> {
    let counted =
        |r: &InstructionsRecord| !r.syscalls.is_empty() && r.syscalls.len() == r.instructions.len();
    if !counted(baseline) || !counted(candidate) {
        return Vec::new();
    }
    let compared = |kind: &str| !VALGRIND_ONLY.contains(&kind);
    let per_request = |r: &InstructionsRecord, kind: Option<&str>| -> Vec<f64> {
        r.syscalls
            .iter()
            .map(|calls| {
                let n: u64 = match kind {
                    Some(k) => calls.get(k).copied().unwrap_or(0),
                    None => calls
                        .iter()
                        .filter(|(k, _)| compared(k))
                        .map(|(_, n)| n)
                        .sum(),
                };
                n as f64 / r.requests as f64
            })
            .collect()
    };
    let mut kinds: Vec<&String> = baseline
        .syscalls
        .iter()
        .chain(&candidate.syscalls)
        .flat_map(|c| c.keys())
        .filter(|k| compared(k))
        .collect();
    kinds.sort();
    kinds.dedup();
    let one = |kind: Option<&str>| {
        let (comparison, _) = compare::compare_calls(
            &per_request(baseline, kind),
            &per_request(candidate, kind),
            compare::SYSCALL_THRESHOLD_PER_REQUEST,
        );
        MetricResult {
            metric: match kind {
                Some(k) => format!("{SYSCALLS}.{k}"),
                None => SYSCALLS.into(),
            },
            label: kind.map_or("syscalls/req".into(), str::to_string),
            better: Better::Lower,
            comparison,
        }
    };
    std::iter::once(one(None))
        .chain(kinds.into_iter().map(|k| one(Some(k))))
        .collect()
}
