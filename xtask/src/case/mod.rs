//! The case flow every suite measures through: deploy → preload → warm up → measure →
//! probes → record. This module holds its shared parts: the one [`CaseContext`], the
//! [`Servers`] seam a case's servers come from (fresh ones on a topology and host, or a
//! fake in the flow's order tests), the [`Server`] a case drives, and [`drive`], the one
//! way load is run. Preload is `preload.rs`, the 1 Hz probe `monitor.rs`.

pub mod monitor;
pub mod preload;

#[cfg(test)]
pub mod fake;

use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::client::Client;
use bench_core::cluster::ClusterClient;
use bench_core::engine::{Engine, EngineError, Load, Measurement, Target};
use bench_core::info::Info;
use bench_core::result::{HostInfo, ServerHostRecord};
use bench_core::shutdown::Shutdown;
use bench_core::transport::TlsMode;

use crate::host::ServerHosts;
use crate::instances;
use crate::instances::Instance;
use crate::topology::{Deployment, Node, Role, Standalone, Topology, cluster};
use crate::valkey::Binaries;
use monitor::Monitor;
use preload::Preload;

/// Everything a case needs that is not the case itself; the same for every suite.
pub struct CaseContext<'a> {
    pub run_id: &'a str,
    pub binaries: &'a Binaries,
    /// The facts of the machine the load runs on (this one).
    pub host: &'a HostInfo,
    /// Where servers run (the sync suite deploys its own arrangement on them).
    pub hosts: &'a ServerHosts,
    /// What drives the load (the perf suite's; mem and sync write their own traffic).
    pub engine: &'a dyn Engine,
    pub base_port: u16,
    pub shutdown: &'a Shutdown,
    /// Where the case's servers come from.
    pub servers: &'a dyn Servers,
    /// The servers speak TLS only (a CA and certificates made for each deployment).
    pub tls: Option<TlsMode>,
}

impl CaseContext<'_> {
    /// Fresh servers for one case, with `options` (config, wrapper, timeouts) at this
    /// context's ports.
    pub fn deploy(&self, options: instances::Options) -> anyhow::Result<Box<dyn Server>> {
        let options = instances::Options {
            base_port: self.base_port,
            tls: instances::tls_material(self.tls, &self.hosts.addresses())?,
            ..options
        };
        self.servers.start(self.binaries, &options, self.shutdown)
    }
}

/// Where a case's servers come from.
pub trait Servers: Sync {
    /// Starts them, running and ready, with `options`.
    fn start(
        &self,
        binaries: &Binaries,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Box<dyn Server>>;
}

/// Servers deployed by a topology on the run's hosts: what every run uses.
pub struct Deploy<'a> {
    pub topology: &'a dyn Topology,
    pub hosts: &'a ServerHosts,
}

/// One standalone server on this machine per case.
pub static LOCAL_STANDALONE: std::sync::LazyLock<Deploy<'static>> =
    std::sync::LazyLock::new(|| Deploy {
        topology: &Standalone,
        hosts: crate::host::local_hosts(),
    });

impl Servers for Deploy<'_> {
    fn start(
        &self,
        binaries: &Binaries,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Box<dyn Server>> {
        let deployment = self
            .topology
            .deploy(self.hosts, binaries, options, shutdown)?;
        Ok(Box::new(Deployed {
            deployment,
            control: None,
            cluster_controls: Vec::new(),
        }))
    }
}

/// A case's running servers, as the case flow sees them. Dropping it stops them.
pub trait Server {
    /// Where engines send load.
    fn target(&self) -> Target;
    /// The primary's port, for messages.
    fn port(&self) -> u16;
    /// The primary's process id, for profilers.
    fn pid(&self) -> u32;
    /// Starts `perf record` on the primary, on its host.
    fn perf_record(
        &self,
        event: &str,
        frequency: u32,
    ) -> anyhow::Result<crate::instances::perf_record::PerfRecording<'_>>;
    /// A new control connection to the primary (the mem suite's traffic).
    fn client(&self) -> anyhow::Result<Client>;
    /// `INFO everything` from the primary, over one control connection kept for the case.
    fn info(&mut self) -> anyhow::Result<Info>;
    /// Writes what the workload reads (checked) and returns how many items that was.
    fn preload(&mut self, preload: &Preload) -> anyhow::Result<u64>;
    /// Whether the primary still accepts a connection (a new one).
    fn answers(&mut self) -> anyhow::Result<()>;
    /// `LLEN key` on the primary, over a new connection: fails if it no longer answers.
    fn list_len(&mut self, key: &str) -> anyhow::Result<i64>;
    /// `None` while every server runs; else the last log lines of the primary.
    fn exited(&mut self) -> Option<String>;
    /// Starts the 1 Hz sampler on every node.
    fn monitor(&self) -> Monitor;
    /// The hosts other than this machine that its servers run on, for records (empty
    /// when they all run here).
    fn hosts(&self, hosts: &ServerHosts) -> Vec<ServerHostRecord>;
}

/// The hosts other than this machine that `nodes` run on: each with its facts, its
/// servers and the round trip to its first server (median of 21 PINGs).
pub fn server_hosts(nodes: &[Node], hosts: &ServerHosts) -> Vec<ServerHostRecord> {
    let mut out: Vec<ServerHostRecord> = Vec::new();
    for node in nodes.iter().filter(|n| !n.instance.is_local()) {
        let role = match node.role {
            Role::Primary => "primary",
            Role::Replica => "replica",
        };
        let name = node.instance.host();
        let server = format!("{role} :{}", node.instance.port());
        if let Some(host) = out.iter_mut().find(|h| h.name == name) {
            host.servers.push(server);
            continue;
        }
        let Some(host) = hosts.iter().find(|h| h.name() == name) else {
            continue;
        };
        out.push(ServerHostRecord {
            name: name.to_string(),
            address: node.instance.addr.ip().to_string(),
            facts: host.info(),
            servers: vec![server],
            rtt_us: round_trip_us(&node.instance),
            build: node.instance.build_note().map(str::to_string),
        });
    }
    out
}

/// The median of 21 PINGs to `instance`, one at a time over one connection, in µs.
fn round_trip_us(instance: &Instance) -> Option<f64> {
    let mut client = instance.client().ok()?;
    client.call(&["PING"]).ok()?;
    let mut times: Vec<f64> = (0..21)
        .filter_map(|_| {
            let start = std::time::Instant::now();
            client.call(&["PING"]).ok()?;
            Some(start.elapsed().as_secs_f64() * 1e6)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied()
}

/// A [`Deployment`] with the case's control connection.
struct Deployed {
    deployment: Deployment,
    control: Option<Client>,
    /// A cluster: one control connection per primary.
    cluster_controls: Vec<Client>,
}

impl Deployed {
    fn is_cluster(&self) -> bool {
        self.deployment.target.cluster.is_some()
    }

    /// A client that sends each key to its owner.
    fn cluster_client(&self) -> anyhow::Result<ClusterClient> {
        Ok(ClusterClient::connect(
            self.deployment.primary().addr,
            &self.deployment.target.nodes,
            self.deployment.target.tls.as_ref(),
            Duration::from_secs(10),
        )?)
    }

    fn control(&mut self) -> anyhow::Result<&mut Client> {
        if self.control.is_none() {
            self.control = Some(self.deployment.primary().client()?);
        }
        Ok(self.control.as_mut().expect("connected above"))
    }
}

impl Server for Deployed {
    fn target(&self) -> Target {
        self.deployment.target.clone()
    }

    fn port(&self) -> u16 {
        self.deployment.primary().port()
    }

    fn pid(&self) -> u32 {
        self.deployment.primary().pid()
    }

    fn perf_record(
        &self,
        event: &str,
        frequency: u32,
    ) -> anyhow::Result<crate::instances::perf_record::PerfRecording<'_>> {
        self.deployment.primary().perf_record(event, frequency)
    }

    fn client(&self) -> anyhow::Result<Client> {
        self.deployment.primary().client()
    }

    /// On a cluster: the primaries' INFO summed (CPU, commandstats), one control
    /// connection to each kept for the case.
    fn info(&mut self) -> anyhow::Result<Info> {
        if !self.is_cluster() {
            return Ok(Info::parse(
                &self.control()?.call_text(&["INFO", "everything"])?,
            ));
        }
        if self.cluster_controls.is_empty() {
            self.cluster_controls = cluster::primaries(&self.deployment.nodes)
                .map(Instance::client)
                .collect::<anyhow::Result<_>>()?;
        }
        let infos = self
            .cluster_controls
            .iter_mut()
            .map(|c| Ok(Info::parse(&c.call_text(&["INFO", "everything"])?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Info::sum(&infos))
    }

    fn preload(&mut self, preload: &Preload) -> anyhow::Result<u64> {
        if self.is_cluster() {
            let mut client = self.cluster_client()?;
            return preload.write_keyed(&mut client);
        }
        let mut client = self.deployment.primary().client()?;
        preload.write(&mut client)
    }

    /// Every node still accepts a connection.
    fn answers(&mut self) -> anyhow::Result<()> {
        for node in &self.deployment.nodes {
            node.instance
                .client()
                .with_context(|| format!(":{} does not answer", node.instance.port()))?;
        }
        Ok(())
    }

    fn list_len(&mut self, key: &str) -> anyhow::Result<i64> {
        if self.is_cluster() {
            return Ok(self
                .cluster_client()?
                .for_key(key.as_bytes())
                .call_int(&["LLEN", key])?);
        }
        Ok(self
            .deployment
            .primary()
            .client()?
            .call_int(&["LLEN", key])?)
    }

    fn exited(&mut self) -> Option<String> {
        self.deployment.nodes.iter_mut().find_map(|n| {
            let instance = &mut n.instance;
            (!instance.is_running())
                .then(|| format!(":{} {}", instance.port(), instance.log_tail(20)))
        })
    }

    fn monitor(&self) -> Monitor {
        let nodes = &self.deployment.nodes;
        let names: Vec<String> = if self.is_cluster() {
            cluster::node_names(nodes)
        } else {
            let mut replica = 0;
            nodes
                .iter()
                .map(|n| match n.role {
                    Role::Primary if nodes.len() == 1 => "server".to_string(),
                    Role::Primary => "primary".to_string(),
                    Role::Replica => {
                        replica += 1;
                        format!("replica{replica}")
                    }
                })
                .collect()
        };
        Monitor::start(
            names
                .into_iter()
                .zip(nodes.iter().map(|n| n.instance.addr))
                .collect(),
            self.deployment.target.tls.as_ref(),
        )
    }

    fn hosts(&self, hosts: &ServerHosts) -> Vec<ServerHostRecord> {
        server_hosts(&self.deployment.nodes, hosts)
    }
}

/// Runs `load` on the server with the context's engine. An engine error says whether the
/// server died, with its last log lines.
pub fn drive(
    ctx: &CaseContext<'_>,
    server: &mut dyn Server,
    load: &Load,
) -> anyhow::Result<Measurement> {
    match ctx.engine.run(&server.target(), load, ctx.shutdown) {
        Ok(m) => Ok(m),
        Err(EngineError::Interrupted) => bail!("interrupted"),
        Err(e) => match server.exited() {
            Some(log) => bail!("{e}\nthe server exited; last log lines:\n{log}"),
            None => Err(e.into()),
        },
    }
}
