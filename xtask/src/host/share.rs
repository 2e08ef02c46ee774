//! What an agent is sent to run its host's share of a load ([`LoadShare`]), and what it
//! says of the load while it runs ([`SeenProgress`]): messages of the agent's protocol
//! (`agent.rs`), made by `clients.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One host's share of a run of the load generator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadShare {
    pub addrs: Vec<SocketAddr>,
    pub workload: bench_core::workload::WorkloadSpec,
    pub connections: u32,
    pub pipeline: u32,
    pub threads: u32,
    pub rate: Option<f64>,
    /// Stop after this many requests, or after `duration_ms`.
    pub requests: Option<u64>,
    pub duration_ms: Option<u64>,
    pub warmup_ms: u64,
    /// Cluster mode: where reads go, multi-key tagging, the deployment's nodes.
    pub cluster: Option<(bench_core::topology::ReadFrom, bool, Vec<SocketAddr>)>,
    pub cpus: Vec<usize>,
    pub share: bench_core::loadgen::Share,
    /// When to start, in this host's clock: ns since the Unix epoch.
    pub start_at_unix_ns: u64,
    /// The servers speak TLS only: trust and identity.
    #[serde(default)]
    pub tls: Option<crate::tls::ClientPem>,
}

impl LoadShare {
    /// The generator's options for it (unusable TLS material is an error).
    pub fn options(&self) -> anyhow::Result<bench_core::loadgen::RunOptions> {
        use bench_core::loadgen::{ClusterOptions, RunOptions, Stop};
        Ok(RunOptions {
            connections: self.connections,
            pipeline: self.pipeline,
            threads: self.threads,
            rate: self.rate,
            stop: match (self.requests, self.duration_ms) {
                (Some(n), _) => Stop::Requests(n),
                (None, ms) => Stop::Duration(Duration::from_millis(ms.unwrap_or(0))),
            },
            warmup: Duration::from_millis(self.warmup_ms),
            cluster: self
                .cluster
                .clone()
                .map(|(read_from, tag_multi_key, nodes)| ClusterOptions {
                    read_from,
                    tag_multi_key,
                    nodes,
                }),
            cpus: self.cpus.clone(),
            tls: self.tls.as_ref().map(|pem| pem.client()).transpose()?,
            share: Some(self.share),
            start_at: Some(std::time::UNIX_EPOCH + Duration::from_nanos(self.start_at_unix_ns)),
        })
    }
}

/// A load's progress as its agent last saw it (the generator reports once a second).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SeenProgress {
    pub elapsed_ms: u64,
    pub ops_last_second: u64,
    pub completed: u64,
}

impl From<bench_core::loadgen::Progress> for SeenProgress {
    fn from(p: bench_core::loadgen::Progress) -> SeenProgress {
        SeenProgress {
            elapsed_ms: p.elapsed.as_millis() as u64,
            ops_last_second: p.ops_last_second,
            completed: p.completed,
        }
    }
}

impl From<SeenProgress> for bench_core::loadgen::Progress {
    fn from(p: SeenProgress) -> bench_core::loadgen::Progress {
        bench_core::loadgen::Progress {
            elapsed: Duration::from_millis(p.elapsed_ms),
            ops_last_second: p.ops_last_second,
            completed: p.completed,
        }
    }
}
