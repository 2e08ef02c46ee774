//! The native load generator through `cargo xtask loadgen` and `selfbench`: presets, the
//! open loop, a server killed mid-run.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// A fresh temp dir and one server from `xtask start` (with its JSON and port).
fn one_server(base_port: u16) -> (tempfile::TempDir, Started, Value, u16) {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (server, started) = start_instances(1, base_port, tmp.path());
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    (tmp, server, started, port)
}

/// Runs `xtask loadgen` against `port` and returns its exit status, stderr and report.
fn loadgen(
    port: u16,
    args: &[&str],
    tmp: &std::path::Path,
) -> (std::process::ExitStatus, String, Value) {
    let report = tmp.join(format!(
        "loadgen-{}.json",
        args.join("_").replace(['/', ' '], "-")
    ));
    let mut all = vec!["loadgen", "--port"];
    let port = port.to_string();
    all.push(&port);
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", report.to_str().unwrap()]);
    let out = run(&all, Some(tmp));
    let json = fs::read_to_string(&report)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (out.status, stderr(&out), json)
}

#[test]
fn every_loadgen_preset_runs_with_sane_numbers() {
    let _machine = heavy();
    let (tmp, mut server, _, port) = one_server(ports(1));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut control =
        bench_core::client::Client::connect(addr, None, Duration::from_secs(5)).unwrap();
    for preset in bench_core::workload::preset_names() {
        // Presets share key names (high_throughput reads 8-byte values where basic_rw
        // wrote 32): start each from an empty server, or the size check rightly fires.
        control.call(&["FLUSHALL"]).unwrap();
        let args = [
            "--workload",
            preset,
            "--clients",
            "4",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
        ];
        let (status, err, report) = loadgen(port, &args, tmp.path());
        assert!(status.success(), "{preset}: {err}");
        assert!(report["partial"].is_null(), "{preset}: {report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{preset}");
        let requests = report["requests"].as_u64().unwrap();
        assert!(requests > 500, "{preset}: {requests} requests in 0.5 s");
        let all = &report["all"];
        assert_eq!(all["requests"], report["requests"]);
        let l = &all["latency"];
        let (p50, p99, max) = (
            l["p50_us"].as_u64().unwrap(),
            l["p99_us"].as_u64().unwrap(),
            l["max_us"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{preset}: {l}");
        let per_command: u64 = report["commands"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["command"] != "DELIVERY")
            .map(|c| c["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(
            per_command, requests,
            "{preset}: commands add up to the total"
        );
        assert!(!report["series"].as_array().unwrap().is_empty(), "{preset}");
        assert!(
            report["client_cpu_us_per_request"].as_f64().unwrap() > 0.0,
            "{preset}"
        );
    }
    // pub_sub: 4 subscribers on every channel receive every published message.
    control.call(&["FLUSHALL"]).unwrap();
    let args = [
        "--workload",
        "pub_sub",
        "--clients",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0",
    ];
    let (status, err, report) = loadgen(port, &args, tmp.path());
    assert!(status.success(), "{err}");
    let commands = report["commands"].as_array().unwrap();
    let find = |name: &str| {
        commands
            .iter()
            .find(|c| c["command"] == name)
            .unwrap()
            .clone()
    };
    let (publish, delivery) = (find("PUBLISH"), find("DELIVERY"));
    let published = publish["requests"].as_u64().unwrap();
    let delivered = delivery["requests"].as_u64().unwrap();
    assert!(published > 500, "{publish}");
    // Messages published near the end may still be in flight when the run stops.
    assert!(
        delivered <= 4 * published && delivered >= 4 * published * 9 / 10,
        "{published} published, {delivered} delivered"
    );
    let e2e = delivery["latency"]["p50_us"].as_u64().unwrap();
    assert!(e2e > 0 && e2e < 1_000_000, "{delivery}");

    // basic_rw reads what it wrote: the second run of the same keyspace has hits.
    let (_, _, report) = loadgen(
        port,
        &[
            "--workload",
            "basic_rw",
            "--clients",
            "4",
            "--duration",
            "0.5",
        ],
        tmp.path(),
    );
    let get = report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"] == "GET")
        .unwrap();
    assert!(
        get["hits"].as_u64().unwrap() > 0 && get["misses"].as_u64().unwrap() > 0,
        "{get}"
    );
    server.stop(Duration::from_secs(20));
}

#[test]
fn open_loop_holds_its_rate() {
    let _machine = heavy();
    let (tmp, mut server, _, port) = one_server(ports(1));
    let args = [
        "--command",
        "GET",
        "--clients",
        "10",
        "--pipeline",
        "16",
        "--rate",
        "20000",
        "--duration",
        "2",
        "--warmup",
        "0.2",
    ];
    let (status, err, report) = loadgen(port, &args, tmp.path());
    assert!(status.success(), "{err}");
    let ops = report["ops_per_sec"].as_f64().unwrap();
    assert!(
        (ops - 20_000.0).abs() < 0.03 * 20_000.0,
        "open loop at 20000/s achieved {ops}"
    );
    // Whether every send is on time depends on what else the machine runs (a benchmark's
    // business, not a test's). What must hold either way: lateness is counted and warned
    // about, and it shows in the latency, which is measured from the intended send time.
    let requests = report["requests"].as_u64().unwrap();
    let late = report["late_sends"].as_u64().unwrap();
    let warned = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("behind schedule"));
    assert_eq!(warned, late > requests / 100, "{report}");
    let lag_max = report["send_lag_max_us"].as_u64().unwrap();
    let latency_max = report["all"]["latency"]["max_us"].as_u64().unwrap();
    assert!(
        latency_max >= lag_max,
        "a send {lag_max} µs late was timed from when it went out ({latency_max} µs max)"
    );
    server.stop(Duration::from_secs(20));
}

#[test]
fn a_server_killed_mid_run_gives_a_clear_error_and_a_partial_report() {
    let _machine = heavy();
    let (tmp, mut server, started, port) = one_server(ports(1));
    let pid = started["instances"][0]["pid"].as_u64().unwrap() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: kill(2) on the server our `start` child runs.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let args = [
        "--command",
        "SET",
        "--clients",
        "8",
        "--duration",
        "30",
        "--warmup",
        "0.2",
    ];
    let (status, err, report) = loadgen(port, &args, tmp.path());
    killer.join().unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("ended early") && err.contains("reconnecting failed"),
        "{err}"
    );
    assert!(
        report["partial"]
            .as_str()
            .is_some_and(|p| p.contains(&port.to_string())),
        "{report}"
    );
    assert!(
        report["requests"].as_u64().unwrap() > 1000,
        "what was measured before is kept"
    );
    assert!(report["reconnects"].as_u64().unwrap() >= 1);
    server.stop(Duration::from_secs(20)); // start notices its server died and exits
}

#[test]
fn selfbench_measures_both_engines_and_the_floor() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "selfbench",
            "--rounds",
            "1",
            "--requests",
            "20000",
            "--base-port",
            &ports(8).to_string(),
            "--json",
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let trials = json["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6, "3 clients × 2 pipeline depths × 1 round");
    let mut engines: Vec<&str> = trials
        .iter()
        .map(|t| t["engine"].as_str().unwrap())
        .collect();
    engines.sort_unstable();
    engines.dedup();
    assert_eq!(engines, ["floor", "native", "valkey-benchmark"]);
    for t in trials {
        let want = if t["pipeline"] == 1 { 20_000 } else { 200_000 };
        assert_eq!(t["requests"], want, "every reply counted: {t}");
        assert!(t["ops_per_sec"].as_f64().unwrap() > 1000.0, "{t}");
        let cpu = t["cpu_us_per_request"].as_f64().unwrap();
        assert!(cpu > 0.0 && cpu < 1000.0, "{t}");
    }
    // The native generator over the floor, paired within the round.
    for s in json["summary"].as_array().unwrap() {
        let ratios = s["native_floor_ratios"].as_array().unwrap();
        assert_eq!(ratios.len(), 1, "{s}");
        let ratio = s["native_floor_ratio"].as_f64().unwrap();
        assert!(ratio > 0.2 && ratio < 20.0, "{s}");
    }
    if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        assert!(
            stderr(&out).contains("the server on CPU"),
            "pinned apart: {}",
            stderr(&out)
        );
    }
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn selfbench_counts_each_clients_instructions_per_request() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "selfbench",
            "--instructions",
            "--requests",
            "500",
            "--base-port",
            &ports(1).to_string(),
            "--json",
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["counts"].as_array().unwrap().len(), 4, "{json}");
    for s in json["summary"].as_array().unwrap() {
        let (floor, native) = (s["floor"].as_f64().unwrap(), s["native"].as_f64().unwrap());
        // The floor encodes and scans with the generator's own code, so the generator
        // (which also times and records every reply) runs strictly more; both run
        // hundreds of instructions a request, not tens or tens of thousands.
        assert!(floor > 100.0 && floor < 5_000.0, "{s}");
        assert!(native > floor && native < 20.0 * floor, "{s}");
    }
    // Pipelining shares each batch's cost out: fewer instructions per request at 16.
    let per = |p: u64, e: &str| {
        json["summary"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["pipeline"] == p)
            .unwrap()[e]
            .as_f64()
            .unwrap()
    };
    assert!(per(16, "native") < per(1, "native"), "{json}");
    assert!(servers_under(tmp.path()).is_empty());
}

/// The engine seam's rate: the native engine runs the load open loop (latency from the
/// intended send times, late sends counted, the rate offered recorded beside the one
/// achieved), the same through `describe`'s command; an engine that cannot offer a rate
/// (this build's valkey-benchmark, which has no `--rps`; the floor client) says so before
/// it starts anything.
#[test]
fn the_rate_reaches_each_engine() {
    use bench_core::engine::{Engine, LatencyFrom, Load, Target};
    use bench_core::loadgen::engine::NativeEngine;
    use bench_core::loadgen::floor::FloorEngine;
    use bench_core::shutdown::Shutdown;

    let _machine = heavy();
    let (_tmp, mut server, _, port) = one_server(ports(1));
    let target = Target::standalone(([127, 0, 0, 1], port).into());
    let load = Load {
        command: bench_core::command::Command::Get,
        value_size: 32,
        pipeline: 1,
        clients: 10,
        keyspace: 1000,
        requests: 6000,
        threads: 1,
        client_cpus: Vec::new(),
        rate: Some(4000.0),
    };
    let shutdown = Shutdown::new();
    assert_eq!(NativeEngine.can_run(&load), Ok(()));
    let m = NativeEngine.run(&target, &load, &shutdown).unwrap();
    assert_eq!(m.requests, 6000);
    assert_eq!(m.offered_rate, Some(4000.0));
    assert_eq!(m.latency_from, Some(LatencyFrom::Intended));
    assert!(m.late_sends.is_some());
    assert!(
        (m.ops_per_sec - 4000.0).abs() < 0.05 * 4000.0,
        "offered 4000/s, achieved {}",
        m.ops_per_sec
    );
    let argv = NativeEngine.describe(&target, &load);
    assert!(argv.windows(2).any(|w| w == ["--rate", "4000"]), "{argv:?}");

    // A closed loop records no rate.
    let closed = Load {
        rate: None,
        requests: 2000,
        ..load.clone()
    };
    let m = NativeEngine.run(&target, &closed, &shutdown).unwrap();
    assert_eq!(
        (m.offered_rate, m.latency_from, m.late_sends),
        (None, None, None)
    );

    // Refused before anything runs: a rate that is none, valkey-benchmark without --rps,
    // the floor.
    for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let why = NativeEngine
            .can_run(&Load {
                rate: Some(bad),
                ..load.clone()
            })
            .unwrap_err();
        assert!(why.contains("requests per second"), "{why}");
    }
    let vb =
        xtask::valkey_benchmark::ValkeyBenchmark::new(&binaries().benchmark, &shutdown).unwrap();
    let why = vb.can_run(&load).unwrap_err();
    assert!(why.contains("has no --rps"), "{why}");
    assert!(vb.can_run(&closed).is_ok());
    let err = vb.run(&target, &load, &shutdown).unwrap_err().to_string();
    assert!(err.contains("has no --rps"), "{err}");
    let why = FloorEngine.can_run(&load).unwrap_err();
    assert!(why.contains("closed loops only"), "{why}");
    server.stop(Duration::from_secs(20));
}
