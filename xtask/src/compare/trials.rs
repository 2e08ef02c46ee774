//! What one trial of each suite measures in a comparison, as pairs for the schedule: perf
//! (`suites::perf::pair`, a fresh server per side and alternating slices; the baseline's
//! calibration fixes both sides' counts), mem and sync (one case per side, in order).
//! Every record is appended to its side's run directory as it is measured.

use anyhow::Context;
use bench_core::compare::Trial;
use bench_core::mem::MemCase;
use bench_core::perf::PerfCase;
use bench_core::result::ResultRecord;
use bench_core::sync::SyncCase;

use super::sides::Sides;
use crate::case::CaseContext;
use crate::plan::Side;
use crate::plan::interleave::{SlicePair, sequential};
use crate::suites::{mem, perf, sync};

/// The perf suite's trials, with each case's counts calibrated once, on the baseline.
pub struct Perf<'a> {
    cases: Vec<PerfCase>,
    counts: Vec<Option<perf::Counts>>,
    ctxs: &'a [CaseContext<'a>; 2],
    sides: &'a Sides,
}

impl<'a> Perf<'a> {
    pub fn new(cases: Vec<PerfCase>, ctxs: &'a [CaseContext<'a>; 2], sides: &'a Sides) -> Self {
        let counts = vec![None; cases.len()];
        Perf {
            cases,
            counts,
            ctxs,
            sides,
        }
    }

    /// Trial `n` of case `i`, `order[0]` first.
    pub fn run(&mut self, i: usize, n: usize, order: [Side; 2]) -> anyhow::Result<Vec<SlicePair>> {
        let case = &self.cases[i];
        let baseline = &self.ctxs[Side::Baseline.index()];
        // Both sides run the same request counts, fixed by the baseline's rate.
        let counts = match self.counts[i] {
            Some(c) => c,
            None => {
                let c = perf::calibrate(case, baseline)
                    .with_context(|| format!("calibrating {}", case.name))?;
                self.counts[i] = Some(c);
                c
            }
        };
        let ctxs = [&self.ctxs[0], &self.ctxs[1]];
        let slices = perf::pair(
            case,
            counts,
            n,
            order[0].index(),
            ctxs,
            &mut |side, record| self.sides.dir(Side::from_index(side)).append(record),
        )?;
        Ok(slices
            .into_iter()
            .map(|s| {
                let [b, c] = &s.records;
                (
                    Side::from_index(s.first),
                    slice_numbers(b),
                    slice_numbers(c),
                )
            })
            .collect())
    }
}

/// The numbers of one measured slice.
fn slice_numbers(r: &ResultRecord) -> Trial {
    let m = &r.metrics;
    let mut t = Trial::new();
    t.insert("ops_per_sec".into(), m.ops_per_sec);
    let optional = [
        ("server_cpu_us_per_request", m.server_cpu_us_per_request),
        ("server_user_us_per_request", m.server_user_us_per_request),
        ("server_sys_us_per_request", m.server_sys_us_per_request),
        ("usec_per_call", m.usec_per_call),
        ("p50_us", m.latency.p50_us),
        ("p99_us", m.latency.p99_us),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            t.insert(key.into(), v);
        }
    }
    t
}

/// One mem trial: the case on each side, `order[0]` first.
pub fn mem(
    case: &MemCase,
    order: [Side; 2],
    ctxs: &[CaseContext<'_>; 2],
    sides: &Sides,
) -> anyhow::Result<Vec<SlicePair>> {
    sequential(0, order, &mut |_, side| {
        let record = mem::run_case(case, &ctxs[side.index()])?;
        sides.dir(side).append(&record)?;
        Ok(Trial::from([(
            "bytes_per_item".to_string(),
            record.metrics.bytes_per_item,
        )]))
    })
}

/// One sync trial: the case on each side, `order[0]` first; with several replicas, the
/// slowest one is when the sync was done.
pub fn sync(
    case: &SyncCase,
    order: [Side; 2],
    ctxs: &[CaseContext<'_>; 2],
    sides: &Sides,
) -> anyhow::Result<Vec<SlicePair>> {
    sequential(0, order, &mut |_, side| {
        let records = sync::run_case(case, &ctxs[side.index()])?;
        let mut sync_secs = Vec::new();
        let mut fork = Vec::new();
        for r in &records {
            sides.dir(side).append(r)?;
            sync_secs.push(r.metrics.sync_secs);
            fork.push(r.metrics.fork_usec as f64);
        }
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        Ok(Trial::from([
            ("sync_secs".to_string(), max(&sync_secs)),
            ("fork_usec".to_string(), max(&fork)),
        ]))
    })
}
