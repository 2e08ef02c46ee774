//! `--metrics-addr` on `loadgen` and `runner`, scraped over HTTP and read with an
//! independent parser of the Prometheus text format (prometheus-parse): the counters and
//! histograms agree with the run's own report and records.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::Value;

use crate::queue::{queue_add, queue_list, state_of};
use crate::util::{
    build_json, heavy, ports, signal, start_instances, stderr, wait_until, wait_with_limit, xtask,
};

/// `GET /metrics` at `addr`, parsed; `None` while nothing listens.
fn scrape(addr: &str) -> Option<Vec<Sample>> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    Some(
        Scrape::parse(lines)
            .expect("the text format parses")
            .samples,
    )
}

/// The value of the sample named `metric` whose labels include `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match &s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => Some(*v),
            _ => None,
        })
}

/// A histogram's buckets (upper bound, cumulative count), checked to be cumulative.
fn buckets(samples: &[Sample], metric: &str, command: &str) -> Vec<(f64, f64)> {
    let found = samples
        .iter()
        .find(|s| s.metric == metric && s.labels.get("command") == Some(command))
        .unwrap_or_else(|| panic!("no {metric} for {command}"));
    let Metric::Histogram(counts) = &found.value else {
        panic!("{metric} is not a histogram: {:?}", found.value)
    };
    let list: Vec<(f64, f64)> = counts.iter().map(|c| (c.less_than, c.count)).collect();
    assert!(
        list.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{list:?}"
    );
    assert_eq!(list.last().unwrap().0, f64::INFINITY, "{list:?}");
    list
}

#[test]
fn loadgen_serves_live_and_final_metrics_that_match_its_report() {
    let _heavy = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (_server, started) = start_instances(1, ports(1), tmp.path());
    let port = started["instances"][0]["port"]
        .as_u64()
        .unwrap()
        .to_string();
    let addr = format!("127.0.0.1:{}", ports(1));
    let report = tmp.path().join("report.json");
    let mut child = xtask(
        &[
            "loadgen",
            "--port",
            &port,
            "--duration",
            "4",
            "--warmup",
            "0.5",
            "--clients",
            "4",
            "--metrics-addr",
            &addr,
            "--metrics-linger",
            "30",
            "--out",
            report.to_str().unwrap(),
        ],
        Some(tmp.path()),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();

    // Live: replies so far, growing.
    let mut live = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let replies =
                scrape(&addr).and_then(|s| value(&s, "valkey_bench_loadgen_replies_total", &[]));
            live.extend(replies.filter(|r| *r > 0.0));
            live.len() >= 2
        }),
        "never two live scrapes with replies: {live:?}"
    );
    // A later scrape has more: the counter is live, not the final one.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let now = scrape(&addr)
                .and_then(|s| value(&s, "valkey_bench_loadgen_replies_total", &[]))
                .unwrap_or(0.0);
            now > live[0]
        }),
        "the live counter never grew past {}",
        live[0]
    );

    // Final: once the report is written, the endpoint has every command's figures.
    assert!(
        wait_until(Duration::from_secs(30), || report.exists()),
        "no report"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let samples = scrape(&addr).expect("still serving while it lingers");
    let commands = report["commands"].as_array().unwrap();
    assert!(!commands.is_empty());
    for c in commands {
        let command = c["command"].as_str().unwrap();
        let requests = c["requests"].as_u64().unwrap() as f64;
        assert!(requests > 0.0);
        let labels = [("command", command)];
        assert_eq!(
            value(&samples, "valkey_bench_requests_total", &labels),
            Some(requests),
            "{command}"
        );
        // The histogram holds every reply: its count and its +Inf bucket are the
        // report's requests, and its median bucket brackets the report's p50.
        let list = buckets(&samples, "valkey_bench_request_latency_seconds", command);
        assert_eq!(list.last().unwrap().1, requests, "{command}");
        assert_eq!(
            value(
                &samples,
                "valkey_bench_request_latency_seconds_count",
                &labels
            ),
            Some(requests)
        );
        let p50 = c["latency"]["p50_us"].as_f64().unwrap() / 1e6;
        let at = list.iter().position(|(_, n)| *n >= requests / 2.0).unwrap();
        let below = if at == 0 { 0.0 } else { list[at - 1].0 };
        assert!(
            below <= p50 * 1.001 && p50 <= list[at].0 * 1.001,
            "{command}: p50 {p50} s outside bucket ({below}, {}]",
            list[at].0
        );
        // `_sum` is in seconds: its mean lies between the report's fastest and slowest.
        let sum = value(
            &samples,
            "valkey_bench_request_latency_seconds_sum",
            &labels,
        )
        .unwrap();
        let (min, max) = (
            c["latency"]["min_us"].as_f64().unwrap() / 1e6,
            c["latency"]["max_us"].as_f64().unwrap() / 1e6,
        );
        let mean = sum / requests;
        assert!(
            min * 0.99 <= mean && mean <= max * 1.01,
            "{command}: sum/count {mean} s outside [{min}, {max}]"
        );
        // And it is the report's mean: the histogram went through the event, base64 and
        // the bucket rendering, not around them.
        let avg = c["latency"]["avg_us"].as_f64().unwrap() / 1e6;
        assert!(
            (mean - avg).abs() <= avg * 0.01,
            "{command}: sum/count {mean} s against the report's mean {avg} s"
        );
    }
    signal(&child, libc::SIGTERM);
    wait_with_limit(&mut child, Duration::from_secs(10));
}

#[test]
fn a_runner_serves_its_tasks_requests_latency_queue_and_heartbeat() {
    let _heavy = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (queue, results) = (tmp.path().join("queue"), tmp.path().join("results"));
    let (q, r) = (queue.to_str().unwrap(), results.to_str().unwrap());
    let addr = format!("127.0.0.1:{}", ports(1));
    let port = ports(8).to_string();
    let id = queue_add(
        &queue,
        "bench",
        &[
            "--quick",
            "--commands",
            "PING",
            "--pipelines",
            "4",
            "--base-port",
            &port,
        ],
    )
    .remove(0);
    // Taken by the endpoint before the runner starts: refused, exit 2, nothing run.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    let out = xtask(
        &["runner", "--queue", q, "--metrics-addr", &taken],
        Some(tmp.path()),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--metrics-addr"), "{}", stderr(&out));
    assert_eq!(state_of(&queue_list(&queue), &id)["state"], "pending");

    let mut runner = xtask(
        &[
            "runner",
            "--queue",
            q,
            "--results",
            r,
            "--poll-seconds",
            "0.2",
            "--metrics-addr",
            &addr,
        ],
        Some(tmp.path()),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // What a stranger on the port can send: a body of 2^50 bytes announced (it aborted the
    // runner when tiny_http served the page), a body announced and never sent (it blocked
    // the endpoint's one thread), headers without end. Each gets an answer at once, and the
    // runner goes on with its task. The held-open one must not delay its exit either.
    assert!(
        wait_until(Duration::from_secs(30), || TcpStream::connect(&addr)
            .is_ok()),
        "the endpoint never listened"
    );
    let huge = exchange(
        &addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 1125899906842624\r\n\r\n",
    );
    assert!(huge.starts_with("HTTP/1.1 405"), "{huge}");
    let mut held = TcpStream::connect(&addr).unwrap();
    held.write_all(b"GET /metrics HTTP/1.1\r\nContent-Length: 2000\r\n\r\n")
        .unwrap();
    let endless = format!("GET /metrics HTTP/1.1\r\n{}", "X: y\r\n".repeat(4000));
    let endless = exchange(&addr, endless.as_bytes());
    assert!(endless.starts_with("HTTP/1.1 4"), "{endless}");
    let silent = TcpStream::connect(&addr).unwrap();
    assert!(
        wait_until(Duration::from_secs(120), || {
            state_of(&queue_list(&queue), &id)["state"] == "done"
        }),
        "the task never finished"
    );
    let mut samples = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            samples = scrape(&addr).unwrap_or_default();
            value(&samples, "valkey_bench_queue_tasks", &[("state", "done")]) == Some(1.0)
        }),
        "the queue gauge never showed the task done"
    );
    assert_eq!(
        value(
            &samples,
            "valkey_bench_runner_tasks_total",
            &[("outcome", "done")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&samples, "valkey_bench_queue_depth", &[]), Some(0.0));
    let beat = value(
        &samples,
        "valkey_bench_runner_heartbeat_timestamp_seconds",
        &[],
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - beat).abs() < 60.0, "heartbeat {beat}, now {now}");
    // The task's records, summed, are what the endpoint counted.
    let records: Vec<Value> = std::fs::read_to_string(results.join(&id).join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!records.is_empty());
    let requests: f64 = records
        .iter()
        .map(|r| r["metrics"]["requests"].as_f64().unwrap())
        .sum();
    let labels = [("command", "PING")];
    assert_eq!(
        value(&samples, "valkey_bench_requests_total", &labels),
        Some(requests)
    );
    let list = buckets(&samples, "valkey_bench_request_latency_seconds", "PING");
    assert_eq!(list.last().unwrap().1, requests);
    assert_eq!(
        value(&samples, "valkey_bench_records_total", &[]),
        Some(records.len() as f64)
    );
    signal(&runner, libc::SIGTERM);
    let status = wait_with_limit(&mut runner, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    assert!(scrape(&addr).is_none(), "the endpoint outlived its runner");
    drop((held, silent));
}

/// Sends `bytes` to `addr` and reads the answer until the endpoint closes.
fn exchange(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
