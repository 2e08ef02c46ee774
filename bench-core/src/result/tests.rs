//! The result model's records: one JSON line each that reads back, and their fields.

use super::*;

#[test]
fn build_options_read_as_words() {
    assert_eq!(
        BuildOptions::default().to_string(),
        "jemalloc, no TLS, Valkey's CFLAGS"
    );
    let custom = BuildOptions {
        tls: true,
        malloc: Malloc::Libc,
        cflags: "-O3 -march=native".into(),
    };
    assert_eq!(
        custom.to_string(),
        "libc malloc, TLS, CFLAGS +\"-O3 -march=native\""
    );
}

pub(crate) fn sample() -> ResultRecord {
    ResultRecord {
        schema: SCHEMA_VERSION,
        run_id: "20261122T223000Z-perf-1a2b".into(),
        suite: "perf".into(),
        case: "GET/32B/P16/c50/io1".into(),
        repetition: 1,
        timestamp: "2026-11-22T22:30:01Z".into(),
        valkey: ValkeyInfo {
            version: "8.1.1".into(),
            source_id: "pinned:8.1.1:sha256:d9bbd82eecb82f35".into(),
            build: BuildOptions::default(),
            compiler: "/usr/bin/gcc-12 (gcc 12.2.0)".into(),
        },
        host: HostInfo {
            hostname: "h".into(),
            cpus: 2,
            model: "cpu".into(),
            kernel: "6.1".into(),
            memory_bytes: 1 << 30,
        },
        params: PerfParams {
            command: "GET".into(),
            value_size: Some(32),
            pipeline: 16,
            clients: 50,
            client_threads: 1,
            io_threads: 1,
            keyspace: 100_000,
            requests: 1_000_000,
            warmup_requests: 250_000,
            preloaded_items: 100_000,
            server_config: BTreeMap::new(),
            topology: TopologySpec::Standalone,
            placement: Default::default(),
            tls: None,
        },
        metrics: Metrics {
            ops_per_sec: 1_000_000.0,
            requests: 1_000_000,
            wall_secs: 1.01,
            latency: Latency {
                p50_us: Some(700.0),
                max_us: Some(2000.0),
                ..Latency::default()
            },
            histogram: None,
            series: Vec::new(),
            warmup_series: Vec::new(),
            client_cpu_us_per_request: None,
            server_cpu_us_per_request: Some(3.5),
            server_user_us_per_request: Some(1.5),
            server_sys_us_per_request: Some(2.0),
            usec_per_call: Some(0.8),
            nodes: Vec::new(),
            redirects: BTreeMap::new(),
            client_hosts: Vec::new(),
            offered_rate: None,
            latency_from: None,
            late_sends: None,
        },
        engine: EngineInfo {
            name: "valkey-benchmark".into(),
            version: "8.1.1".into(),
            argv: vec!["valkey-benchmark".into()],
        },
        monitor: Vec::new(),
        server_hosts: Vec::new(),
    }
}

#[test]
fn a_record_is_one_line_that_reads_back() {
    let record = sample();
    let line = record.to_json_line();
    assert!(line.ends_with('\n'));
    assert_eq!(line.matches('\n').count(), 1);
    let back: ResultRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(back, record);
}

#[test]
fn latency_fields_sit_flat_in_metrics() {
    let value: serde_json::Value = serde_json::from_str(&sample().to_json_line()).unwrap();
    let metrics = &value["metrics"];
    assert_eq!(metrics["p50_us"], 700.0);
    assert!(metrics["p99_us"].is_null());
    assert_eq!(metrics["ops_per_sec"], 1_000_000.0);
    assert_eq!(value["valkey"]["build"]["malloc"], "jemalloc");
    assert_eq!(value["schema"], SCHEMA_VERSION);
}

#[test]
fn an_open_loop_records_its_offered_rate_and_what_latency_counts_from() {
    let closed: serde_json::Value = serde_json::from_str(&sample().to_json_line()).unwrap();
    assert!(closed["metrics"]["offered_rate"].is_null());
    assert!(closed["metrics"].get("latency_from").is_none());
    assert!(closed["metrics"].get("late_sends").is_none());

    let mut open = sample();
    open.metrics.offered_rate = Some(50_000.0);
    open.metrics.latency_from = Some(crate::engine::LatencyFrom::Intended);
    open.metrics.late_sends = Some(3);
    let line = open.to_json_line();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["metrics"]["offered_rate"], 50_000.0);
    assert_eq!(value["metrics"]["latency_from"], "intended");
    assert_eq!(value["metrics"]["late_sends"], 3);
    let back: ResultRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(back, open);

    // Records written before these fields existed still read.
    let mut old = closed.clone();
    old["metrics"]
        .as_object_mut()
        .unwrap()
        .remove("offered_rate");
    let back: ResultRecord = serde_json::from_value(old).unwrap();
    assert_eq!(back.metrics.offered_rate, None);
}
