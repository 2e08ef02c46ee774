//! Instruction counts of both sides: `compare --mode instructions`, and the screen that
//! opens the default mode (`screen.rs`). Each side's cases are counted under callgrind
//! (`suites::instructions`), both sides at once, the records written, and each case
//! compared exactly.

use anyhow::Context;
use bench_core::compare::{self, Better, CaseResult, MetricResult, Trial, TrialPair};
use bench_core::suite::PerfCase;

use super::sides::Sides;
use crate::events::Event;
use crate::plan::Side;
use crate::run::CaseContext;
use crate::suites::instructions::{InstructionsRecord, SeedFile, count};

/// Counts every case on both sides, `runs` server rounds per side, writes the records,
/// and compares each case's counts against `threshold` (a fraction).
pub fn compare_cases(
    cases: &[PerfCase],
    sides: &Sides,
    ctxs: &[CaseContext<'_>; 2],
    threshold: f64,
    seed: Option<&SeedFile>,
    runs: usize,
    emit: &dyn Fn(Event),
) -> anyhow::Result<Vec<CaseResult>> {
    let counted = count_sides(cases, ctxs, seed, runs, emit)?;
    write(sides, &counted)?;
    Ok(results(&counted, threshold))
}

/// Both sides' records of `cases`, counted at once, one server per side and round
/// (counts do not depend on the machine's load); the baseline's progress stands for both.
pub fn count_sides(
    cases: &[PerfCase],
    ctxs: &[CaseContext<'_>; 2],
    seed: Option<&SeedFile>,
    runs: usize,
    emit: &dyn Fn(Event),
) -> anyhow::Result<[Vec<InstructionsRecord>; 2]> {
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
        count(cases, &ctxs[side.index()], &name, pinned, runs, progress)
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
    CaseResult {
        case: baseline.case.clone(),
        verdict: comparison.verdict,
        note: compare::exact_note(&comparison),
        metrics: vec![MetricResult {
            metric: "instructions_per_request".into(),
            label: "instructions/req".into(),
            better: Better::Lower,
            comparison,
        }],
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
