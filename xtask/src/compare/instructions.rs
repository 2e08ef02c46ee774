//! `compare --mode instructions`: each case counted once per side under callgrind
//! (`suites::instructions`), both counts recorded, and an exact comparison for a verdict.

use anyhow::Context;
use bench_core::compare::{self, Better, CaseResult, MetricResult, Trial, TrialPair};
use bench_core::suite::PerfCase;

use super::sides::Sides;
use crate::events::Event;
use crate::plan::Side;
use crate::run::CaseContext;
use crate::suites::instructions::{SeedFile, check_valgrind, count};

pub fn compare_cases(
    cases: &[PerfCase],
    sides: &Sides,
    ctxs: &[CaseContext<'_>; 2],
    threshold: f64,
    seed: Option<&SeedFile>,
    emit: &dyn Fn(Event),
) -> anyhow::Result<Vec<CaseResult>> {
    check_valgrind("--mode instructions", "--mode time")?;
    let pinned = seed.map(|s| s.path.as_path());
    let mut results = Vec::new();
    for case in cases {
        let trial = |side: Side| -> anyhow::Result<Trial> {
            emit(Event::Step {
                message: format!("{}: counting the {side:?} under callgrind", case.name),
            });
            let name = format!("{side:?}").to_lowercase();
            let record = count(case, &ctxs[side.index()], &name, pinned)
                .with_context(|| format!("{} on the {side:?} under callgrind", case.name))?;
            sides.dir(side).append_serialized(&record)?;
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
            Ok(trial)
        };
        let baseline = trial(Side::Baseline)?;
        let candidate = trial(Side::Candidate)?;
        let per_request = |t: &Trial| t["instructions_per_request"];
        let comparison = compare::compare_exact(
            per_request(&baseline),
            per_request(&candidate),
            Better::Lower,
            threshold,
        );
        results.push(CaseResult {
            case: case.name.clone(),
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
                baseline,
                candidate,
            }],
            evidence: None,
        });
    }
    Ok(results)
}
