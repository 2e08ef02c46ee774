//! A cluster on local ports: `shards` primaries sharing the 16384 slots evenly, each with
//! `replicas` replicas. Creation is what `valkey-cli --cluster create` does, checked more
//! strictly: distinct config epochs, slots assigned, every node met, replicas attached;
//! then it waits until every node says `cluster_state:ok`, every node's slot map is the
//! same (owners, and each shard's replicas online), and every replica has finished its
//! sync. Only then is anything measured.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::client::Client;
use bench_core::cluster::{SLOTS, SlotMap};
use bench_core::engine::Target;
use bench_core::info::Info;
use bench_core::shutdown::Shutdown;
use bench_core::topology::ReadFrom;

use super::{Deployment, Node, Role, Topology};
use crate::host::ServerHosts;
use crate::instances::{self, Instance};
use crate::valkey::Binaries;

#[derive(Clone, Copy, Debug)]
pub struct Cluster {
    pub shards: u32,
    pub replicas: u32,
    /// Where the generator sends reads.
    pub read_from: ReadFrom,
    /// The longest creation may take, from the last server up to a settled cluster.
    pub settle_timeout: Duration,
}

impl Cluster {
    pub fn new(shards: u32, replicas: u32, read_from: ReadFrom) -> Cluster {
        Cluster {
            shards,
            replicas,
            read_from,
            settle_timeout: Duration::from_secs(60),
        }
    }
}

/// The slots of shard `i` of `shards`: an even split, the remainder to the last.
pub fn slot_range(i: u32, shards: u32) -> (u16, u16) {
    let per = SLOTS as u32 / shards;
    let first = i * per;
    let last = if i + 1 == shards {
        SLOTS as u32 - 1
    } else {
        first + per - 1
    };
    (first as u16, last as u16)
}

impl Topology for Cluster {
    fn name(&self) -> String {
        format!("cluster:{}x{}", self.shards, self.replicas)
    }

    fn deploy(
        &self,
        hosts: &ServerHosts,
        binaries: &Binaries,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Deployment> {
        let mut options = instances::Options {
            cluster: true,
            ..options.clone()
        };
        super::sync_at_once(&mut options);
        let placement =
            super::spread_cluster(self.shards as usize, self.replicas as usize, hosts.len());
        let started = hosts.start(binaries, &placement, &options, shutdown)?;
        // Primaries first (shard order), then each shard's replicas.
        let nodes: Vec<Node> = started
            .into_iter()
            .enumerate()
            .map(|(i, instance)| {
                let i = i as u32;
                let (role, shard) = if i < self.shards {
                    (Role::Primary, i)
                } else {
                    (Role::Replica, (i - self.shards) / self.replicas.max(1))
                };
                Node {
                    role,
                    shard: shard as usize,
                    instance,
                }
            })
            .collect();
        let primaries: Vec<_> = nodes[..self.shards as usize]
            .iter()
            .map(|n| n.instance.addr)
            .collect();
        let deployment = Deployment {
            target: Target::cluster(
                primaries,
                nodes.iter().map(|n| n.instance.addr).collect(),
                self.read_from,
            )
            .with_tls(nodes[0].instance.tls.clone()),
            nodes,
        };
        self.create(&deployment, shutdown)
            .with_context(|| format!("creating the {} cluster", self.name()))?;
        Ok(deployment)
    }
}

impl Cluster {
    fn create(&self, deployment: &Deployment, shutdown: &Shutdown) -> anyhow::Result<()> {
        let nodes = &deployment.nodes;
        let mut clients: Vec<Client> = nodes
            .iter()
            .map(|n| n.instance.client())
            .collect::<anyhow::Result<_>>()?;
        // Distinct epochs, so no two primaries claim a slot with equal epochs.
        for (i, client) in clients.iter_mut().enumerate() {
            let epoch = (i + 1).to_string();
            client.call(&["CLUSTER", "SET-CONFIG-EPOCH", epoch.as_str()])?;
        }
        for i in 0..self.shards {
            let (first, last) = slot_range(i, self.shards);
            let (first, last) = (first.to_string(), last.to_string());
            clients[i as usize].call(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                first.as_str(),
                last.as_str(),
            ])?;
        }
        // Each node by its own address (on one machine they share an IP; on several, not).
        for node in &nodes[1..] {
            let (ip, port) = (
                node.instance.addr.ip().to_string(),
                node.instance.port().to_string(),
            );
            clients[0].call(&["CLUSTER", "MEET", ip.as_str(), port.as_str()])?;
        }
        let began = Instant::now();
        let wait = |what: &str, done: &mut dyn FnMut() -> anyhow::Result<bool>| {
            loop {
                if shutdown.is_triggered() {
                    bail!("interrupted");
                }
                if done()? {
                    return Ok(());
                }
                if began.elapsed() > self.settle_timeout {
                    bail!(
                        "{what} did not happen within {:?}; the first node's last log lines:\n{}",
                        self.settle_timeout,
                        nodes[0].instance.log_tail(12)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let count = nodes.len();
        wait("every node knowing every other", &mut || {
            for client in clients.iter_mut() {
                let known = client.call_text(&["CLUSTER", "NODES"])?;
                let settled = known
                    .lines()
                    .filter(|l| !l.contains("handshake") && !l.contains("noaddr"))
                    .count();
                if settled < count {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        let ids: Vec<String> = clients[..self.shards as usize]
            .iter_mut()
            .map(|c| c.call_text(&["CLUSTER", "MYID"]))
            .collect::<Result<_, _>>()?;
        for (node, client) in nodes.iter().zip(clients.iter_mut()) {
            if node.role == Role::Replica {
                client.call(&["CLUSTER", "REPLICATE", ids[node.shard].as_str()])?;
            }
        }
        // Every node must agree on the owners, every replica report its own sync done, and
        // the node clients discover the map from (the first primary) list every replica.
        let (shards, replicas) = (self.shards as usize, self.replicas as usize);
        let ours: Vec<std::net::SocketAddr> = nodes.iter().map(|n| n.instance.addr).collect();
        wait(
            "cluster_state:ok and one slot map on every node",
            &mut || {
                let mut owners = BTreeSet::new();
                for (i, (node, client)) in nodes.iter().zip(clients.iter_mut()).enumerate() {
                    let info = client.call_text(&["CLUSTER", "INFO"])?;
                    if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                        return Ok(false);
                    }
                    if node.role == Role::Replica {
                        let replication = Info::parse(&client.call_text(&["INFO", "replication"])?);
                        if !bench_core::sync::sync_done(&replication) {
                            return Ok(false);
                        }
                    }
                    let map = SlotMap::discover(client)?.normalized();
                    if map.unowned() > 0 || map.shards.len() != shards {
                        return Ok(false);
                    }
                    // A whole map that names another address is no passing state.
                    if let Some(addr) = map.foreign(&ours) {
                        anyhow::bail!(
                            "{} names {addr} in its slot map, which is none of the nodes we started \
                             (a cluster-announce setting?); nothing is sent there",
                            node.instance.addr
                        );
                    }
                    if i == 0 && map.shards.iter().any(|s| s.replicas.len() != replicas) {
                        return Ok(false);
                    }
                    let primaries: Vec<_> = map.shards.iter().map(|s| s.primary).collect();
                    owners.insert(format!("{primaries:?} {:?}", map.owners()));
                }
                Ok(owners.len() == 1)
            },
        )
    }
}

/// The nodes of a deployment by their place, for messages and monitors:
/// `shard1-primary`, `shard1-replica1`, ...
pub fn node_names(nodes: &[Node]) -> Vec<String> {
    let mut replica_of = vec![0u32; nodes.len()];
    nodes
        .iter()
        .map(|n| match n.role {
            Role::Primary => format!("shard{}-primary", n.shard + 1),
            Role::Replica => {
                replica_of[n.shard] += 1;
                format!("shard{}-replica{}", n.shard + 1, replica_of[n.shard])
            }
        })
        .collect()
}

/// The primaries of a deployment, in shard order.
pub fn primaries(nodes: &[Node]) -> impl Iterator<Item = &Instance> {
    nodes
        .iter()
        .filter(|n| n.role == Role::Primary)
        .map(|n| &n.instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_split_evenly_and_cover_every_slot() {
        for shards in 1..=16 {
            let mut next = 0u32;
            for i in 0..shards {
                let (first, last) = slot_range(i, shards);
                assert_eq!(u32::from(first), next);
                assert!(last >= first);
                next = u32::from(last) + 1;
            }
            assert_eq!(next, SLOTS as u32, "{shards} shards");
        }
        assert_eq!(slot_range(0, 3), (0, 5460));
        assert_eq!(slot_range(2, 3), (10922, 16383));
    }
}
