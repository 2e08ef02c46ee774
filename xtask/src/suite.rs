//! What every suite's `run_case` gets besides its case: the run, the binaries, the host,
//! where ports start, and the stop handle. (Perf adds its engine: `perf::CaseContext`.)

use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;

use crate::valkey::Binaries;

/// Which suite a run or a comparison measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuiteKind {
    Perf,
    Mem,
    Sync,
}

pub struct CaseContext<'a> {
    pub run_id: &'a str,
    pub binaries: &'a Binaries,
    pub host: &'a HostInfo,
    pub base_port: u16,
    pub shutdown: &'a Shutdown,
}
