//! Positive controls: effects we plant on purpose must show in what the generator reports.
//! A server stall must show in the latency of an open-loop run (no coordinated omission),
//! and requests of one pipelined batch must be timed one by one.

use std::fs;
use std::thread;
use std::time::Duration;

use bench_core::client::Client;
use serde_json::Value;

use crate::util::*;

fn loadgen_json(port: u16, args: &[&str], tmp: &std::path::Path) -> Value {
    let out_file = tmp.join(format!("report-{port}.json"));
    let port = port.to_string();
    let mut all = vec!["loadgen", "--port", &port, "--json"];
    all.extend_from_slice(args);
    let out_arg = out_file.to_string_lossy().into_owned();
    all.extend_from_slice(&["--out", &out_arg]);
    let out = run(&all, Some(tmp));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&fs::read_to_string(&out_file).unwrap()).unwrap()
}

fn us(report: &Value, field: &str) -> f64 {
    report["all"]["latency"][field].as_f64().unwrap()
}

/// CLIENT PAUSE stalls the server for 400 ms in the middle of an open-loop run at 2,000
/// requests/s: about 800 requests are due during the stall. Timed from their intended send
/// time they waited up to 400 ms, so p99 is far above the sub-millisecond normal. A client
/// that timed from the actual send (or stopped sending while waiting) would hide it.
#[test]
fn a_server_stall_shows_in_open_loop_latency() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, started) = start_instances(1, ports(1), tmp.path());
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    let pauser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1500));
        let mut c =
            Client::connect(([127, 0, 0, 1], port).into(), None, Duration::from_secs(5)).unwrap();
        c.call(&["CLIENT", "PAUSE", "400", "ALL"]).unwrap();
    });
    let args = [
        "--command",
        "GET",
        "--clients",
        "4",
        "--rate",
        "2000",
        "--duration",
        "3",
        "--warmup",
        "0.5",
    ];
    let report = loadgen_json(port, &args, tmp.path());
    pauser.join().unwrap();
    let (p50, p99, max) = (
        us(&report, "p50_us"),
        us(&report, "p99_us"),
        us(&report, "max_us"),
    );
    assert!(
        max >= 300_000.0,
        "the 400 ms stall is missing from max {max} µs: {report}"
    );
    assert!(
        p99 >= 100_000.0,
        "the stall held ~13% of requests, p99 {p99} µs: {report}"
    );
    assert!(
        p50 < p99 / 10.0,
        "most requests were not stalled: p50 {p50} p99 {p99}"
    );
    server.stop(Duration::from_secs(20));
}

/// One BLPOP with a 20 ms timeout in each batch of 16 pipelined requests: the replies of
/// the requests before it in the batch come at once, those after it 20 ms later. Timed one
/// by one, the latencies are bimodal; timing a batch as a whole (to its first reply, as
/// valkey-benchmark does, or to its last) would give every request of it the same time.
#[test]
fn pipelined_requests_are_timed_one_by_one() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let workload = tmp.path().join("blpop.toml");
    fs::write(
        &workload,
        "name = \"get-and-blpop\"\nkeyspace = 1000\n\
         commands = [{ command = \"GET {key}\", weight = 15 }, \
         { command = \"BLPOP {key} 0.02\", weight = 1 }]\n",
    )
    .unwrap();
    let (mut server, started) = start_instances(1, ports(1), tmp.path());
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    let args = [
        "--workload",
        workload.to_str().unwrap(),
        "--clients",
        "2",
        "--pipeline",
        "16",
        "--duration",
        "2",
        "--warmup",
        "0.2",
    ];
    let report = loadgen_json(port, &args, tmp.path());
    let commands = report["commands"].as_array().unwrap();
    let latency = |name: &str, field: &str| -> f64 {
        commands.iter().find(|c| c["command"] == name).unwrap()["latency"][field]
            .as_f64()
            .unwrap()
    };
    // GETs before the BLPOP of their batch answer at once, GETs after it wait 20 ms: in
    // batches with a BLPOP (two in three) about half the GETs come after one, so well over
    // 10% wait. Timing a batch to its first reply would leave only the ~6% of batches that
    // start with a BLPOP slow, and p90 fast.
    let (get_p50, get_p90) = (latency("GET", "p50_us"), latency("GET", "p90_us"));
    assert!(
        get_p90 >= 15_000.0,
        "GETs queued behind a BLPOP waited for it: p90 {get_p90} µs"
    );
    let fast = latency("GET", "min_us");
    assert!(
        fast < 5_000.0,
        "GETs ahead of the BLPOP answered at once: min {fast} µs (p50 {get_p50})"
    );
    assert!(
        latency("BLPOP", "min_us") >= 15_000.0,
        "every BLPOP timed out"
    );
    server.stop(Duration::from_secs(20));
}

/// The positive control of `compare`: a candidate made several times slower per command
/// (a busy loop of 3,000 iterations, about 1 µs, against GET's ~1 µs of server time) must
/// be called a regression, exit 1, even on a loaded machine.
#[test]
fn compare_against_a_deliberately_slowed_build_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = slowed_tree(tmp.path());
    // Build first (outside the heavy lock: a build is not a measurement).
    let built = run(
        &["build", "--json", "--valkey-src", tree.to_str().unwrap()],
        Some(tmp.path()),
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let _machine = heavy();
    let out_dir = tmp.path().join("out");
    let out = xtask(
        &[
            "compare",
            "--baseline",
            "8.1.1",
            "--candidate",
            tree.to_str().unwrap(),
            "--quick",
            "--cases",
            "GET/32B/P16",
            "--slice-seconds",
            "0.05",
            "--max-time",
            "60s",
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
        ],
        Some(tmp.path()),
    )
    .env("VB_SLOWDOWN_ITERS", "3000")
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a slowed build must be a regression: {err}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let case = &report["cases"][0];
    assert_eq!(case["verdict"], "regression", "{case}");
    let ops = case["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "ops_per_sec")
        .unwrap();
    let ratio = ops["comparison"]["ratio"].as_f64().unwrap();
    assert!(
        ratio < 0.9,
        "the candidate should be far slower: ratio {ratio}"
    );
    assert!(servers_under(tmp.path()).is_empty());
}
