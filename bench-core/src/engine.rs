//! The load-generator interface every engine implements, and what it returns.

use std::net::SocketAddr;

use crate::command::Command;
use crate::loadgen::stats::SecondReport;
use crate::shutdown::Shutdown;
use crate::topology::ReadFrom;

/// A load: `clients` connections, each with up to `pipeline` requests in flight, until
/// `requests` requests have completed. Closed loop (each connection sends as its replies
/// come) unless `rate` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    pub command: Command,
    /// Value size in bytes; commands that carry no value ignore it.
    pub value_size: u64,
    pub pipeline: u32,
    pub clients: u32,
    /// Keys are drawn uniformly from `key:000000000000 .. keyspace-1`.
    pub keyspace: u64,
    pub requests: u64,
    /// Client threads, where the engine has them.
    pub threads: u32,
    /// CPUs the client's threads run on; empty: unpinned.
    pub client_cpus: Vec<usize>,
    /// Requests per second in total, offered on a schedule (open loop), or `None` for a
    /// closed loop. Engines that cannot offer a rate refuse such a load
    /// ([`Engine::can_run`]).
    pub rate: Option<f64>,
}

/// What an open-loop run's latency is measured from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyFrom {
    /// Each request's intended send time on the schedule: time a request waited to be
    /// sent behind a slow server counts (no coordinated omission). The native engine.
    Intended,
    /// The moment it was sent: a client held back (valkey-benchmark's `--rps` token
    /// bucket holds a client until a token is free) does not count its wait, so under
    /// overload the latency looks better than what users would see.
    Sent,
}

/// What one run of an engine measured. Latencies are microseconds; `None` where the
/// engine does not report that figure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    pub requests: u64,
    pub ops_per_sec: f64,
    /// Wall time of the whole run as the harness saw it, connection setup included.
    pub wall_secs: f64,
    pub latency: Latency,
    /// All requests' latency histogram, HDR V2 + base64, where the engine records one.
    pub histogram: Option<String>,
    /// Per-second throughput and latency, where the engine records it.
    pub series: Vec<SecondReport>,
    /// The engine's own CPU time per request, µs, where it measures it.
    pub client_cpu_us_per_request: Option<f64>,
    /// A cluster: each node's share, where the engine counts it.
    pub nodes: Vec<crate::loadgen::stats::NodeReport>,
    /// A cluster: MOVED / ASK redirects followed.
    pub redirects: std::collections::BTreeMap<String, u64>,
    /// Load from several client hosts: each one's part (the figures above are all of
    /// them merged). Empty when the load ran from this machine alone.
    pub client_hosts: Vec<crate::loadgen::merge::ClientHostReport>,
    /// An open loop: the rate asked for, requests/s (`ops_per_sec` is what was achieved).
    pub offered_rate: Option<f64>,
    /// An open loop: what its latency is measured from.
    pub latency_from: Option<LatencyFrom>,
    /// An open loop, where the engine counts them: sends 1 ms or more behind their
    /// intended time (the client could not keep the schedule).
    pub late_sends: Option<u64>,
}

/// Request latency in microseconds, from send to reply.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub avg_us: Option<f64>,
    pub min_us: Option<f64>,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p95_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p99_9_us: Option<f64>,
    pub max_us: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("interrupted")]
    Interrupted,
    #[error("{engine} failed: {message}")]
    Failed {
        engine: &'static str,
        message: String,
    },
}

/// Where an engine sends its load: the endpoints of a deployment. One primary
/// (standalone, or a replication group's primary), or a cluster's primaries, from which an
/// engine reads the slot map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where requests go; the first is the primary.
    pub endpoints: Vec<SocketAddr>,
    /// A cluster, and where its reads go.
    pub cluster: Option<ReadFrom>,
    /// The servers speak TLS only: how to.
    pub tls: Option<crate::transport::Tls>,
    /// Every server of the deployment: a cluster's slot map and its redirects may name
    /// only these (`SlotMap::foreign`). Empty: any (a user's own servers).
    pub nodes: Vec<SocketAddr>,
}

impl Target {
    /// One server.
    pub fn standalone(addr: SocketAddr) -> Target {
        Target {
            endpoints: vec![addr],
            cluster: None,
            tls: None,
            nodes: vec![addr],
        }
    }

    /// A cluster, reached through its primaries, whose nodes are `nodes` (primaries and
    /// replicas).
    pub fn cluster(
        primaries: Vec<SocketAddr>,
        nodes: Vec<SocketAddr>,
        read_from: ReadFrom,
    ) -> Target {
        Target {
            endpoints: primaries,
            cluster: Some(read_from),
            tls: None,
            nodes,
        }
    }

    /// The same servers, spoken to over TLS.
    pub fn with_tls(self, tls: Option<crate::transport::Tls>) -> Target {
        Target { tls, ..self }
    }

    /// The endpoint an engine that talks to one server uses.
    pub fn primary(&self) -> SocketAddr {
        *self.endpoints.first().expect("a target has an endpoint")
    }
}

/// A load generator. The perf suite calls it once per warmup and once per repetition.
pub trait Engine: Sync {
    /// Stable name written into result records.
    fn name(&self) -> &'static str;
    /// The engine's own version, written into result records.
    fn version(&self) -> &str;
    /// The exact invocation `run` would use, recorded for reproduction.
    fn describe(&self, target: &Target, load: &Load) -> Vec<String>;
    /// Why this engine cannot run `load`, checked before anything starts; `Ok` when it
    /// can. By default an engine runs closed loops only.
    fn can_run(&self, load: &Load) -> Result<(), String> {
        match load.rate {
            Some(_) => Err(format!(
                "the {} engine runs closed loops only: it cannot offer a rate",
                self.name()
            )),
            None => Ok(()),
        }
    }
    fn run(
        &self,
        target: &Target,
        load: &Load,
        shutdown: &Shutdown,
    ) -> Result<Measurement, EngineError>;
}
