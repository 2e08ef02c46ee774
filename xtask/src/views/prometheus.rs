//! `--metrics-addr ADDR` on `runner` and `loadgen`: a Prometheus endpoint (`GET /metrics`,
//! the text format of `bench_core::metrics`) served by a thread of its own. What it shows
//! comes from the same run events every other view reads ([`MetricsSink`]): requests and
//! error replies by command, a load generator run's errors by kind, latency histograms whose buckets come from each record's
//! HDR histogram, records written and the last record's throughput, a load generator's
//! replies per second; and, from the runner itself, its tasks by outcome, the queue's
//! tasks by state and depth, and its heartbeat.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bench_core::loadgen::stats::decode_histogram;
use bench_core::metrics::{Buckets, Exposition};

use crate::error::UsageError;
use crate::events::{Event, Sink};
use http::{Endpoint, Pages};

mod http;

/// What the endpoint shows, updated by sinks and the runner.
#[derive(Default)]
pub struct State {
    /// By command: replies, and error replies; a load generator run's errors by kind.
    requests: BTreeMap<String, u64>,
    error_replies: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    latency: BTreeMap<String, Buckets>,
    records: u64,
    /// The last record's case and throughput.
    last_ops: Option<(String, f64)>,
    /// A load generator run: replies so far and in the last second.
    load: Option<(u64, u64)>,
    /// The runner: its id, tasks it ended by outcome, the queue by state, its last
    /// heartbeat (s since the epoch).
    pub runner: Option<String>,
    pub outcomes: BTreeMap<&'static str, u64>,
    pub queue: BTreeMap<&'static str, u64>,
    pub heartbeat_s: Option<f64>,
    /// When the queue's counts were read (s since the epoch).
    pub queue_read_s: Option<f64>,
}

/// Owned labels and a value, as samples borrow them.
type Owned<'a> = (Vec<(&'a str, &'a str)>, f64);

fn samples<'a>(v: &'a [Owned<'a>]) -> Vec<(&'a [(&'a str, &'a str)], f64)> {
    v.iter().map(|(l, n)| (l.as_slice(), *n)).collect()
}

fn render(s: &State) -> String {
    let mut page = Exposition::default();
    let commands: Vec<Owned<'_>> = s
        .requests
        .iter()
        .map(|(c, n)| (vec![("command", c.as_str())], *n as f64))
        .collect();
    page.counter(
        "valkey_bench_requests_total",
        "Replies received in measured windows (errors included), by command.",
        &samples(&commands),
    );
    let replies: Vec<Owned<'_>> = s
        .error_replies
        .iter()
        .map(|(c, n)| (vec![("command", c.as_str())], *n as f64))
        .collect();
    page.counter(
        "valkey_bench_error_replies_total",
        "Error replies in measured windows, by command (counted in requests_total too).",
        &samples(&replies),
    );
    let errors: Vec<Owned<'_>> = s
        .errors
        .iter()
        .map(|(k, n)| (vec![("kind", k.as_str())], *n as f64))
        .collect();
    page.counter(
        "valkey_bench_errors_total",
        "A load generator run's errors by kind, all commands together: the first word of \
         an error reply, io: ..., lost in flight at disconnect, no reply before the run \
         ended, check: ... (a reply of the wrong size).",
        &samples(&errors),
    );
    let latency: Vec<(Vec<(&str, &str)>, &Buckets)> = s
        .latency
        .iter()
        .map(|(c, b)| (vec![("command", c.as_str())], b))
        .collect();
    let series: Vec<(&[(&str, &str)], &Buckets)> =
        latency.iter().map(|(l, b)| (l.as_slice(), *b)).collect();
    page.histogram(
        "valkey_bench_request_latency_seconds",
        "Request latency in measured windows, by command, from the records' HDR histograms \
         (3 significant figures).",
        &series,
    );
    page.counter(
        "valkey_bench_records_total",
        "Records written (perf: repetitions; mem and sync: cases or replicas).",
        &[(&[], s.records as f64)],
    );
    if let Some((case, ops)) = &s.last_ops {
        page.gauge(
            "valkey_bench_last_record_ops_per_second",
            "The last perf record's throughput.",
            &[(&[("case", case.as_str())], *ops)],
        );
    }
    if let Some((completed, last)) = s.load {
        page.counter(
            "valkey_bench_loadgen_replies_total",
            "Measured replies the load generator has received so far (none during the warmup).",
            &[(&[], completed as f64)],
        );
        page.gauge(
            "valkey_bench_loadgen_replies_last_second",
            "Measured replies in the last whole second.",
            &[(&[], last as f64)],
        );
    }
    if let Some(runner) = &s.runner {
        let r = [("runner", runner.as_str())];
        let outcomes: Vec<Owned<'_>> = ["done", "failed", "requeued"]
            .iter()
            .map(|o| {
                let n = s.outcomes.get(o).copied().unwrap_or(0);
                (vec![("runner", runner.as_str()), ("outcome", *o)], n as f64)
            })
            .collect();
        page.counter(
            "valkey_bench_runner_tasks_total",
            "Tasks this runner ended, by outcome (requeued: interrupted, back to pending).",
            &samples(&outcomes),
        );
        let states: Vec<Owned<'_>> = ["pending", "running", "done", "failed"]
            .iter()
            .map(|st| {
                let n = s.queue.get(st).copied().unwrap_or(0);
                (vec![("state", *st)], n as f64)
            })
            .collect();
        page.gauge(
            "valkey_bench_queue_tasks",
            "The queue's tasks by state, as this runner last read them.",
            &samples(&states),
        );
        page.gauge(
            "valkey_bench_queue_depth",
            "Pending tasks.",
            &[(&[], s.queue.get("pending").copied().unwrap_or(0) as f64)],
        );
        if let Some(t) = s.queue_read_s {
            page.gauge(
                "valkey_bench_queue_read_timestamp_seconds",
                "When this runner last read the queue's counts (Unix time): older than a few \
                 polls means the gauges above are stale.",
                &[(&r, t)],
            );
        }
        if let Some(t) = s.heartbeat_s {
            page.gauge(
                "valkey_bench_runner_heartbeat_timestamp_seconds",
                "When this runner last renewed its heartbeat (Unix time).",
                &[(&r, t)],
            );
        }
    }
    page.finish()
}

/// The endpoint: a listening socket and the thread that answers it (`prometheus/http.rs`: GET only,
/// bounded, never waited on); both go when this is dropped.
pub struct Metrics {
    state: Arc<Mutex<State>>,
    _endpoint: Endpoint,
    pub addr: String,
}

impl Metrics {
    /// Listens on `addr` (`127.0.0.1:9464`, `[::]:9464`); a refusal is the flag's error.
    /// Beyond loopback it warns: the page is unauthenticated.
    pub fn serve(addr: &str) -> anyhow::Result<Metrics> {
        let state = Arc::new(Mutex::new(State::default()));
        let pages: Pages = {
            let state = state.clone();
            Arc::new(move |path: &str| {
                (path == "/metrics")
                    .then(|| render(&state.lock().unwrap_or_else(|e| e.into_inner())))
            })
        };
        let endpoint = Endpoint::serve(addr, pages)
            .map_err(|e| UsageError(format!("--metrics-addr {addr}: cannot listen: {e}")))?;
        if !endpoint.addr.ip().is_loopback() {
            eprintln!(
                "warning: --metrics-addr {addr}: the metrics page is served without \
                 authentication to anyone who can reach {}; bind 127.0.0.1 unless a firewall \
                 or a scraper's network keeps others out",
                endpoint.addr
            );
        }
        Ok(Metrics {
            state,
            addr: endpoint.addr.to_string(),
            _endpoint: endpoint,
        })
    }

    /// A sink of a run's events feeding this endpoint.
    pub fn sink(&self) -> MetricsSink {
        MetricsSink {
            state: self.state.clone(),
        }
    }

    /// Changes what the runner itself reports.
    pub fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

pub struct MetricsSink {
    state: Arc<Mutex<State>>,
}

impl MetricsSink {
    /// The page as it is now (what `GET /metrics` answers).
    pub fn render(&self) -> String {
        render(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Sink for MetricsSink {
    fn event(&mut self, event: &Event) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Requests {
                command,
                requests,
                errors,
                histogram,
                ..
            } => {
                *s.requests.entry(command.clone()).or_default() += requests;
                *s.error_replies.entry(command.clone()).or_default() += errors;
                if let Some(h) = histogram.as_deref().and_then(|h| decode_histogram(h).ok()) {
                    s.latency
                        .entry(command.clone())
                        .or_default()
                        .add(&Buckets::from_hdr(&h));
                }
            }
            Event::RecordWritten { case, figures, .. } => {
                s.records += 1;
                if let Some(ops) = figures.get("ops_per_sec") {
                    s.last_ops = Some((case.clone(), *ops));
                }
            }
            Event::Errors { by_kind } => {
                for (kind, n) in by_kind {
                    *s.errors.entry(kind.clone()).or_default() += n;
                }
            }
            Event::LoadSecond {
                completed,
                ops_last_second,
            } => s.load = Some((*completed, *ops_last_second)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_counters_and_histograms_that_add_up() {
        let state = Arc::new(Mutex::new(State::default()));
        let mut sink = MetricsSink {
            state: state.clone(),
        };
        let mut h = bench_core::loadgen::stats::new_histogram();
        for v in [40, 80, 90, 3_000] {
            h.record(v).unwrap();
        }
        let encoded = bench_core::loadgen::stats::encode_histogram(&h);
        for _ in 0..2 {
            sink.event(&Event::Requests {
                command: "GET".into(),
                requests: 4,
                errors: 1,
                histogram: Some(encoded.clone()),
                seconds: Vec::new(),
            });
        }
        sink.event(&Event::Errors {
            by_kind: BTreeMap::from([("WRONGTYPE".to_string(), 1)]),
        });
        state.lock().unwrap().runner = Some("r1".into());
        let text = sink.render();
        for line in [
            "valkey_bench_requests_total{command=\"GET\"} 8",
            "valkey_bench_error_replies_total{command=\"GET\"} 2",
            "valkey_bench_errors_total{kind=\"WRONGTYPE\"} 1",
            "valkey_bench_request_latency_seconds_bucket{command=\"GET\",le=\"0.00005\"} 2",
            "valkey_bench_request_latency_seconds_bucket{command=\"GET\",le=\"0.0001\"} 6",
            "valkey_bench_request_latency_seconds_bucket{command=\"GET\",le=\"+Inf\"} 8",
            "valkey_bench_request_latency_seconds_count{command=\"GET\"} 8",
            "valkey_bench_runner_tasks_total{runner=\"r1\",outcome=\"done\"} 0",
            "valkey_bench_queue_depth 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
