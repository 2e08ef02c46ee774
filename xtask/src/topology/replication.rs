//! A primary and its replicas.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::engine::Target;
use bench_core::info::Info;
use bench_core::shutdown::Shutdown;

use super::{Deployment, Node, Role, Topology};
use crate::host::ServerHosts;
use crate::instances;
use crate::valkey::Binaries;

/// A primary and `replicas` replicas. With `attach`, every replica is made a replica of
/// the primary (REPLICAOF) and `deploy` returns once each has finished its full sync;
/// without it the replicas start as independent servers, for a caller that times the
/// sync itself (the sync suite).
#[derive(Clone, Copy, Debug)]
pub struct ReplicationGroup {
    pub replicas: u32,
    pub attach: bool,
    /// The longest a replica may take to sync when attaching.
    pub sync_timeout: Duration,
}

impl ReplicationGroup {
    /// Replicas attached and synced before `deploy` returns.
    pub fn attached(replicas: u32) -> ReplicationGroup {
        ReplicationGroup {
            replicas,
            attach: true,
            sync_timeout: Duration::from_secs(60),
        }
    }

    /// Replicas started but not attached: the caller sends REPLICAOF.
    pub fn detached(replicas: u32) -> ReplicationGroup {
        ReplicationGroup {
            replicas,
            attach: false,
            sync_timeout: Duration::ZERO,
        }
    }
}

impl Topology for ReplicationGroup {
    fn name(&self) -> String {
        format!("primary+{}", self.replicas)
    }

    fn deploy(
        &self,
        hosts: &ServerHosts,
        binaries: &Binaries,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Deployment> {
        let mut options = options.clone();
        if self.attach {
            super::sync_at_once(&mut options);
        }
        let placement = super::spread_group(self.replicas as usize, hosts.len());
        let started = hosts.start(binaries, &placement, &options, shutdown)?;
        let mut nodes = started.into_iter().enumerate().map(|(i, instance)| Node {
            role: if i == 0 { Role::Primary } else { Role::Replica },
            shard: 0,
            instance,
        });
        let primary = nodes.next().expect("started replicas + 1 servers");
        let deployment = Deployment {
            target: Target::standalone(primary.instance.addr)
                .with_tls(primary.instance.tls.clone()),
            nodes: std::iter::once(primary).chain(nodes).collect(),
        };
        if self.attach {
            attach(&deployment, self.sync_timeout, shutdown)?;
        }
        Ok(deployment)
    }
}

/// REPLICAOF on every replica, then waits until each reports its link up and no sync in
/// progress.
fn attach(deployment: &Deployment, timeout: Duration, shutdown: &Shutdown) -> anyhow::Result<()> {
    let primary = deployment.primary();
    let (ip, port) = (primary.addr.ip().to_string(), primary.port().to_string());
    for replica in deployment.replicas() {
        replica
            .client()?
            .call(&["REPLICAOF", ip.as_str(), port.as_str()])
            .with_context(|| format!("REPLICAOF on :{}", replica.port()))?;
    }
    for replica in deployment.replicas() {
        let mut client = replica.client()?;
        let began = Instant::now();
        loop {
            if shutdown.is_triggered() {
                bail!("interrupted");
            }
            let info = Info::parse(&client.call_text(&["INFO", "replication"])?);
            if bench_core::sync::sync_done(&info) {
                break;
            }
            if began.elapsed() > timeout {
                bail!(
                    "replica :{} did not finish its sync with :{} within {timeout:?}; its last \
                     log lines:\n{}",
                    replica.port(),
                    primary.port(),
                    replica.log_tail(8)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}
