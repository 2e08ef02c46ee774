//! How servers are arranged for a case: the [`Topology`] seam. A topology deploys servers
//! on the run's [`ServerHosts`] (spread over them: [`spread_group`], [`spread_cluster`])
//! and returns a [`Deployment`]: its nodes (with their roles) and the
//! [`Target`] engines drive: [`Standalone`], [`ReplicationGroup`] and [`Cluster`];
//! [`from_spec`] makes one from a `--topology` value.
//!
//! A deployment owns its servers: dropping it stops them all.

pub mod cluster;
mod replication;
mod standalone;

use bench_core::engine::Target;
use bench_core::shutdown::Shutdown;

use crate::host::ServerHosts;
use crate::instances::{self, Instance};
use crate::valkey::Binaries;
use bench_core::topology::{ReadFrom, TopologySpec};
pub use cluster::Cluster;
pub use replication::ReplicationGroup;
pub use standalone::Standalone;

/// What a node is in its deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// One server of a deployment.
pub struct Node {
    pub role: Role,
    /// Its shard in a cluster (0 elsewhere).
    pub shard: usize,
    pub instance: Instance,
}

/// Running servers for one case: the nodes and where load goes.
pub struct Deployment {
    /// The primaries first (one outside a cluster), then the replicas in order.
    pub nodes: Vec<Node>,
    pub target: Target,
}

impl Deployment {
    /// The (first) primary: every topology has one.
    pub fn primary(&self) -> &Instance {
        &self.nodes[0].instance
    }

    pub fn primary_mut(&mut self) -> &mut Instance {
        &mut self.nodes[0].instance
    }

    /// The replicas, in order.
    pub fn replicas(&self) -> impl Iterator<Item = &Instance> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Replica)
            .map(|n| &n.instance)
    }

    /// Takes the primary out of a one-node deployment (the callers that manage a single
    /// server themselves).
    pub fn into_primary(mut self) -> Instance {
        debug_assert_eq!(
            self.nodes.len(),
            1,
            "into_primary would stop the other nodes"
        );
        self.nodes.swap_remove(0).instance
    }
}

/// An arrangement of servers.
pub trait Topology: Sync {
    /// How records and messages name it, e.g. `standalone`, `primary+2`.
    fn name(&self) -> String;
    /// Starts the servers on `hosts` (every one gets `options`: config, ports, scratch) and
    /// returns them running and ready.
    fn deploy(
        &self,
        hosts: &ServerHosts,
        binaries: &Binaries,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Deployment>;
}

/// Replicas the topology attaches start their sync at once: Valkey waits
/// `repl-diskless-sync-delay` (5 s) for more replicas to share a diskless transfer. A case
/// that sets it keeps its own value.
fn sync_at_once(options: &mut instances::Options) {
    options
        .config
        .entry("repl-diskless-sync-delay".into())
        .or_insert_with(|| "0".into());
}

/// The host of each server of a primary with `replicas` replicas over `hosts` hosts (an
/// index into them, in node order): the primary on the first, each replica on another
/// host than the primary where there is one.
pub fn spread_group(replicas: usize, hosts: usize) -> Vec<usize> {
    let others = hosts.saturating_sub(1).max(1);
    std::iter::once(0)
        .chain((0..replicas).map(|j| if hosts > 1 { 1 + j % others } else { 0 }))
        .collect()
}

/// The host of each node of a cluster (primaries in shard order, then each shard's
/// replicas): primary `s` on host `s mod hosts`, its replicas on the hosts after it, so
/// with more than one host no replica shares its primary's host.
pub fn spread_cluster(shards: usize, replicas: usize, hosts: usize) -> Vec<usize> {
    let hosts = hosts.max(1);
    let primaries = (0..shards).map(|s| s % hosts);
    let replicas = (0..shards).flat_map(move |s| {
        (0..replicas).map(move |r| {
            if hosts == 1 {
                0
            } else {
                (s + 1 + r % (hosts - 1)) % hosts
            }
        })
    });
    primaries.chain(replicas).collect()
}

/// The topology a `--topology` value names; `read_from` matters to clusters only.
pub fn from_spec(spec: TopologySpec, read_from: ReadFrom) -> Box<dyn Topology> {
    match spec {
        TopologySpec::Standalone => Box::new(Standalone),
        TopologySpec::Replicas(n) => Box::new(ReplicationGroup::attached(n)),
        TopologySpec::Cluster { shards, replicas } => {
            Box::new(Cluster::new(shards, replicas, read_from))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_go_to_other_hosts_than_their_primary() {
        assert_eq!(spread_group(2, 1), [0, 0, 0]);
        assert_eq!(spread_group(2, 2), [0, 1, 1]);
        assert_eq!(spread_group(3, 3), [0, 1, 2, 1]);
        // cluster:3x1 over three hosts: a primary on each, each replica on the next one.
        let spread = spread_cluster(3, 1, 3);
        assert_eq!(spread, [0, 1, 2, 1, 2, 0]);
        for shards in 1..6 {
            for replicas in 0..3 {
                for hosts in 2..5 {
                    let spread = spread_cluster(shards, replicas, hosts);
                    assert_eq!(spread.len(), shards * (replicas + 1));
                    for s in 0..shards {
                        for r in 0..replicas {
                            let replica = spread[shards + s * replicas + r];
                            assert_ne!(replica, spread[s], "{shards}x{replicas} on {hosts}");
                        }
                    }
                }
            }
        }
        assert_eq!(spread_cluster(3, 1, 1), [0; 6]);
    }
}
