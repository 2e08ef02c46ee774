//! Where servers run: the [`Host`] seam (start servers, the machine's facts), with one
//! implementation today, [`local::Local`]; a remote host over ssh is the next.

pub mod local;

use std::fs;
use std::path::Path;

use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;

use crate::instances::{self, Instance};

/// A machine servers run on.
pub trait Host: Sync {
    /// How records and messages name it (`local`, later `ssh:HOST`).
    fn name(&self) -> String;
    /// Its facts, for records.
    fn info(&self) -> HostInfo;
    /// Starts `count` servers of `server` with `options`, each on a free port with its own
    /// directory, guarded: they stop when their `Instance` is dropped.
    fn start_servers(
        &self,
        server: &Path,
        count: usize,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Vec<Instance>>;
}

/// This machine's facts.
pub fn info() -> HostInfo {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let read = |path: &str| {
        fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    HostInfo {
        hostname: read("/proc/sys/kernel/hostname"),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        model,
        kernel: read("/proc/sys/kernel/osrelease"),
        memory_bytes,
    }
}
