//! How servers are arranged for a case: the [`Topology`] seam. A topology deploys servers
//! on a [`Host`] and returns a [`Deployment`]: its nodes (with their roles) and the
//! [`Target`] engines drive. Two implementations today: [`Standalone`] and
//! [`ReplicationGroup`]; cluster and TLS are the next.
//!
//! A deployment owns its servers: dropping it stops them all.

mod replication;
mod standalone;

use std::path::Path;

use bench_core::engine::Target;
use bench_core::shutdown::Shutdown;

use crate::host::Host;
use crate::instances::{self, Instance};
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
    pub instance: Instance,
}

/// Running servers for one case: the nodes and where load goes.
pub struct Deployment {
    /// The primary first, then the replicas in order.
    pub nodes: Vec<Node>,
    pub target: Target,
}

impl Deployment {
    /// The primary (every topology has one).
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
