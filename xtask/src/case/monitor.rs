//! The 1 Hz monitor: server INFO (memory, CPU, ops, clients, replication offsets,
//! commandstats) and host figures from /proc, sampled while a suite measures.
//!
//! It runs on its own thread with its own connections, samples at start, every second,
//! and once more at stop, so even a short window has a first and a last sample. The first
//! sample is taken before `start` returns: taken on the thread, it could land after the
//! measured run began, and its counters (commandstats calls) would then miss requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bench_core::client::Client;
use bench_core::info::Info;
use bench_core::result::{CommandStat, HostSample, MonitorSample, ServerSample};
use bench_core::transport::Tls;

const PERIOD: Duration = Duration::from_secs(1);

pub struct Monitor {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<MonitorSample>>,
}

impl Monitor {
    /// Starts sampling `servers` (role, address). Its connections are open and its first
    /// sample is taken when this returns, so what a caller does next is never racing the
    /// monitor for a client slot, and the first sample precedes it.
    pub fn start(servers: Vec<(String, SocketAddr)>, tls: Option<&Tls>) -> Monitor {
        let mut clients: Vec<(String, SocketAddr, Option<Client>)> = servers
            .into_iter()
            .map(|(role, addr)| {
                let client = Client::connect(addr, tls, Duration::from_secs(2))
                    .inspect_err(|e| {
                        eprintln!("warning: the monitor cannot connect to {role}: {e}; its samples will be missing")
                    })
                    .ok();
                (role, addr, client)
            })
            .collect();
        let started = Instant::now();
        let mut cpu = CpuTimes::read();
        let first = sample(&mut clients, started, &mut cpu, true);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || run(clients, started, cpu, first, &flag));
        Monitor { stop, handle }
    }

    /// Stops after one last sample and returns the series.
    pub fn stop(self) -> Vec<MonitorSample> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

fn run(
    mut clients: Vec<(String, SocketAddr, Option<Client>)>,
    started: Instant,
    mut cpu: CpuTimes,
    first: MonitorSample,
    stop: &AtomicBool,
) -> Vec<MonitorSample> {
    let mut samples = vec![first];
    loop {
        let next = started + PERIOD * samples.len() as u32;
        while Instant::now() < next {
            if stop.load(Ordering::SeqCst) {
                // One last sample at the end of the window.
                samples.push(sample(&mut clients, started, &mut cpu, false));
                return samples;
            }
            thread::sleep(Duration::from_millis(10));
        }
        samples.push(sample(&mut clients, started, &mut cpu, false));
    }
}

/// Every server and the host now; `cpu` moves on to this sample's CPU times.
fn sample(
    clients: &mut [(String, SocketAddr, Option<Client>)],
    started: Instant,
    cpu: &mut CpuTimes,
    first: bool,
) -> MonitorSample {
    let servers = clients
        .iter_mut()
        .filter_map(|(role, addr, client)| server_sample(role, *addr, client.as_mut()?))
        .collect();
    let now = CpuTimes::read();
    let host = HostSample {
        cpu_busy_pct: if first {
            Vec::new()
        } else {
            now.busy_pct_since(cpu)
        },
        mem_available_bytes: mem_available(),
        load1: load1(),
    };
    *cpu = now;
    MonitorSample {
        t_secs: started.elapsed().as_secs_f64(),
        servers,
        host,
    }
}

fn server_sample(role: &str, addr: SocketAddr, client: &mut Client) -> Option<ServerSample> {
    let info = Info::parse(&client.call_text(&["INFO", "everything"]).ok()?);
    let u = |f: &str| info.get_u64(f).unwrap_or(0);
    Some(ServerSample {
        role: role.to_string(),
        port: addr.port(),
        used_memory: u("used_memory"),
        used_memory_rss: u("used_memory_rss"),
        used_cpu_user: info.get_f64("used_cpu_user").unwrap_or(0.0),
        used_cpu_sys: info.get_f64("used_cpu_sys").unwrap_or(0.0),
        instantaneous_ops_per_sec: u("instantaneous_ops_per_sec"),
        connected_clients: u("connected_clients"),
        repl_offset: info
            .get_u64("slave_repl_offset")
            .unwrap_or(u("master_repl_offset")),
        commandstats: info
            .commandstats()
            .into_iter()
            .map(|(name, (calls, usec))| (name, CommandStat { calls, usec }))
            .collect(),
    })
}

/// Per-CPU jiffies from /proc/stat: (busy, total).
struct CpuTimes(Vec<(u64, u64)>);

impl CpuTimes {
    fn read() -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        CpuTimes(parse_proc_stat(&text))
    }

    fn busy_pct_since(&self, before: &CpuTimes) -> Vec<f64> {
        self.0
            .iter()
            .zip(&before.0)
            .map(|(&(b1, t1), &(b0, t0))| {
                if t1 > t0 {
                    100.0 * (b1 - b0) as f64 / (t1 - t0) as f64
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// `cpuN user nice system idle iowait irq softirq steal ...` → (busy, total) per CPU;
/// idle and iowait are not busy.
pub fn parse_proc_stat(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_busy_and_total_per_cpu() {
        let text = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 10 0 0 0 0 0\ncpu1 1 1 1 1 1 1 1 1 0 0\nintr 1\n";
        assert_eq!(parse_proc_stat(text), vec![(10, 60), (6, 8)]);
        let before = CpuTimes(vec![(10, 60)]);
        let after = CpuTimes(vec![(40, 120)]);
        assert_eq!(after.busy_pct_since(&before), vec![50.0]);
    }

    #[test]
    fn reads_this_hosts_proc() {
        assert!(!CpuTimes::read().0.is_empty());
        assert!(mem_available() > 0);
    }
}
