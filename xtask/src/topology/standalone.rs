//! One server, alone.

use bench_core::engine::Target;
use bench_core::shutdown::Shutdown;

use super::{Deployment, Node, Role, Topology};
use crate::host::ServerHosts;
use crate::instances;
use crate::valkey::Binaries;

/// One primary, no replicas.
#[derive(Clone, Copy, Debug, Default)]
pub struct Standalone;

impl Topology for Standalone {
    fn name(&self) -> String {
        "standalone".into()
    }

    fn deploy(
        &self,
        hosts: &ServerHosts,
        binaries: &Binaries,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Deployment> {
        let instance = hosts.start(binaries, &[0], options, shutdown)?.remove(0);
        Ok(Deployment {
            target: Target::standalone(instance.addr).with_tls(instance.tls.clone()),
            nodes: vec![Node {
                role: Role::Primary,
                shard: 0,
                instance,
            }],
        })
    }
}
