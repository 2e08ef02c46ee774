//! How servers are arranged for a case: the [`Topology`] seam. A topology deploys servers
//! on a [`Host`] and returns a [`Deployment`]: its nodes (with their roles) and the
//! [`Target`] engines drive: [`Standalone`], [`ReplicationGroup`] and [`Cluster`];
//! [`from_spec`] makes one from a `--topology` value.
//!
//! A deployment owns its servers: dropping it stops them all.

pub mod cluster;
mod replication;
mod standalone;

use std::path::Path;

use bench_core::engine::Target;
use bench_core::shutdown::Shutdown;

use crate::host::Host;
use crate::instances::{self, Instance};
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
    /// Starts the servers on `host` (every one gets `options`: config, ports, scratch) and
    /// returns them running and ready.
    fn deploy(
        &self,
        host: &dyn Host,
        server: &Path,
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
