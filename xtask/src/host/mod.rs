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

/// The CPUs this process may run on (its affinity mask, so a `taskset` around us counts)
/// and each one's core (SMT siblings, from sysfs; a CPU alone when sysfs says nothing).
pub fn machine() -> bench_core::placement::Machine {
    use std::collections::BTreeSet;
    // SAFETY: sched_getaffinity fills the set we pass, of the size we give; CPU_ISSET
    // reads inside it for ids below CPU_SETSIZE.
    let allowed: BTreeSet<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            BTreeSet::new()
        } else {
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    };
    let core_of = allowed
        .iter()
        .map(|&cpu| {
            let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
            let core = fs::read_to_string(path)
                .ok()
                .and_then(|t| bench_core::placement::CpuList::parse(t.trim(), "siblings").ok())
                .map_or_else(|| BTreeSet::from([cpu]), |l| l.0);
            (cpu, core)
        })
        .collect();
    bench_core::placement::Machine { allowed, core_of }
}
