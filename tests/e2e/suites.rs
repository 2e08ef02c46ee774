//! The perf, mem and sync suites through `cargo xtask bench`: plausible records, bad suite
//! files naming the field, the mem suite against a direct measurement, replication.

use std::fs;
use std::time::Duration;

use bench_core::result::{ResultRecord, SCHEMA_VERSION};
use bench_core::shutdown::Shutdown;
use serde_json::Value;

use crate::util::*;

#[test]
fn perf_suite_with_the_native_engine_writes_plausible_records() {
    perf_suite_writes_plausible_records("native", ports(8));
}

#[test]
fn perf_suite_with_valkey_benchmark_writes_plausible_records() {
    perf_suite_writes_plausible_records("valkey-benchmark", ports(8));
}

fn perf_suite_writes_plausible_records(engine: &str, base_port: u16) {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(tmp.path(), &[]);
    let out_dir = tmp.path().join("run");
    let out = run(
        &[
            "bench",
            "--suite-file",
            suite.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--base-port",
            &base_port.to_string(),
            "--engine",
            engine,
            "--json",
            "--progress-json",
            tmp.path().join("progress.jsonl").to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "bench failed:\n{}", stderr(&out));
    // The progress stream: the run, each case started and finished, each record as it was
    // written (counted 1, 2, ...), and the end, in that order.
    let events: Vec<Value> = read_jsonl(&tmp.path().join("progress.jsonl"));
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"finished"), "{kinds:?}");
    assert_eq!(events[0]["expected_records"], 12);
    let written: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "record_written")
        .collect();
    assert_eq!(written.len(), 12);
    for (i, e) in written.iter().enumerate() {
        assert_eq!(e["done"], i as u64 + 1);
        assert!(e["figures"]["ops_per_sec"].as_f64().unwrap() > 0.0, "{e}");
    }
    let mut open_case: Option<&str> = None;
    for e in &events[1..events.len() - 1] {
        match e["event"].as_str().unwrap() {
            "case_started" => {
                assert!(open_case.is_none(), "a case started inside another: {e}");
                open_case = e["case"].as_str();
            }
            "record_written" => assert_eq!(open_case, e["case"].as_str(), "{e}"),
            "case_finished" => assert_eq!(open_case.take(), e["case"].as_str(), "{e}"),
            // The weak-run warnings come once every case is done (these runs are short).
            "warning" => assert!(open_case.is_none(), "a warning inside a case: {e}"),
            other => panic!("unexpected {other} in the middle: {e}"),
        }
    }
    assert!(
        events.iter().any(|e| e["event"] == "warning"
            && e["message"]
                .as_str()
                .unwrap()
                .starts_with("Short repetitions")),
        "the short-repetitions warning on the progress stream"
    );
    assert_eq!(events.last().unwrap()["records"], 12);
    assert_eq!(events.last().unwrap()["complete"], true);
    assert!(servers_under(tmp.path()).is_empty(), "servers left running");
    // The report is written at the end of the run; only the native engine saves histograms.
    let charts = assert_report(&out_dir, &["throughput"]);
    assert_eq!(
        charts.iter().any(|c| c.starts_with("latency-get")),
        engine == "native",
        "{charts:?}"
    );

    let text = fs::read_to_string(out_dir.join("results.jsonl")).unwrap();
    let records: Vec<ResultRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // SET, GET, RPOP × pipelines 1 and 8 × 2 repetitions.
    assert_eq!(records.len(), 12);
    let raw: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for field in [
        "schema",
        "run_id",
        "suite",
        "case",
        "timestamp",
        "valkey",
        "host",
        "params",
        "metrics",
        "engine",
    ] {
        assert!(!raw[field].is_null(), "record lacks {field}");
    }
    for r in &records {
        assert_eq!(r.schema, SCHEMA_VERSION);
        assert_eq!(r.suite, "perf");
        assert_eq!(r.valkey.version, "8.1.1");
        assert_eq!(r.engine.name, engine);
        assert!(r.host.cpus >= 1 && r.host.memory_bytes > 0);
        assert!(chrono_like(&r.timestamp), "{}", r.timestamp);
        let m = &r.metrics;
        assert!(
            m.ops_per_sec > 1000.0,
            "{}: {} ops/s",
            r.case,
            m.ops_per_sec
        );
        assert!(
            m.ops_per_sec < 50_000_000.0,
            "{}: {} ops/s",
            r.case,
            m.ops_per_sec
        );
        let (p50, p99, max) = (
            m.latency.p50_us.unwrap(),
            m.latency.p99_us.unwrap(),
            m.latency.max_us.unwrap(),
        );
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= max,
            "{}: p50 {p50} p99 {p99} max {max}",
            r.case
        );
        assert_eq!(r.params.value_size, Some(64));
        if engine == "native" {
            // The native engine counts its requests itself (for valkey-benchmark this is
            // the -n it was given: the server's count below checks that one).
            assert_eq!(m.requests, r.params.requests);
        }
        // The engine's own wall time bounds its rate from above (setup adds time).
        assert!(
            m.requests as f64 / m.wall_secs <= m.ops_per_sec * 1.05,
            "{}",
            r.case
        );
        // The server's own signals, from INFO deltas around the measured run.
        let server_cpu = m.server_cpu_us_per_request.unwrap();
        assert!(
            server_cpu > 0.0 && server_cpu < 1000.0,
            "{}: {server_cpu}",
            r.case
        );
        let per_call = m.usec_per_call.unwrap();
        assert!(
            per_call > 0.0 && per_call < 1000.0,
            "{}: {per_call}",
            r.case
        );
        // The monitor sampled the server at least at the start and the end of the run.
        assert!(
            r.monitor.len() >= 2,
            "{}: {} samples",
            r.case,
            r.monitor.len()
        );
        let (first, last) = (
            &r.monitor[0].servers[0],
            &r.monitor[r.monitor.len() - 1].servers[0],
        );
        let command = r.params.command.to_ascii_lowercase();
        let calls = last.commandstats[&command].calls
            - first.commandstats.get(&command).map_or(0, |c| c.calls);
        assert!(
            calls >= m.requests,
            "{}: commandstats saw {calls} calls, fewer than {} requests",
            r.case,
            m.requests
        );
        // The server saw about what the engine says it sent: a check independent of the
        // engine's own counting (the window may also hold the end of the warmup).
        assert!(
            calls <= m.requests + r.params.warmup_requests + m.requests / 10,
            "{}: commandstats saw {calls} calls for {} requests",
            r.case,
            m.requests
        );
        assert!(last.used_cpu_user + last.used_cpu_sys > first.used_cpu_user + first.used_cpu_sys);
        assert!(!r.monitor[1].host.cpu_busy_pct.is_empty());
        if engine == "native" {
            let h = bench_core::loadgen::stats::decode_histogram(m.histogram.as_deref().unwrap())
                .unwrap();
            assert_eq!(
                h.len(),
                m.requests,
                "{}: the histogram holds every request",
                r.case
            );
            assert!(!m.series.is_empty());
            assert!(m.client_cpu_us_per_request.unwrap() > 0.0);
            assert!(m.latency.p99_9_us.is_some());
        } else {
            assert!(m.histogram.is_none() && m.series.is_empty());
        }
        match r.params.command.as_str() {
            // Commands on string keys find the whole keyspace written.
            "GET" | "SET" => assert_eq!(r.params.preloaded_items, 1000),
            "RPOP" => {
                assert!(r.params.preloaded_items > r.params.requests + r.params.warmup_requests)
            }
            other => panic!("unexpected command {other}"),
        }
    }
    let run_ids: std::collections::BTreeSet<_> = records.iter().map(|r| &r.run_id).collect();
    assert_eq!(run_ids.len(), 1);

    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["complete"], true);
    assert_eq!(json["cases"].as_array().unwrap().len(), 6);
    let summary = fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("| GET/64B/P8/c10/io1/1k-keys "),
        "{summary}"
    );
    assert!(!summary.contains("incomplete"));
    // The build and the host read as words, not as Rust's debug output.
    assert!(
        summary.contains("jemalloc, no TLS, Valkey's CFLAGS"),
        "{summary}"
    );
    assert!(summary.contains(" GiB, kernel "), "{summary}");
    assert!(!summary.contains("BuildOptions"), "{summary}");
    // The command that ran, and (these repetitions are short) what makes the run weak.
    assert!(
        summary.contains("- reproduce: `cargo xtask bench "),
        "{summary}"
    );
    assert!(summary.contains("**Short repetitions**"), "{summary}");
    let manifest: Value =
        serde_json::from_str(&fs::read_to_string(out_dir.join("run.json")).unwrap()).unwrap();
    assert!(
        manifest["command"]
            .as_str()
            .unwrap()
            .starts_with("cargo xtask bench ")
    );
    // The report says the same before any number, and every case's parameters.
    let md = fs::read_to_string(out_dir.join("report.md")).unwrap();
    for section in [
        "## Read this first",
        "## Reproduce",
        "## Environment",
        "<details><summary>Parameters of every case",
    ] {
        assert!(md.contains(section), "{section} missing from report.md");
    }
    // The measured run's own command line, the engine's.
    let measured = if engine == "native" {
        "`cargo xtask loadgen --host 127.0.0.1"
    } else {
        "valkey-benchmark -h 127.0.0.1"
    };
    assert!(md.contains(measured), "{measured} missing from report.md");
}

fn chrono_like(ts: &str) -> bool {
    ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T') && ts.ends_with('Z')
}

#[test]
fn a_bad_suite_file_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    type Overrides<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Overrides, &str, &str); 3] = [
        (&[("pipelines", "[1, 0]")], "`pipelines`", "invalid value 0"),
        (&[("pipline", "[1]")], "pipline", "unknown field"),
        (&[("commands", "[\"GETT\"]")], "`commands`", "GETT"),
    ];
    for (overrides, field, detail) in cases {
        let suite = suite_file(tmp.path(), overrides);
        let out = run(
            &["bench", "--suite-file", suite.to_str().unwrap()],
            Some(tmp.path()),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(field) && err.contains(detail),
            "{field}/{detail}: {err}"
        );
    }
    assert!(servers_under(tmp.path()).is_empty());
}

/// Writes a suite file (`suite = "<suite>"` + `body`) and runs `xtask bench` on it with
/// results in `<tmp>/run`; returns the output and that directory.
fn run_suite_file(
    tmp: &std::path::Path,
    suite: &str,
    body: &str,
    base_port: u16,
) -> (std::process::Output, std::path::PathBuf) {
    let file = tmp.join(format!("{suite}.toml"));
    fs::write(&file, format!("suite = \"{suite}\"\n{body}")).unwrap();
    let out_dir = tmp.join("run");
    let port = base_port.to_string();
    let args = [
        "bench",
        "--suite-file",
        file.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--base-port",
        &port,
    ];
    (run(&args, Some(tmp)), out_dir)
}

/// INFO used_memory once it has held still (within 0.1%) for 10 samples 20 ms apart.
fn settled_used_memory(client: &mut bench_core::client::Client) -> u64 {
    let mut samples = Vec::new();
    for _ in 0..250 {
        let info = bench_core::info::Info::parse(&client.call_text(&["INFO", "memory"]).unwrap());
        samples.push(info.get_u64("used_memory").unwrap());
        if bench_core::mem::is_settled(&samples, 10, 0.001) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    *samples.last().unwrap()
}

#[test]
fn mem_suite_string_case_agrees_with_a_direct_measurement() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (out, out_dir) = run_suite_file(
        tmp.path(),
        "mem",
        "data_types = [\"string\"]\nvalue_sizes = [32]\nkey_size = 16\nitems = 20000\nelements_per_key = 1\n",
        ports(8),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<bench_core::result::MemRecord> = read_jsonl(&out_dir.join("results.jsonl"));
    assert_eq!(records.len(), 1);
    let m = &records[0].metrics;
    assert_eq!(records[0].suite, "mem");
    assert_eq!(m.user_bytes_per_item, 48.0);
    assert!(records[0].monitor.len() >= 2);
    let grew = records[0].monitor.last().unwrap().servers[0].used_memory
        > records[0].monitor[0].servers[0].used_memory;
    assert!(grew, "the monitor saw used_memory grow while populating");
    // 8.x embeds the key in the object, so a 32-byte value under a 16-byte key is `raw`.
    assert!(
        ["embstr", "raw"].contains(&m.encoding.as_str()),
        "{}",
        m.encoding
    );
    assert!(m.settled);
    assert!(
        m.mem_clients_before > 0 && m.mem_clients_after > 0,
        "both readings saw the clients' buffers: {} {}",
        m.mem_clients_before,
        m.mem_clients_after
    );

    // The same data, written by this test with plain SETs on its own fresh server.
    let shutdown = Shutdown::new();
    let options = xtask::instances::Options {
        base_port: ports(4),
        ..Default::default()
    };
    let server = xtask::instances::start(&server_path(), 1, &options, &shutdown)
        .unwrap()
        .remove(0);
    // Raw used_memory, without the suite's subtraction of mem_clients_normal, so this
    // checks that too: the writes come over connections that are closed before each
    // reading, and the readings over one idle connection, open for both, whose buffers
    // have long shrunk to their steady size.
    let mut reader = server.client().unwrap();
    reader.call_text(&["INFO", "memory"]).unwrap();
    // Each command's first call allocates its latency histogram: call SET and DEL once.
    let mut writer = server.client().unwrap();
    writer.call(&["SET", "warm", "up"]).unwrap();
    assert_eq!(writer.call_int(&["DEL", "warm"]).unwrap(), 1);
    drop(writer);
    std::thread::sleep(Duration::from_millis(500));
    let before = settled_used_memory(&mut reader);
    let mut writer = server.client().unwrap();
    for chunk in (0..20_000u64).collect::<Vec<_>>().chunks(500) {
        for &i in chunk {
            let key = format!("k{i:015}");
            let value = format!("v{i:031}");
            writer.queue(&["SET", key.as_str(), value.as_str()]);
        }
        writer.flush_and_read(chunk.len()).unwrap();
    }
    drop(writer);
    std::thread::sleep(Duration::from_millis(500));
    let after = settled_used_memory(&mut reader);
    assert_eq!(reader.call_int(&["DBSIZE"]).unwrap(), 20_000);
    let direct = (after - before) as f64 / 20_000.0;
    // They agree within ~0.15% run after run. 0.5% still catches either way the suite was
    // wrong before: a first-call histogram in its delta (24 KB, 1.3%), or client buffers
    // resized between its readings (up to 30 KB, 1.6%).
    eprintln!(
        "suite {:.3} bytes/item, direct {direct:.3}",
        m.bytes_per_item
    );
    assert!(
        (m.bytes_per_item - direct).abs() <= 0.005 * direct,
        "suite says {:.2} bytes/item, direct measurement {direct:.2}",
        m.bytes_per_item
    );
}

#[test]
fn mem_suite_detects_a_cardinality_mismatch() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    // An eviction policy under a tiny maxmemory drops keys as they are written.
    let (out, _) = run_suite_file(
        tmp.path(),
        "mem",
        "data_types = [\"string\"]\nvalue_sizes = [512]\nkey_size = 16\nitems = 8000\nelements_per_key = 1\n\
         [server_config]\nmaxmemory = \"2mb\"\nmaxmemory-policy = \"allkeys-random\"\n",
        ports(8),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("DBSIZE: expected 8000 after populating"),
        "{err}"
    );
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn sync_suite_completes_disk_and_diskless_with_two_replicas() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (out, out_dir) = run_suite_file(
        tmp.path(),
        "sync",
        "data_mb = [4]\nvalue_size = 1024\nreplicas = [2]\ndiskless_sync = [false, true]\ntimeout_seconds = 60\n",
        ports(8),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(servers_under(tmp.path()).is_empty());
    let records: Vec<bench_core::result::SyncRecord> = read_jsonl(&out_dir.join("results.jsonl"));
    assert_eq!(records.len(), 4, "2 cases × 2 replicas");
    for r in &records {
        let (p, m) = (&r.params, &r.metrics);
        assert_eq!(p.keys, 4096);
        assert_eq!((m.keys_primary, m.keys_replica), (4096, 4096), "{}", r.case);
        assert!(
            m.sync_secs > 0.0 && m.sync_secs < 60.0,
            "{}: {}",
            r.case,
            m.sync_secs
        );
        // Random values do not compress: the transfer carries at least the data.
        assert!(
            m.transfer_bytes >= p.data_bytes,
            "{}: {} < {}",
            r.case,
            m.transfer_bytes,
            p.data_bytes
        );
        assert_eq!(m.rdb_bytes > 0, !p.diskless_sync, "{}", r.case);
        assert!(m.fork_usec > 0);
        let roles: Vec<&str> = r.monitor[0]
            .servers
            .iter()
            .map(|s| s.role.as_str())
            .collect();
        assert_eq!(roles, ["primary", "replica1", "replica2"], "{}", r.case);
    }
    let modes: std::collections::BTreeSet<bool> =
        records.iter().map(|r| r.params.diskless_sync).collect();
    assert_eq!(modes.len(), 2);
    assert_report(&out_dir, &["sync"]);
}

#[test]
fn a_replica_that_cannot_connect_times_out_cleanly() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    // With maxclients 2, our control connection and the monitor's fill the primary (both
    // open before REPLICAOF is sent), so it refuses the replica's link: the sync can never
    // finish. On the replica, the monitor and the REPLICAOF poller take its two slots.
    let (out, _) = run_suite_file(
        tmp.path(),
        "sync",
        "data_mb = [1]\nvalue_size = 1024\nreplicas = [1]\ndiskless_sync = [false]\ntimeout_seconds = 3\n\
         [server_config]\nmaxclients = \"2\"\n",
        ports(8),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("did not finish within 3 s"), "{err}");
    assert!(err.contains("master_link_status: down"), "{err}");
    assert!(
        servers_under(tmp.path()).is_empty(),
        "servers left after a sync timeout"
    );
    let summary = fs::read_to_string(tmp.path().join("run/summary.md")).unwrap();
    assert!(summary.contains("**incomplete**: failed"), "{summary}");
}

/// The progress stream always ends with `finished`: here the build fails (no such source
/// tree) before the run starts, so it is the only event, with the error.
#[test]
fn a_run_that_fails_before_it_starts_still_ends_its_progress_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let progress = tmp.path().join("progress.jsonl");
    let out = run(
        &[
            "bench",
            "--suite",
            "mem",
            "--quick",
            "--valkey-src",
            tmp.path().join("no-such-tree").to_str().unwrap(),
            "--progress-json",
            progress.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let events: Vec<Value> = read_jsonl(&progress);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "finished");
    assert_eq!(events[0]["complete"], false);
    assert!(
        events[0]["error"]
            .as_str()
            .unwrap()
            .contains("no-such-tree"),
        "{}",
        events[0]
    );
    // A progress file that would be the results file is refused before anything starts.
    let run_dir = tmp.path().join("run");
    let results = run_dir.join("results.jsonl");
    let out = run(
        &[
            "bench",
            "--quick",
            "--out",
            run_dir.to_str().unwrap(),
            "--progress-json",
            results.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("results file"), "{}", stderr(&out));
    assert!(!results.exists());
}
