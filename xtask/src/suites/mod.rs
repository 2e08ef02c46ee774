//! The suites: each measures one case on a fresh deployment, through the case flow in
//! `case/`, and returns its records: perf (throughput and latency), mem (bytes per item),
//! sync (full-sync time). Exact counts are in `counts/`, flame graphs in `flamegraph.rs`,
//! what the generator costs in `selfbench.rs`.

pub mod mem;
pub mod perf;
pub mod perf_record;
pub mod sync;

/// Which suite a run or a comparison measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuiteKind {
    Perf,
    Mem,
    Sync,
}

impl SuiteKind {
    /// How records and run ids name it.
    pub fn name(self) -> &'static str {
        match self {
            SuiteKind::Perf => "perf",
            SuiteKind::Mem => "mem",
            SuiteKind::Sync => "sync",
        }
    }
}
