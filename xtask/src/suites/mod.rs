//! The suites: each measures one case on a fresh deployment, through the case flow in
//! `run/`, and returns its records. perf (throughput and latency), mem (bytes per item),
//! sync (full-sync time), instructions (callgrind counts, `compare --mode instructions`,
//! with the system calls of the counted window from `syscalls`; `callgrind` talks to
//! callgrind), profile (flame graphs) and selfbench (what the generator costs).

pub mod callgrind;
pub mod instructions;
pub mod mem;
pub mod perf;
pub mod profile;
pub mod selfbench;
pub mod sync;
pub mod syscalls;

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
