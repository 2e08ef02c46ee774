//! `compare --flamegraph`: after the verdicts, each chosen case (the regressions, or
//! all) profiled with perf on both sides, and a differential flame graph with the
//! functions whose share moved, for the report.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bench_core::compare::{CompareReport, Verdict};
use bench_core::perf::PerfCase;

use super::sides::Sides;
use super::{FlameCases, Request};
use crate::case::CaseContext;
use crate::events::Event;
use crate::flamegraph::{self, Profiler, Setup};
use crate::suites::perf;

/// How long each side of a case is profiled, after a warmup of [`FLAME_WARMUP`].
const FLAME_SECONDS: Duration = Duration::from_secs(3);
const FLAME_WARMUP: Duration = Duration::from_secs(1);

/// Profiles the chosen cases on both sides and writes `out/flamegraphs/`: per case the
/// two flame graphs, the differential one and the movers table, and `index.json`. A
/// case that fails to profile is reported and skipped: the verdicts stand without it.
pub fn write(
    request: &Request,
    which: FlameCases,
    event: &'static str,
    report: &CompareReport,
    sides: &Sides,
    ctxs: &[CaseContext<'_>; 2],
    out: &Path,
) -> anyhow::Result<()> {
    let shutdown = ctxs[0].shutdown;
    let chosen: Vec<PerfCase> = request
        .selection
        .perf(request.slice_seconds)?
        .into_iter()
        .filter(|c| {
            which == FlameCases::All
                || report
                    .cases
                    .iter()
                    .any(|r| r.case == c.name && r.verdict == Verdict::Regression)
        })
        .collect();
    if chosen.is_empty() {
        request.emit(Event::Step {
            message: "--flamegraph: no regression to profile".into(),
        });
        return Ok(());
    }
    let dir = out.join("flamegraphs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut index = Vec::new();
    for case in &chosen {
        let spec = bench_core::loadgen::engine::workload(&perf::load(case, 0));
        let setup = Setup {
            spec: &spec,
            clients: case.clients,
            pipeline: case.pipeline,
            config: case.server_config.clone(),
            // Pops need a list that outlasts the window: ~5M elements is > 4 s at 1M pops/s.
            preload: perf::preload(case, 5_000_000),
            warmup: FLAME_WARMUP,
            duration: FLAME_SECONDS,
            frequency: 999,
        };
        let stem = bench_core::report_page::slug(&case.name);
        request.emit(Event::Step {
            message: format!("--flamegraph: profiling {} on both sides", case.name),
        });
        let profiled = (|| -> anyhow::Result<()> {
            let before = flamegraph::record(&ctxs[0], &setup, Profiler::Perf, event)?;
            let after = flamegraph::record(&ctxs[1], &setup, Profiler::Perf, event)?;
            flamegraph::write_diff(
                &dir.join(format!("{stem}.svg")),
                (&sides.baseline, &before),
                (&sides.candidate, &after),
                &request.baseline.spec,
                &case.name,
            )?;
            Ok(())
        })();
        match profiled {
            Ok(()) => index.push(bench_core::report_page::FlameGraphs {
                case: case.name.clone(),
                stem,
            }),
            Err(_) if shutdown.is_triggered() => anyhow::bail!("interrupted"),
            Err(e) => request.emit(Event::Warning {
                message: format!("--flamegraph {}: {e:#}", case.name),
            }),
        }
    }
    crate::rundir::write_atomically(
        &dir.join("index.json"),
        serde_json::to_string_pretty(&index)?.as_bytes(),
    )
}
