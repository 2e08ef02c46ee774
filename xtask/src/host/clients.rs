//! Load from several client hosts (`--client-hosts`): an [`Engine`] whose run is divided
//! among the hosts' generators and merged back into one measurement, losslessly
//! (`bench_core::loadgen::merge`).
//!
//! - **Division**: the connections are divided among the hosts (each gets the whole
//!   run's connection indices `first..`, so its key draws are those connections' in a
//!   one-host run); a request count is divided in the same proportion. In open loop the
//!   whole run's schedule of send times is partitioned by connection (interleaved, not N
//!   copies): the aggregate has the requested rate.
//! - **Start**: the hosts start together at one instant, 1 s ahead, each in its own clock:
//!   the offset of each host's clock from ours is estimated over the control channel
//!   (best of 5 round trips) and recorded.
//! - **A host** is this machine (its share runs in this process) or a remote one, whose
//!   agent runs its share in the background and is polled for the report (which also
//!   keeps its lease).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use bench_core::engine::{Engine, EngineError, Load, Measurement, Target};
use bench_core::loadgen::engine::{NativeEngine, measurement, options, workload};
use bench_core::loadgen::merge::{self, Part};
use bench_core::loadgen::{Report, Share};
use bench_core::shutdown::Shutdown;

use super::agent::{LoadShare, Request, unix_ns};
use super::link::AgentLink;

/// How far ahead of now the hosts are told to start.
const START_AHEAD: Duration = Duration::from_secs(1);

/// How often a remote share is asked for its report.
const POLL: Duration = Duration::from_millis(100);

/// One client host.
#[derive(Debug)]
pub enum ClientHost {
    /// This machine: its share runs in this process.
    Local,
    /// Another host: its agent runs its share, pinned to `cpus` (its `client_cpus`).
    Remote {
        name: String,
        link: Arc<AgentLink>,
        cpus: Vec<usize>,
    },
}

impl ClientHost {
    pub fn name(&self) -> &str {
        match self {
            ClientHost::Local => super::file::LOCAL,
            ClientHost::Remote { name, .. } => name,
        }
    }
}

/// The run's client hosts, as an engine.
#[derive(Debug)]
pub struct ClientHosts {
    pub hosts: Vec<ClientHost>,
}

/// Host `i`'s share of `total` (connections or requests) over `n` hosts, and where it
/// starts: the remainder goes to the first hosts, one each.
pub fn divide(total: u64, n: usize, i: usize) -> (u64, u64) {
    let (n, i) = (n as u64, i as u64);
    let (base, extra) = (total / n, total % n);
    let mine = base + u64::from(i < extra);
    let first = i * base + i.min(extra);
    (first, mine)
}

impl ClientHosts {
    /// The hosts' names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(ClientHost::name).collect()
    }

    /// The offset of each host's clock from ours, µs (best of 5 round trips).
    fn clock_offsets(&self) -> Result<Vec<f64>, EngineError> {
        self.hosts
            .iter()
            .map(|h| match h {
                ClientHost::Local => Ok(0.0),
                ClientHost::Remote { link, name, .. } => {
                    let mut best: Option<(u64, f64)> = None;
                    for _ in 0..5 {
                        let before = unix_ns();
                        let theirs = link
                            .call(&Request::Clock, Duration::ZERO)
                            .map_err(|e| failed(format!("reading host {name}'s clock: {e:#}")))?
                            .as_u64()
                            .ok_or_else(|| failed(format!("host {name} sent no clock")))?;
                        let after = unix_ns();
                        let rtt = after.saturating_sub(before);
                        let offset = theirs as f64 - (before as f64 + after as f64) / 2.0;
                        if best.is_none_or(|(r, _)| rtt < r) {
                            best = Some((rtt, offset / 1e3));
                        }
                    }
                    Ok(best.map_or(0.0, |(_, o)| o))
                }
            })
            .collect()
    }
}

fn failed(message: String) -> EngineError {
    EngineError::Failed {
        engine: "native",
        message,
    }
}

impl Engine for ClientHosts {
    fn name(&self) -> &'static str {
        "native"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    /// The one-host command of the whole run (each host ran its share of it; records
    /// list the hosts).
    fn describe(&self, target: &Target, load: &Load) -> Vec<String> {
        NativeEngine.describe(target, load)
    }

    fn run(
        &self,
        target: &Target,
        load: &Load,
        shutdown: &Shutdown,
    ) -> Result<Measurement, EngineError> {
        let n = self.hosts.len();
        if (load.clients as usize) < n {
            return Err(failed(format!(
                "{} connections over {n} client hosts: give each host at least one",
                load.clients
            )));
        }
        let offsets = self.clock_offsets()?;
        let whole = options(target, load);
        let tls = target
            .tls
            .as_ref()
            .map(crate::tls::ClientPem::of)
            .transpose()
            .map_err(|e| failed(format!("the TLS material for the client hosts: {e:#}")))?;
        let start = SystemTime::now() + START_AHEAD;
        let start_ns = start
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let began = Instant::now();
        let results: Vec<Result<Report, String>> = thread::scope(|scope| {
            let handles: Vec<_> = self
                .hosts
                .iter()
                .enumerate()
                .map(|(i, host)| {
                    let (first, connections) = divide(u64::from(load.clients), n, i);
                    let (_, requests) = divide(load.requests, n, i);
                    let share = Share {
                        first: first as u32,
                        total: load.clients,
                    };
                    let connections = connections as u32;
                    let threads = load.threads.clamp(1, connections);
                    let offset_ns = (offsets[i] * 1e3) as i64;
                    let (whole, tls) = (&whole, &tls);
                    scope.spawn(move || match host {
                        ClientHost::Local => {
                            let options = bench_core::loadgen::RunOptions {
                                connections,
                                threads,
                                stop: bench_core::loadgen::Stop::Requests(requests),
                                share: Some(share),
                                start_at: Some(start),
                                ..whole.clone()
                            };
                            bench_core::loadgen::run(
                                &[target.primary()],
                                &workload(load),
                                &options,
                                shutdown,
                                |_| {},
                            )
                            .map_err(|e| e.to_string())
                        }
                        ClientHost::Remote { link, cpus, name } => {
                            let share = LoadShare {
                                addrs: vec![target.primary()],
                                workload: workload(load),
                                connections,
                                pipeline: load.pipeline,
                                threads,
                                rate: None,
                                requests: Some(requests),
                                duration_ms: None,
                                warmup_ms: 0,
                                cluster: whole
                                    .cluster
                                    .as_ref()
                                    .map(|c| (c.read_from, c.tag_multi_key, c.nodes.clone())),
                                cpus: cpus.clone(),
                                share,
                                start_at_unix_ns: start_ns.saturating_add_signed(offset_ns),
                                tls: tls.clone(),
                            };
                            remote_share(link, name, share, shutdown)
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a share panicked".into())))
                .collect()
        });
        let wall_secs = began.elapsed().as_secs_f64();
        if shutdown.is_triggered() {
            return Err(EngineError::Interrupted);
        }
        let mut parts = Vec::new();
        for ((host, result), offset) in self.hosts.iter().zip(results).zip(offsets) {
            let report =
                result.map_err(|why| failed(format!("client host {}: {why}", host.name())))?;
            parts.push(Part {
                name: host.name().to_string(),
                report,
                clock_offset_us: offset,
            });
        }
        let (report, hosts) = merge::merge(&parts).map_err(failed)?;
        let mut m = measurement(report, wall_secs)?;
        m.client_hosts = hosts;
        Ok(m)
    }
}

/// Runs a share on a remote host's agent: starts it, polls for its report, stops it on
/// shutdown.
fn remote_share(
    link: &AgentLink,
    name: &str,
    share: LoadShare,
    shutdown: &Shutdown,
) -> Result<Report, String> {
    link.call(&Request::Load(Box::new(share)), Duration::ZERO)
        .map_err(|e| format!("starting the load on {name}: {e:#}"))?;
    loop {
        if shutdown.is_triggered() {
            let _ = link.call(&Request::LoadStop, Duration::ZERO);
            return Err("interrupted".into());
        }
        let reply = link
            .call(&Request::LoadResult, Duration::ZERO)
            .map_err(|e| format!("{e:#}"))?;
        if !reply.is_null() {
            return serde_json::from_value(reply).map_err(|e| format!("its report: {e}"));
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_whole_run_once() {
        for total in [0u64, 1, 7, 50, 1001] {
            for n in 1..5 {
                let mut next = 0;
                for i in 0..n {
                    let (first, mine) = divide(total, n, i);
                    assert_eq!(first, next, "{total} over {n}");
                    next += mine;
                }
                assert_eq!(next, total);
            }
        }
        assert_eq!(divide(10, 3, 0), (0, 4));
        assert_eq!(divide(10, 3, 2), (7, 3));
    }
}
