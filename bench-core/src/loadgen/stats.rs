//! What the generator counts while it runs (per worker thread, no locks), and the merged
//! report it returns.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// Latency histograms span 1 µs .. 60 s at 3 significant figures.
pub const HIGHEST_US: u64 = 60_000_000;
const SIGFIG: u8 = 3;
/// The per-second histograms only feed p50/p99 of the time series: 2 figures suffice.
const SERIES_SIGFIG: u8 = 2;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("static bounds are valid")
}

fn series_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SERIES_SIGFIG).expect("static bounds are valid")
}

/// Counters of one command (one template) in one worker.
#[derive(Clone, Debug)]
pub struct CommandCounters {
    pub latency: Histogram<u64>,
    pub errors: u64,
    pub hits: u64,
    pub misses: u64,
}

impl CommandCounters {
    fn new() -> CommandCounters {
        CommandCounters {
            latency: new_histogram(),
            errors: 0,
            hits: 0,
            misses: 0,
        }
    }
}

/// One second of the measured window, in one worker.
#[derive(Clone, Debug)]
pub struct SecondCounters {
    pub ops: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

/// Everything one worker thread counted.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    pub commands: Vec<CommandCounters>,
    pub seconds: Vec<SecondCounters>,
    /// Open loop: how late each send was against its intended time, µs.
    pub send_lag: Histogram<u64>,
    /// Sends at least [`LATE_US`] behind schedule.
    pub late: u64,
    pub errors: BTreeMap<String, u64>,
    pub reconnects: u64,
    /// Cluster mode: MOVED and ASK redirects followed.
    pub redirects: BTreeMap<&'static str, u64>,
    /// Cluster mode: measured replies and their latency per node, in the order this
    /// thread's connections first linked to them (`Link::node` indexes it): one histogram
    /// per node and thread, not per connection, so 50 connections do not spread their
    /// recording over 50 histograms' cache lines.
    pub nodes: Vec<(std::net::SocketAddr, Histogram<u64>)>,
    /// The latest measured reply, ns after the plan's origin (per thread, not shared:
    /// a shared maximum cost an atomic compare-and-swap loop per read).
    pub last_reply_ns: u64,
}

/// A send this far behind its intended time counts as late.
pub const LATE_US: u64 = 1000;

impl WorkerStats {
    pub fn new(templates: usize) -> WorkerStats {
        WorkerStats {
            commands: (0..templates).map(|_| CommandCounters::new()).collect(),
            seconds: Vec::new(),
            send_lag: new_histogram(),
            late: 0,
            errors: BTreeMap::new(),
            reconnects: 0,
            redirects: BTreeMap::new(),
            nodes: Vec::new(),
            last_reply_ns: 0,
        }
    }

    /// The index of `addr`'s histogram in `nodes`, added if it has none.
    pub fn node(&mut self, addr: std::net::SocketAddr) -> usize {
        match self.nodes.iter().position(|(a, _)| *a == addr) {
            Some(i) => i,
            None => {
                self.nodes.push((addr, new_histogram()));
                self.nodes.len() - 1
            }
        }
    }

    pub fn second(&mut self, index: usize) -> &mut SecondCounters {
        while self.seconds.len() <= index {
            self.seconds.push(SecondCounters {
                ops: 0,
                errors: 0,
                latency: series_histogram(),
            });
        }
        &mut self.seconds[index]
    }

    pub fn error(&mut self, kind: &str) {
        match self.errors.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(kind.to_string(), 1);
            }
        }
    }
}

/// Per-command results of a run. The pub/sub `DELIVERY` entry counts messages received by
/// subscribers (`requests`, `hits`) and their end-to-end latency from publish.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CommandReport {
    pub command: String,
    /// Replies received in the measured window (errors included).
    pub requests: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    /// Reads answered with data / with null.
    pub hits: u64,
    pub misses: u64,
    pub latency: LatencySummary,
    /// The full latency histogram, HDR V2 serialized, base64: merge runs and hosts with
    /// any HdrHistogram implementation.
    pub histogram: String,
}

/// Percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub min_us: u64,
    pub avg_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            min_us: h.min(),
            avg_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p99_9_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// One node's share of a cluster run, as the client saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    /// `IP:PORT`.
    pub addr: String,
    /// Measured replies from this node.
    pub requests: u64,
    pub ops_per_sec: f64,
    pub latency: LatencySummary,
    /// Its latency histogram (HDR V2 + base64), kept when the run is one host's share of
    /// a larger one, so the nodes' figures merge losslessly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
}

/// One second of the time series (all commands).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SecondReport {
    /// Seconds since the measured window began.
    pub second: u32,
    pub ops: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
    /// The second's latency histogram (HDR V2 + base64, 2 significant figures), kept when
    /// the run is one host's share of a larger one, so the seconds merge losslessly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
}

/// HDR V2 + base64.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`encode_histogram`].
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram is not HDR V2: {e:?}"))
}

/// Merges per-worker second counters into the series; with `keep`, each second keeps its
/// histogram.
pub fn merge_series(workers: &[WorkerStats], keep: bool) -> Vec<SecondReport> {
    let seconds = workers.iter().map(|w| w.seconds.len()).max().unwrap_or(0);
    (0..seconds)
        .map(|i| {
            let mut latency = series_histogram();
            let (mut ops, mut errors) = (0, 0);
            for w in workers {
                if let Some(s) = w.seconds.get(i) {
                    ops += s.ops;
                    errors += s.errors;
                    latency.add(&s.latency).expect("same bounds");
                }
            }
            let q = |q| {
                if latency.is_empty() {
                    0
                } else {
                    latency.value_at_quantile(q)
                }
            };
            SecondReport {
                second: i as u32,
                ops,
                p50_us: q(0.5),
                p99_us: q(0.99),
                errors,
                histogram: keep.then(|| encode_histogram(&latency)),
            }
        })
        .collect()
}

/// Consecutive measured replies of one template with one latency, recorded together
/// (requests sent in one pass mostly share a start, so their replies share a latency):
/// one histogram update for the run, not one per reply.
#[derive(Default)]
pub(super) struct Run {
    pub template: usize,
    pub us: u64,
    pub count: u64,
}

impl Run {
    pub fn flush(&mut self, stats: &mut WorkerStats, node: Option<usize>, second: usize) {
        if self.count == 0 {
            return;
        }
        if let Some(node) = node {
            stats.nodes[node].1.saturating_record_n(self.us, self.count);
        }
        stats.commands[self.template]
            .latency
            .saturating_record_n(self.us, self.count);
        let s = stats.second(second);
        s.ops += self.count;
        s.latency.saturating_record_n(self.us, self.count);
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histograms_equal_one_histogram_of_all_values() {
        let (mut a, mut b, mut all) = (new_histogram(), new_histogram(), new_histogram());
        for v in 1..=1000u64 {
            let target = if v % 3 == 0 { &mut a } else { &mut b };
            target.record(v * 7).unwrap();
            all.record(v * 7).unwrap();
        }
        a.add(&b).unwrap();
        assert_eq!(LatencySummary::of(&a), LatencySummary::of(&all));
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn histograms_survive_serialization_and_merge_after() {
        let mut h = new_histogram();
        for v in [1u64, 10, 100, 1000, 59_000_000] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back, h);
        let mut sum = back.clone();
        sum.add(decode_histogram(&encode_histogram(&h)).unwrap())
            .unwrap();
        assert_eq!(sum.len(), 10);
        assert!(decode_histogram("not base64!").is_err());
    }

    #[test]
    fn series_merge_adds_workers_second_by_second() {
        let mut a = WorkerStats::new(1);
        let mut b = WorkerStats::new(1);
        a.second(0).ops = 5;
        a.second(0).latency.record(100).unwrap();
        b.second(1).ops = 7;
        b.second(1).errors = 1;
        b.second(1).latency.record(300).unwrap();
        let s = merge_series(&[a, b], false);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].ops, s[1].ops, s[1].errors), (5, 7, 1));
        assert!((99..=101).contains(&s[0].p50_us));
        assert!((297..=303).contains(&s[1].p99_us));
    }
}
