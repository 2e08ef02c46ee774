//! The two sides of a comparison (their builds and result directories) and the metrics
//! each suite is judged on.

use bench_core::compare::{self, Metric};

use crate::plan::Side;
use crate::rundir::RunDir;
use crate::valkey::Binaries;

/// The perf metrics: throughput decides, the server's CPU per request confirms; its user
/// and system parts say where a change went (a system-CPU rise names a kernel-side change).
pub const PERF_METRICS: [Metric; 7] = [
    Metric {
        key: "ops_per_sec",
        label: "ops/s",
        better: compare::Better::Higher,
    },
    Metric {
        key: "server_cpu_us_per_request",
        label: "server CPU µs/req",
        better: compare::Better::Lower,
    },
    Metric {
        key: "server_user_us_per_request",
        label: "server user µs/req",
        better: compare::Better::Lower,
    },
    Metric {
        key: "server_sys_us_per_request",
        label: "server sys µs/req",
        better: compare::Better::Lower,
    },
    Metric {
        key: "usec_per_call",
        label: "usec_per_call",
        better: compare::Better::Lower,
    },
    Metric {
        key: "p50_us",
        label: "p50 µs",
        better: compare::Better::Lower,
    },
    Metric {
        key: "p99_us",
        label: "p99 µs",
        better: compare::Better::Lower,
    },
];
pub const PERF_CONFIRM: &str = "server_cpu_us_per_request";

pub const MEM_METRICS: [Metric; 1] = [Metric {
    key: "bytes_per_item",
    label: "bytes/item",
    better: compare::Better::Lower,
}];

pub const SYNC_METRICS: [Metric; 2] = [
    Metric {
        key: "sync_secs",
        label: "full sync s",
        better: compare::Better::Lower,
    },
    Metric {
        key: "fork_usec",
        label: "fork µs",
        better: compare::Better::Lower,
    },
];

/// Both sides' builds and result directories.
pub struct Sides {
    pub baseline: Binaries,
    pub candidate: Binaries,
    pub baseline_dir: RunDir,
    pub candidate_dir: RunDir,
}

impl Sides {
    pub fn binaries(&self, side: Side) -> &Binaries {
        match side {
            Side::Baseline => &self.baseline,
            Side::Candidate => &self.candidate,
        }
    }

    pub fn dir(&self, side: Side) -> &RunDir {
        match side {
            Side::Baseline => &self.baseline_dir,
            Side::Candidate => &self.candidate_dir,
        }
    }
}
