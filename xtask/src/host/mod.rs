//! Where servers run: the [`Host`] seam (its facts, its CPUs, its address, starting
//! servers), with [`local::Local`] (this machine) and [`remote::Remote`] (another machine
//! over ssh, its servers under our agent there). A run chooses its [`ServerHosts`] once
//! ([`choice::HostsChoice`]) and every case deploys on them.

pub mod agent;
pub mod agent_binary;
pub mod build;
pub mod choice;
pub mod clients;
pub mod file;
pub mod link;
pub mod loadgen;
pub mod local;
pub mod pick;
pub mod remote;
pub mod share;
pub mod ship;
pub mod ssh;

use std::fs;
use std::net::IpAddr;

use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;

use crate::instances::{self, Instance};
use crate::valkey::Binaries;

/// A machine servers run on.
pub trait Host: Sync + Send + std::fmt::Debug {
    /// How records and messages name it: `local`, or its name in the hosts file.
    fn name(&self) -> String;
    /// Its facts, for records.
    fn info(&self) -> HostInfo;
    /// Its CPUs (and their cores), for pinning servers there.
    fn machine(&self) -> bench_core::placement::Machine;
    /// The address its servers listen on and clients connect to.
    fn address(&self) -> IpAddr;
    /// This machine: valgrind and the counters attach to its servers only (perf to any).
    fn is_local(&self) -> bool;
    /// The perf event `perf record` can sample there (`cycles` or `cpu-clock`); a usage
    /// error saying how to fix it where perf cannot run.
    fn perf_event(&self, shutdown: &Shutdown) -> anyhow::Result<&'static str>;
    /// Starts `count` servers of `server` with `options` (listening on [`Host::address`]),
    /// each on a free port with its own directory, guarded: they stop when their
    /// `Instance` is dropped.
    fn start_servers(
        &self,
        binaries: &Binaries,
        count: usize,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Vec<Instance>>;
}

/// This machine alone, for the commands that run their servers here.
pub fn local_hosts() -> &'static ServerHosts {
    static LOCAL: std::sync::LazyLock<ServerHosts> = std::sync::LazyLock::new(ServerHosts::local);
    &LOCAL
}

/// The hosts a run's servers are spread over, in the order `--server-hosts` names them.
#[derive(Debug)]
pub struct ServerHosts {
    hosts: Vec<std::sync::Arc<dyn Host>>,
}

impl ServerHosts {
    /// This machine alone: the default.
    pub fn local() -> ServerHosts {
        ServerHosts {
            hosts: vec![std::sync::Arc::new(local::Local)],
        }
    }

    pub fn new(hosts: Vec<std::sync::Arc<dyn Host>>) -> ServerHosts {
        assert!(!hosts.is_empty(), "a run has at least one server host");
        ServerHosts { hosts }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The first host: where a single server goes.
    pub fn first(&self) -> &dyn Host {
        self.hosts[0].as_ref()
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn Host> {
        self.hosts.iter().map(|h| h.as_ref())
    }

    /// The addresses servers listen on, one per host (TLS certificates name them).
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.hosts.iter().map(|h| h.address()).collect()
    }

    /// Whether every server runs on this machine.
    pub fn all_local(&self) -> bool {
        self.hosts.iter().all(|h| h.is_local())
    }

    /// Starts one server per entry of `placement` (the index of its host), returned in
    /// that order. On any failure the ones started are stopped.
    pub fn start(
        &self,
        binaries: &Binaries,
        placement: &[usize],
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Vec<Instance>> {
        let mut slots: Vec<Option<Instance>> = placement.iter().map(|_| None).collect();
        for (h, host) in self.hosts.iter().enumerate() {
            let here: Vec<usize> = (0..placement.len())
                .filter(|&i| placement[i] % self.hosts.len() == h)
                .collect();
            if here.is_empty() {
                continue;
            }
            let started = host.start_servers(binaries, here.len(), options, shutdown)?;
            for (i, instance) in here.into_iter().zip(started) {
                slots[i] = Some(instance);
            }
        }
        Ok(slots
            .into_iter()
            .map(|s| s.expect("every position was started"))
            .collect())
    }
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
