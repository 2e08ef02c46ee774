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

use std::net::SocketAddr;

use bench_core::engine::{Engine, EngineError, Load, Measurement, Target};
use bench_core::loadgen::engine::{NativeEngine, measurement, options, workload};
use bench_core::loadgen::merge::{self, Part};
use bench_core::loadgen::{Progress, Report, RunOptions, Share, Stop};
use bench_core::shutdown::Shutdown;
use bench_core::workload::WorkloadSpec;

use super::agent::{Request, unix_ns};
use super::link::AgentLink;
use super::share::{LoadShare, SeenProgress};

/// How far ahead of now the hosts are told to start.
const START_AHEAD: Duration = Duration::from_secs(1);

/// How often a remote share is asked for its report.
const POLL: Duration = Duration::from_millis(100);

/// How often a remote share is asked for its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

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

    /// What one host's generator can run, all of them can (an open loop's schedule is
    /// divided among them).
    fn can_run(&self, load: &Load) -> Result<(), String> {
        NativeEngine.can_run(load)
    }

    fn run(
        &self,
        target: &Target,
        load: &Load,
        shutdown: &Shutdown,
    ) -> Result<Measurement, EngineError> {
        let (parts, wall_secs) = self
            .run_parts(
                &[target.primary()],
                &workload(load),
                &options(target, load),
                shutdown,
                &|_, _| {},
            )
            .map_err(|e| match e {
                PartsError::Interrupted => EngineError::Interrupted,
                PartsError::Failed(why) => failed(why),
            })?;
        let (report, hosts) = merge::merge(&parts).map_err(failed)?;
        let mut m = measurement(report, wall_secs)?;
        m.client_hosts = hosts;
        Ok(m)
    }
}

/// Why the hosts' run gave no parts.
#[derive(Debug)]
pub enum PartsError {
    Interrupted,
    Failed(String),
}

impl std::fmt::Display for PartsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartsError::Interrupted => f.write_str("interrupted"),
            PartsError::Failed(why) => f.write_str(why),
        }
    }
}

impl ClientHosts {
    /// Runs `whole` (the whole run's options: its connections, threads, rate, and a
    /// request count or a duration) against `addrs` from every host, each its share,
    /// started together; returns each host's report (to merge) and the wall time.
    /// `progress(host, p)` gets each host's progress about once a second (a remote one's
    /// as its agent last saw it).
    pub fn run_parts(
        &self,
        addrs: &[SocketAddr],
        spec: &WorkloadSpec,
        whole: &RunOptions,
        shutdown: &Shutdown,
        progress: &(dyn Fn(usize, Progress) + Sync),
    ) -> Result<(Vec<Part>, f64), PartsError> {
        let n = self.hosts.len();
        if (whole.connections as usize) < n {
            return Err(PartsError::Failed(format!(
                "{} connections over {n} client hosts: give each host at least one",
                whole.connections
            )));
        }
        let offsets = self
            .clock_offsets()
            .map_err(|e| PartsError::Failed(e.to_string()))?;
        let tls = whole
            .tls
            .as_ref()
            .map(crate::tls::ClientPem::of)
            .transpose()
            .map_err(|e| {
                PartsError::Failed(format!("the TLS material for the client hosts: {e:#}"))
            })?;
        let start = SystemTime::now() + START_AHEAD;
        let start_ns = start
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let began = Instant::now();
        // This run's stop: the caller's shutdown, or the first host that fails (the
        // others would otherwise run on to their end for nothing).
        let stop_all = Shutdown::new();
        let over = Shutdown::new();
        let first_failure: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let fail = |name: &str, why: &str| {
            let mut first = first_failure.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() && !shutdown.is_triggered() {
                *first = Some(format!("client host {name}: {why}"));
            }
            stop_all.trigger();
        };
        let results: Vec<Result<Report, String>> = thread::scope(|scope| {
            scope.spawn(|| {
                while !over.is_triggered() {
                    if shutdown.is_triggered() {
                        stop_all.trigger();
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            });
            let (stop_all, fail) = (&stop_all, &fail);
            let handles: Vec<_> =
                self.hosts
                    .iter()
                    .enumerate()
                    .map(|(i, host)| {
                        let (first, connections) = divide(u64::from(whole.connections), n, i);
                        let stop = match whole.stop {
                            Stop::Requests(total) => Stop::Requests(divide(total, n, i).1),
                            duration => duration,
                        };
                        let share = Share {
                            first: first as u32,
                            total: whole.connections,
                        };
                        let connections = connections as u32;
                        let threads = whole.threads.clamp(1, connections);
                        let offset_ns = (offsets[i] * 1e3) as i64;
                        let tls = &tls;
                        scope.spawn(move || {
                            let result = match host {
                                ClientHost::Local => {
                                    let options = RunOptions {
                                        connections,
                                        threads,
                                        stop,
                                        share: Some(share),
                                        start_at: Some(start),
                                        ..whole.clone()
                                    };
                                    bench_core::loadgen::run(addrs, spec, &options, stop_all, |p| {
                                        progress(i, p)
                                    })
                                    .map_err(|e| e.to_string())
                                }
                                ClientHost::Remote { link, cpus, name } => {
                                    let (requests, duration_ms) = match stop {
                                        Stop::Requests(n) => (Some(n), None),
                                        Stop::Duration(d) => (None, Some(d.as_millis() as u64)),
                                    };
                                    let share = LoadShare {
                                        addrs: addrs.to_vec(),
                                        workload: spec.clone(),
                                        connections,
                                        pipeline: whole.pipeline,
                                        threads,
                                        rate: whole.rate,
                                        requests,
                                        duration_ms,
                                        warmup_ms: whole.warmup.as_millis() as u64,
                                        cluster: whole.cluster.as_ref().map(|c| {
                                            (c.read_from, c.tag_multi_key, c.nodes.clone())
                                        }),
                                        cpus: cpus.clone(),
                                        share,
                                        start_at_unix_ns: start_ns.saturating_add_signed(offset_ns),
                                        tls: tls.clone(),
                                    };
                                    remote_share(link, name, share, stop_all, &|p| progress(i, p))
                                }
                            };
                            match &result {
                                Err(why) => fail(host.name(), why),
                                Ok(report) => {
                                    if let Some(why) = &report.partial {
                                        fail(host.name(), &format!("it ended early: {why}"));
                                    }
                                }
                            }
                            result
                        })
                    })
                    .collect();
            let results = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a share panicked".into())))
                .collect();
            over.trigger();
            results
        });
        let wall_secs = began.elapsed().as_secs_f64();
        if shutdown.is_triggered() {
            return Err(PartsError::Interrupted);
        }
        if let Some(why) = first_failure
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        {
            let others = if n > 1 {
                "; the other hosts' shares were stopped"
            } else {
                ""
            };
            return Err(PartsError::Failed(format!("{why}{others}")));
        }
        let mut parts = Vec::new();
        for ((host, result), offset) in self.hosts.iter().zip(results).zip(offsets) {
            let report = result
                .map_err(|why| PartsError::Failed(format!("client host {}: {why}", host.name())))?;
            parts.push(Part {
                name: host.name().to_string(),
                report,
                clock_offset_us: offset,
            });
        }
        Ok((parts, wall_secs))
    }
}

/// Runs a share on a remote host's agent: starts it, polls for its report (and about
/// once a second for its progress), stops it on shutdown.
fn remote_share(
    link: &AgentLink,
    name: &str,
    share: LoadShare,
    shutdown: &Shutdown,
    progress: &dyn Fn(Progress),
) -> Result<Report, String> {
    link.call(&Request::Load(Box::new(share)), Duration::ZERO)
        .map_err(|e| format!("starting the load on {name}: {e:#}"))?;
    let mut asked = Instant::now();
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
        if asked.elapsed() >= PROGRESS_EVERY {
            asked = Instant::now();
            let seen = link
                .call(&Request::LoadProgress, Duration::ZERO)
                .map_err(|e| format!("{e:#}"))?;
            if let Ok(Some(p)) = serde_json::from_value::<Option<SeenProgress>>(seen) {
                progress(p.into());
            }
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
