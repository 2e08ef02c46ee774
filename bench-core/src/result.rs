//! The result model: the one serialized boundary of valkey-bench.
//!
//! Every run appends one [`ResultRecord`] per measured repetition to
//! `results/<run-id>/results.jsonl`. Every field is documented here with its unit;
//! `results/README.md` repeats this for readers who do not read Rust. [`SCHEMA_VERSION`]
//! changes whenever the shape changes.

use std::collections::BTreeMap;

use crate::topology::TopologySpec;
use serde::{Deserialize, Serialize};

use crate::engine::Latency;
use crate::loadgen::stats::SecondReport;

/// Version of the record shape. 1: first release (perf suite, valkey-benchmark).
/// 2: the native engine: `metrics.histogram`, `metrics.series`,
/// `metrics.client_cpu_us_per_request`. 3: mem-suite records ([`MemRecord`]),
/// sync-suite records ([`SyncRecord`]), `monitor` samples, and perf
/// `metrics.server_cpu_us_per_request` and `metrics.usec_per_call`. 4: perf
/// `metrics.warmup_series`. 5: `valkey.compiler`, sync `params.dir_fs`. 6: mem
/// `metrics.mem_clients_before`/`after`, and `bytes_per_item` leaves client buffers and
/// the server's first-call allocations out. 7: perf `params.topology`, and on a cluster
/// `metrics.nodes` and `metrics.redirects`, `params.placement`. 8: perf and mem
/// `params.tls`. 9: perf `metrics.server_user_us_per_request` and
/// `metrics.server_sys_us_per_request`. 10: perf `metrics.offered_rate`,
/// `metrics.latency_from` and `metrics.late_sends` (an open loop's); capacity records.
pub const SCHEMA_VERSION: u32 = 10;

/// A perf-suite record.
pub type ResultRecord = Record<PerfParams, Metrics>;
/// A mem-suite record.
pub type MemRecord = Record<MemParams, MemMetrics>;
/// A sync-suite record (one per replica of a case).
pub type SyncRecord = Record<SyncParams, SyncMetrics>;

/// One trial of a capacity search: a perf record (`suite` `capacity`, `repetition` the
/// trial's 1-based index in the run) and what the search made of it. Perf readers skip
/// it: its trials ran at different rates, so they are no repetitions of one measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityRecord {
    #[serde(flatten)]
    pub record: ResultRecord,
    pub capacity: CapacityTrial,
}

/// How a capacity search used one trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityTrial {
    /// `search` (deciding a rate of the bracket), `verify` (0.9 and 1.1 times the
    /// answer) or `headroom` (the answer and fractions of it, once each, for the curve).
    pub stage: String,
    /// The objective, as `--slo` reads back (`p99<=1ms,errors<=0`).
    pub objective: String,
    /// The rate offered, requests/s.
    pub rate: f64,
    /// The trial's 1-based index among the trials at this rate in this stage.
    pub trial: usize,
    /// Error replies in the measured window (a perf record has none; here they count).
    pub errors: u64,
    /// Requests sent 1 ms or more behind their intended time.
    pub late_sends: u64,
    /// `measured`, `broken: ...` (counts against the rate) or `invalid: ...` (does not
    /// count).
    pub judged: String,
    /// Per latency bound of the objective, the percentile's interval from the trial's
    /// HDR counts (empty when invalid).
    pub percentiles: Vec<PercentileInterval>,
}

/// A latency percentile's distribution-free interval, µs, and the objective's bound on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PercentileInterval {
    /// `p99`, `p99.9`, ...
    pub name: String,
    pub bound_us: f64,
    pub low_us: f64,
    pub high_us: f64,
}

/// One measured repetition of one case. The envelope is the same for every suite;
/// `params` and `metrics` are the suite's own (`suite` says which).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record<P, M> {
    /// Shape version of this record, [`SCHEMA_VERSION`] when written.
    pub schema: u32,
    /// The run this record belongs to: `YYYYMMDDTHHMMSSZ-<suite>-<4 hex>` (UTC start time).
    pub run_id: String,
    /// The suite: `perf` or `mem`.
    pub suite: String,
    /// Stable case name, e.g. `GET/32B/P16/c50/io1/100k-keys`: the same knobs give the same name
    /// in every run, so runs can be joined on it.
    pub case: String,
    /// 1-based index of the measured repetition within the case.
    pub repetition: u32,
    /// When the measured run ended, RFC 3339 UTC.
    pub timestamp: String,
    /// The server that was measured.
    pub valkey: ValkeyInfo,
    /// The machine the run happened on.
    pub host: HostInfo,
    /// Every knob of the case.
    pub params: P,
    /// What was measured.
    pub metrics: M,
    /// The load generator (perf) or the populator (mem).
    pub engine: EngineInfo,
    /// 1 Hz samples of the servers and the host during the measured window (perf: the
    /// measured run; mem: populate and settle; sync: the sync). Absent in older records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitor: Vec<MonitorSample>,
    /// The hosts the servers ran on, when they were not this machine (`--server-hosts`):
    /// each with its facts, its servers and the round trip to it. Absent when every
    /// server ran on `host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_hosts: Vec<ServerHostRecord>,
}

/// A host servers ran on, other than the machine the load ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerHostRecord {
    /// Its name in the hosts file (`local` for this machine).
    pub name: String,
    /// The address its servers listened on.
    pub address: String,
    pub facts: HostInfo,
    /// Each server there, as `<role> :<port>` (`primary :9000`, `replica :9001`).
    pub servers: Vec<String>,
    /// Median of 21 PINGs, one at a time, from the load's machine to its first server, in
    /// microseconds: the network's share of every request's latency. Absent for this
    /// machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<f64>,
    /// Where its Valkey binaries came from: `shipped` (the build made here, copied), or
    /// `built on the host (<its compiler>)` from the same source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// One monitor sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorSample {
    /// Seconds since the monitor started.
    pub t_secs: f64,
    pub servers: Vec<ServerSample>,
    pub host: HostSample,
}

/// One server at one instant, from INFO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    /// `primary`, `replica1`, ... or `server`.
    pub role: String,
    pub port: u16,
    /// Bytes.
    pub used_memory: u64,
    pub used_memory_rss: u64,
    /// Cumulative server CPU, seconds (`used_cpu_user`, `used_cpu_sys`).
    pub used_cpu_user: f64,
    pub used_cpu_sys: f64,
    pub instantaneous_ops_per_sec: u64,
    pub connected_clients: u64,
    /// `master_repl_offset` (primary) or `slave_repl_offset` (replica), bytes; 0 if none.
    pub repl_offset: u64,
    /// `INFO commandstats`: command → cumulative calls and microseconds.
    pub commandstats: BTreeMap<String, CommandStat>,
}

/// Cumulative figures of one command from `INFO commandstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandStat {
    pub calls: u64,
    /// Total microseconds spent in the command.
    pub usec: u64,
}

/// The host at one instant, from /proc.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// Busy share of each CPU since the previous sample, percent (empty in the first).
    pub cpu_busy_pct: Vec<f64>,
    /// `MemAvailable`, bytes.
    pub mem_available_bytes: u64,
    /// 1-minute load average.
    pub load1: f64,
}

/// Which Valkey, from which source, built how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValkeyInfo {
    /// What `valkey-server --version` reports, e.g. `8.1.1`.
    pub version: String,
    /// Identity of the source tree: `pinned:<version>:sha256:<orig tarball hash>` for a
    /// pinned version, `tarball:<sha256>` for `--valkey-tarball`, `git:<commit>` for a clean git tree (`git:<commit>-dirty-<hash>`
    /// with local changes), `tree:<content hash>` for a plain directory.
    pub source_id: String,
    pub build: BuildOptions,
    /// The C compiler that built it: resolved path and the first line of its `--version`
    /// (schema 5; empty in older records).
    #[serde(default)]
    pub compiler: String,
}

/// Build options; part of the build cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BuildOptions {
    /// Built with `BUILD_TLS=yes`.
    pub tls: bool,
    /// The allocator: `jemalloc` or `libc`.
    pub malloc: Malloc,
    /// Extra C compiler flags, appended to Valkey's own (`CFLAGS=` of its Makefile).
    pub cflags: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Malloc {
    Jemalloc,
    Libc,
}

impl Malloc {
    pub fn as_str(self) -> &'static str {
        match self {
            Malloc::Jemalloc => "jemalloc",
            Malloc::Libc => "libc",
        }
    }
}

/// For people: `jemalloc, no TLS, Valkey's CFLAGS` or `libc malloc, TLS, CFLAGS +"-O3"`.
impl std::fmt::Display for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.malloc {
            Malloc::Jemalloc => write!(f, "jemalloc")?,
            Malloc::Libc => write!(f, "libc malloc")?,
        }
        write!(f, ", {}", if self.tls { "TLS" } else { "no TLS" })?;
        if self.cflags.is_empty() {
            write!(f, ", Valkey's CFLAGS")
        } else {
            write!(f, ", CFLAGS +{:?}", self.cflags)
        }
    }
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            tls: false,
            malloc: Malloc::Jemalloc,
            cflags: String::new(),
        }
    }
}

/// The machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    /// Logical CPUs available to the run.
    pub cpus: u32,
    /// CPU model name from /proc/cpuinfo.
    pub model: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
}

/// The knobs of a perf case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerfParams {
    /// The measured command, e.g. `GET`.
    pub command: String,
    /// Value size in bytes; `null` for commands that carry no value (PING, INCR, SADD, ZADD).
    pub value_size: Option<u64>,
    /// Requests in flight per connection.
    pub pipeline: u32,
    /// Client connections.
    pub clients: u32,
    /// Client threads of the engine.
    pub client_threads: u32,
    /// The server's io-threads (1: main thread only).
    pub io_threads: u32,
    /// Distinct keys the load draws from (uniform).
    pub keyspace: u64,
    /// Requests in the measured run.
    pub requests: u64,
    /// Requests in the discarded warmup run before it, on the same server.
    pub warmup_requests: u64,
    /// Items written before the warmup: keys for GET, list elements for LPOP/RPOP, 0 otherwise.
    pub preloaded_items: u64,
    /// Extra server configuration the case set.
    pub server_config: BTreeMap<String, String>,
    /// How the servers were arranged: `standalone`, `replicas:N`, `cluster:SxR`.
    #[serde(default)]
    pub topology: TopologySpec,
    /// The CPUs the server and the client were pinned to: `{server_cpus, client_cpus}`,
    /// each a list like `"0-1"` or null (unpinned).
    #[serde(default)]
    pub placement: crate::placement::Placement,
    /// `{"auth_clients": bool}` when the servers spoke TLS only, null for plain TCP.
    #[serde(default)]
    pub tls: Option<crate::transport::TlsMode>,
}

/// Measurements of one repetition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Completed requests per second, as the engine measured it. valkey-benchmark divides
    /// by its elapsed time in whole milliseconds, so its figure moves in steps of
    /// 1 ms / run length (0.5% for a 200 ms run).
    pub ops_per_sec: f64,
    /// Requests completed.
    pub requests: u64,
    /// Wall time of the measured run as the harness saw it, in seconds, connection setup
    /// included.
    pub wall_secs: f64,
    /// Latency in microseconds (`avg_us`, `min_us`, `p50_us`, `p90_us`, `p95_us`, `p99_us`,
    /// `p99_9_us`, `max_us`); `null` where the engine does not report that figure
    /// (valkey-benchmark gives avg, min, p50, p95, p99, max).
    #[serde(flatten)]
    pub latency: Latency,
    /// The latency histogram of every measured request, HDR V2 serialized and base64
    /// encoded (µs, 1 µs .. 60 s, 3 significant figures): lossless and mergeable across
    /// runs and hosts. `null` for engines that do not record one (valkey-benchmark).
    #[serde(default)]
    pub histogram: Option<String>,
    /// Per second of the measured run: `{second, ops, p50_us, p99_us, errors}`. Empty for
    /// engines that do not record one.
    #[serde(default)]
    pub series: Vec<SecondReport>,
    /// The same per-second figures for the discarded warmup run before it (`second` counts
    /// from the warmup's start); empty where there was none or the engine records none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmup_series: Vec<SecondReport>,
    /// The load generator's own CPU time (user + system) per request, µs; `null` where the
    /// engine does not measure it.
    #[serde(default)]
    pub client_cpu_us_per_request: Option<f64>,
    /// The server's CPU time (`used_cpu_user` + `used_cpu_sys` delta over the measured run)
    /// per request, µs. A strong regression signal: it does not depend on the client.
    #[serde(default)]
    pub server_cpu_us_per_request: Option<f64>,
    /// Its user-space part (`used_cpu_user` delta per request), µs.
    #[serde(default)]
    pub server_user_us_per_request: Option<f64>,
    /// Its kernel part (`used_cpu_sys` delta per request), µs: where a system call added
    /// to the command path shows, which no instruction count sees.
    #[serde(default)]
    pub server_sys_us_per_request: Option<f64>,
    /// `INFO commandstats` for the measured command over the measured run: Δusec / Δcalls,
    /// µs. The server's own cost of the command, without I/O. On a cluster, summed over the
    /// primaries (as is the server CPU).
    #[serde(default)]
    pub usec_per_call: Option<f64>,
    /// A cluster: each node's share as the client saw it, `{addr, requests, ops_per_sec,
    /// latency}` (latency µs: min, avg, p50, p90, p99, p99_9, max). Empty elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<crate::loadgen::stats::NodeReport>,
    /// A cluster: redirects followed by kind (`MOVED`, `ASK`); a request's latency includes
    /// its redirects. Empty when there were none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redirects: BTreeMap<String, u64>,
    /// Load from several client hosts (`--client-hosts`): each one's part, its histogram
    /// among them; the figures above are all of them merged (`histogram` is their sum).
    /// Absent when the load ran from this machine alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_hosts: Vec<crate::loadgen::merge::ClientHostReport>,
    /// The rate offered, requests/s, for an open loop (`ops_per_sec` is the rate
    /// achieved); `null` for a closed loop.
    #[serde(default)]
    pub offered_rate: Option<f64>,
    /// An open loop's latency is from `intended` send times (the native engine: a
    /// request's wait behind a slow server counts) or from when it was `sent`
    /// (valkey-benchmark `--rps`: a client's wait for its token does not). Absent for a
    /// closed loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_from: Option<crate::engine::LatencyFrom>,
    /// An open loop, where the engine counts them: sends 1 ms or more behind schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_sends: Option<u64>,
}

/// The knobs of a mem case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemParams {
    /// `string`, `list`, `set`, `zset` or `hash`.
    pub data_type: String,
    /// Items written: string keys, or elements / members / fields of collections.
    pub items: u64,
    /// Keys the items are spread over (= items for strings).
    pub keys: u64,
    /// Key size in bytes.
    pub key_size: u64,
    /// Value size in bytes: string value, list element, set or sorted-set member, hash value.
    pub value_size: u64,
    /// Hash field size in bytes (hashes only, else 0).
    pub field_size: u64,
    /// Whether every key has a TTL.
    pub expiry: bool,
    /// Extra server configuration the case set.
    pub server_config: BTreeMap<String, String>,
    /// `standalone`, or `cluster:SxR` (the keys spread over the primaries by slot).
    #[serde(default)]
    pub topology: TopologySpec,
    /// `{"auth_clients": bool}` when the server spoke TLS only, null for plain TCP.
    #[serde(default)]
    pub tls: Option<crate::transport::TlsMode>,
}

/// What a mem case measured. Memory figures are bytes from `INFO memory`, read when the
/// data's memory (`used_memory − mem_clients_normal`) had settled (before: on the empty
/// server, after warming up each command; after: once populated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemMetrics {
    /// Bytes of user data per item, as declared: key + value for strings (per item),
    /// element for lists, member for sets, member + 8 (the score as a double) for sorted
    /// sets, field + value for hashes; collections add their key's bytes spread over
    /// their items.
    pub user_bytes_per_item: f64,
    /// The data's memory (`used_memory − mem_clients_normal`), after − before, / items.
    /// Client buffers are left out: the server resizes them on its own clock.
    pub bytes_per_item: f64,
    /// bytes_per_item − user_bytes_per_item.
    pub overhead_bytes_per_item: f64,
    /// user_bytes_per_item / bytes_per_item (1.0 would be no overhead at all).
    pub efficiency: f64,
    pub used_memory_before: u64,
    pub used_memory_after: u64,
    /// `mem_clients_normal` at the two readings (our connection's and the monitor's
    /// buffers), left out of `bytes_per_item`. *v6*
    #[serde(default)]
    pub mem_clients_before: u64,
    #[serde(default)]
    pub mem_clients_after: u64,
    pub used_memory_rss_after: u64,
    /// `mem_fragmentation_ratio` after populating.
    pub fragmentation_ratio: f64,
    /// jemalloc's allocated / active / resident bytes after populating (0 for libc).
    pub allocator_allocated: u64,
    pub allocator_active: u64,
    pub allocator_resident: u64,
    /// `OBJECT ENCODING` of a sample key (e.g. `embstr`, `listpack`, `hashtable`).
    pub encoding: String,
    /// Items per second the populator wrote.
    pub populate_items_per_sec: f64,
    /// Seconds the data's memory took to settle after populating.
    pub settle_secs: f64,
    /// Whether it settled (spread of the last samples ≤ 0.1%) within the bounded wait; when
    /// false, the figures were read at the end of the wait.
    pub settled: bool,
    /// Scalar fields of `MEMORY STATS` after populating (`keys.bytes-per-key`,
    /// `dataset.bytes`, `overhead.total`, ...); on a cluster, the first primary's.
    pub memory_stats: BTreeMap<String, f64>,
    /// A cluster: each primary's share (the figures above are their sums).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<MemNode>,
}

/// One primary of a cluster in a mem case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemNode {
    /// `IP:PORT`.
    pub addr: String,
    /// Keys it holds after populating.
    pub keys: u64,
    /// `used_memory` at the two readings, bytes.
    pub used_memory_before: u64,
    pub used_memory_after: u64,
    /// Its data memory's growth (`used_memory − mem_clients_normal`), bytes.
    pub data_bytes: i64,
}

/// The knobs of a sync case, and which replica this record is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncParams {
    /// Keys on the primary before the sync, and their value size in bytes.
    pub keys: u64,
    pub value_size: u64,
    /// keys × value_size.
    pub data_bytes: u64,
    /// Replicas syncing at once.
    pub replicas: u32,
    /// 1-based replica this record measures.
    pub replica: u32,
    /// The primary's `repl-diskless-sync`.
    pub diskless_sync: bool,
    /// The replicas' `repl-diskless-load`.
    pub diskless_load: String,
    /// Whether a write load ran on the primary during the sync.
    pub write_load: bool,
    pub server_config: BTreeMap<String, String>,
    /// File system of the servers' directories, where disk mode writes and reads the RDB
    /// (`ext4`, `tmpfs`, ...; tmpfs makes "disk" a memory copy). Schema 5; empty before.
    #[serde(default)]
    pub dir_fs: String,
}

/// What a replica's full sync measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncMetrics {
    /// From sending REPLICAOF to the replica reporting `master_link_status:up` with no
    /// sync in progress, seconds. Polled every millisecond on a connection of its own, so
    /// the error is about 1 ms.
    pub sync_secs: f64,
    /// Bytes the primary sent to replicas during the sync (`total_net_repl_output_bytes`
    /// delta), divided by the replicas. With a write load it includes the write stream.
    pub transfer_bytes: u64,
    /// transfer_bytes / sync_secs.
    pub throughput_bytes_per_sec: f64,
    /// Size of the RDB file the primary wrote for a disk-based sync; 0 for diskless.
    pub rdb_bytes: u64,
    /// The primary's `latest_fork_usec` after the sync, microseconds.
    pub fork_usec: u64,
    /// Keys on the primary and on this replica once the replica caught up.
    pub keys_primary: u64,
    pub keys_replica: u64,
}

/// The load generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// `valkey-benchmark`.
    pub name: String,
    /// The engine's own version string.
    pub version: String,
    /// The exact invocation of the measured run.
    pub argv: Vec<String>,
}

impl<P: Serialize, M: Serialize> Record<P, M> {
    /// The record as one JSON line, newline included.
    pub fn to_json_line(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        let mut line = serde_json::to_string(self).expect("records serialize");
        line.push('\n');
        line
    }
}

#[cfg(test)]
pub(crate) mod tests;
