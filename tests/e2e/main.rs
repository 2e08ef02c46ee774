//! End-to-end tests: real valkey-server processes from our own build, driven through the
//! xtask binary as a user would (and through the xtask library where a panic is needed).
//!
//! The first test to need Valkey builds it (about 2.5 minutes on 2 cores, once per
//! machine: the build is cached under $XDG_CACHE_HOME/valkey-bench).

mod controls;
mod hostile;
mod source;
mod util;

use std::fs;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use bench_core::result::{ResultRecord, SCHEMA_VERSION};
use bench_core::shutdown::Shutdown;
use serde_json::Value;
use util::*;

#[test]
fn build_reports_json_and_the_second_build_is_cached() {
    let first = build_json();
    assert_eq!(first["version"], "8.1.1");
    assert!(
        first["source_id"]
            .as_str()
            .unwrap()
            .starts_with("pinned:8.1.1:sha256:d9bbd82eecb82f35")
    );
    for key in ["server", "cli", "benchmark"] {
        let path = first[key].as_str().unwrap();
        assert!(fs::metadata(path).is_ok(), "{key}: {path} missing");
    }
    let again = run(&["build", "--json"], None);
    assert!(again.status.success(), "{}", stderr(&again));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["cached"], true);
    assert_eq!(again["server"], first["server"]);
}

#[test]
fn perf_suite_with_the_native_engine_writes_plausible_records() {
    perf_suite_writes_plausible_records("native", 9100);
}

#[test]
fn perf_suite_with_valkey_benchmark_writes_plausible_records() {
    perf_suite_writes_plausible_records("valkey-benchmark", 9150);
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
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "bench failed:\n{}", stderr(&out));
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
            "GET" => assert_eq!(r.params.preloaded_items, 1000),
            "RPOP" => {
                assert!(r.params.preloaded_items > r.params.requests + r.params.warmup_requests)
            }
            _ => assert_eq!(r.params.preloaded_items, 0),
        }
    }
    let run_ids: std::collections::BTreeSet<_> = records.iter().map(|r| &r.run_id).collect();
    assert_eq!(run_ids.len(), 1);

    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["complete"], true);
    assert_eq!(json["cases"].as_array().unwrap().len(), 6);
    let summary = fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(summary.contains("| GET/64B/P8/c10/io1 "), "{summary}");
    assert!(!summary.contains("incomplete"));
}

/// The report a run wrote into `dir`: the page, the Markdown and a PNG + SVG per chart,
/// with a chart whose name starts with each of `expected`. Returns the chart names.
fn assert_report(dir: &std::path::Path, expected: &[&str]) -> Vec<String> {
    let html = fs::read_to_string(dir.join("report.html")).expect("report.html");
    let markdown = fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(html.starts_with("<!DOCTYPE html>") && !html.contains("<script"));
    let mut names: Vec<String> = fs::read_dir(dir.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".png").map(str::to_string))
        .collect();
    names.sort();
    for name in &names {
        let png = fs::read(dir.join(format!("charts/{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
            "{name}.png"
        );
        let svg = fs::read_to_string(dir.join(format!("charts/{name}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{name}.svg");
        assert!(
            markdown.contains(&format!("(charts/{name}.png)")),
            "{name} not in report.md"
        );
        assert!(
            html.contains(&format!("<figure id=\"{name}\">")),
            "{name} not in report.html"
        );
    }
    for prefix in expected {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "no {prefix}* chart in {names:?}"
        );
    }
    names
}

fn chrono_like(ts: &str) -> bool {
    ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T') && ts.ends_with('Z')
}

#[test]
fn instances_skip_a_port_in_use_and_sigterm_stops_them() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (mut child, started) = start_instances(2, port, tmp.path());
    let instances = started["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    let ports: Vec<u64> = instances
        .iter()
        .map(|i| i["port"].as_u64().unwrap())
        .collect();
    assert!(
        ports.iter().all(|&p| p > u64::from(port)),
        "{ports:?} should skip {port}"
    );
    assert_ne!(ports[0], ports[1]);
    let pids: Vec<u32> = instances
        .iter()
        .map(|i| i["pid"].as_u64().unwrap() as u32)
        .collect();
    let mut found = servers_under(tmp.path());
    found.sort();
    let mut expected = pids.clone();
    expected.sort();
    assert_eq!(found, expected);

    let status = child.stop(Duration::from_secs(20));
    assert!(
        status.success(),
        "start should exit 0 when stopped: {status}"
    );
    assert!(
        pids.iter().all(|&p| !pid_alive(p)),
        "a server survived SIGTERM"
    );
    assert!(servers_under(tmp.path()).is_empty());
    drop(taken);
}

#[test]
fn sigint_during_a_bench_run_leaves_no_server_and_keeps_results_readable() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"SET\"]"),
            ("pipelines", "[1]"),
            ("repetitions", "3"),
            ("measure_seconds", "20.0"),
        ],
    );
    let out_dir = tmp.path().join("run");
    let mut child = xtask(
        &[
            "bench",
            "--suite-file",
            suite.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--base-port",
            "9200",
        ],
        Some(tmp.path()),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait for a measured repetition's server (the calibration server comes first).
    assert!(
        wait_until(Duration::from_secs(120), || servers_under(tmp.path()).len()
            == 1
            && fs::read_dir(tmp.path()).map(|d| d.count()).unwrap_or(0) > 0),
        "no server appeared"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let pids = servers_under(tmp.path());
    assert!(!pids.is_empty(), "the run should be measuring now");
    signal(&child, libc::SIGINT);
    let status = wait_with_limit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "interrupted runs exit 130");
    assert!(
        pids.iter().all(|&p| !pid_alive(p)),
        "a server survived SIGINT"
    );
    assert!(servers_under(tmp.path()).is_empty());
    // Whatever was written is whole.
    let text = fs::read_to_string(out_dir.join("results.jsonl")).unwrap_or_default();
    for line in text.lines() {
        serde_json::from_str::<ResultRecord>(line).expect("every line is a whole record");
    }
    let summary = fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(summary.contains("**incomplete**: interrupted"), "{summary}");
}

#[test]
fn sigkill_of_xtask_still_takes_its_servers_down() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, started) = start_instances(1, 9300, tmp.path());
    assert_eq!(servers_under(tmp.path()).len(), 1, "{started}");
    child.child.kill().unwrap(); // SIGKILL: no handler, no Drop; only PR_SET_PDEATHSIG is left
    child.child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || servers_under(tmp.path())
            .is_empty()),
        "the server outlived a SIGKILLed xtask"
    );
}

#[test]
fn a_panic_tears_down_the_instances_it_unwinds_through() {
    let server = server_path();
    let shutdown = Shutdown::new();
    let options = xtask::instances::Options {
        base_port: 9400,
        ..Default::default()
    };
    let pids = std::panic::catch_unwind(|| {
        let started = xtask::instances::start(&server, 2, &options, &shutdown).unwrap();
        let pids: Vec<u32> = started.iter().map(|i| i.pid()).collect();
        assert!(pids.iter().all(|&p| pid_alive(p)));
        std::panic::panic_any(pids);
    })
    .unwrap_err();
    let pids = pids.downcast::<Vec<u32>>().unwrap();
    assert_eq!(pids.len(), 2);
    assert!(
        pids.iter().all(|&p| !pid_alive(p)),
        "a server outlived the panic"
    );
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

#[test]
fn a_git_ref_builds_through_a_worktree_without_touching_the_checkout() {
    build_json(); // the pinned tarball is fetched and cached by now
    let manifest = xtask::valkey::Manifest::embedded();
    let pinned = manifest.get(&manifest.default).unwrap();
    let tarball =
        xtask::valkey::fetch::orig_tarball(pinned, &manifest, &xtask::project::cache_dir())
            .unwrap()
            .tarball;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("valkey");
    fs::create_dir(&repo).unwrap();
    sh(
        &repo,
        "tar",
        &["-xf", tarball.to_str().unwrap(), "--strip-components=1"],
    );
    sh(&repo, "git", &["init", "-q"]);
    // Upstream commits files its own .gitignore names (jemalloc's configure): force.
    sh(&repo, "git", &["add", "-A", "--force"]);
    // Fixed identity and dates: the same commit id every run, so CI builds it once.
    sh(&repo, "git", &["commit", "-q", "-m", "pinned tree"]);
    let commit = sh(&repo, "git", &["rev-parse", "HEAD"]);
    // Local state the build must not disturb: an unstaged edit and a staged new file.
    let server_c = repo.join("src/server.c");
    let edited = format!(
        "{}\n/* local edit */\n",
        fs::read_to_string(&server_c).unwrap()
    );
    fs::write(&server_c, &edited).unwrap();
    fs::write(repo.join("staged.txt"), "staged\n").unwrap();
    sh(&repo, "git", &["add", "staged.txt"]);
    let status_before = sh(&repo, "git", &["status", "--porcelain"]);

    let out = run(
        &[
            "build",
            "--json",
            "--valkey-src",
            repo.to_str().unwrap(),
            "--ref",
            "HEAD",
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["source_id"], format!("git:{commit}"));
    assert_eq!(built["version"], "8.1.1");
    assert_eq!(sh(&repo, "git", &["status", "--porcelain"]), status_before);
    assert_eq!(fs::read_to_string(&server_c).unwrap(), edited);
    assert_eq!(
        sh(&repo, "git", &["worktree", "list"]).lines().count(),
        1,
        "scratch worktree left registered"
    );

    // A revision that does not exist is refused before anything is built.
    let out = run(
        &[
            "build",
            "--json",
            "--valkey-src",
            repo.to_str().unwrap(),
            "--ref",
            "HEAD~1",
        ],
        Some(tmp.path()),
    );
    assert_eq!(out.status.code(), Some(2), "a missing commit is bad input");
    assert!(stderr(&out).contains("HEAD~1"), "{}", stderr(&out));
}

/// Runs a program in `dir` with a fixed git identity and dates; returns trimmed stdout.
fn sh(dir: &std::path::Path, program: &str, args: &[&str]) -> String {
    #[allow(clippy::disallowed_methods)] // test fixture setup, not a server
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A source tree whose build fails with `message` in its compiler error.
fn broken_tree(dir: &std::path::Path, message: &str) -> std::path::PathBuf {
    let tree = dir.join("broken");
    fs::create_dir_all(tree.join("src")).unwrap();
    fs::write(tree.join("src/server.c"), format!("#error {message}\n")).unwrap();
    fs::write(
        tree.join("Makefile"),
        ".make-prerequisites all:\n\tcc -c src/server.c -o src/server.o\n",
    )
    .unwrap();
    tree
}

#[test]
fn a_failed_build_shows_its_log_tail_and_caches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = broken_tree(tmp.path(), "deliberate failure for the test");
    for attempt in 1..=2 {
        let out = run(
            &["build", "--json", "--valkey-src", tree.to_str().unwrap()],
            Some(tmp.path()),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "attempt {attempt}: {err}");
        assert!(
            err.contains("last lines of the build log"),
            "attempt {attempt}: {err}"
        );
        assert!(
            err.contains("deliberate failure for the test"),
            "attempt {attempt}: {err}"
        );
        assert!(out.stdout.is_empty(), "no JSON for a failed build");
    }
}

#[test]
fn concurrent_builds_of_one_key_build_once() {
    // A stand-in source tree whose make is instant and counts its runs: this tests the
    // cache and its lock, not Valkey (the other tests build the real thing).
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tiny");
    fs::create_dir_all(tree.join("src")).unwrap();
    let salt = format!("{:?}", std::time::SystemTime::now()); // a fresh cache key per test run
    fs::write(tree.join("src/server.c"), format!("/* {salt} */\n")).unwrap();
    let counter = tmp.path().join("make-runs");
    let script = "#!/bin/sh\\necho \\\"Valkey server v=0.0.0-test sha=0\\\"\\n";
    fs::write(
        tree.join("Makefile"),
        format!(
            ".make-prerequisites:\n\t@true\nall:\n\techo run >> {counter}\n\tsleep 1\n\
             \tfor b in server cli benchmark; do printf '{script}' > src/valkey-$$b; chmod +x src/valkey-$$b; done\n",
            counter = counter.display()
        ),
    )
    .unwrap();
    let args = [
        "build",
        "--json",
        "--malloc",
        "libc",
        "--valkey-src",
        tree.to_str().unwrap(),
    ];
    let children: Vec<_> = (0..3)
        .map(|_| {
            xtask(&args, Some(tmp.path()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut cached = Vec::new();
    let mut entry = None;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let built: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(built["version"], "0.0.0-test");
        cached.push(built["cached"].as_bool().unwrap());
        // <cache>/builds/<key>/bin/valkey-server
        let server = std::path::PathBuf::from(built["server"].as_str().unwrap());
        entry = server
            .parent()
            .and_then(|bin| bin.parent())
            .map(|e| e.to_path_buf());
    }
    if let Some(entry) = entry {
        fs::remove_dir_all(&entry).unwrap(); // this test's salted key is never used again
        let _ = fs::remove_file(entry.with_extension("lock"));
    }
    cached.sort();
    assert_eq!(cached, [false, true, true], "one build, two cache hits");
    assert_eq!(
        fs::read_to_string(&counter).unwrap().lines().count(),
        1,
        "make ran more than once"
    );
}

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
    let (tmp, mut server, _, port) = one_server(9600);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut control = bench_core::client::Client::connect(addr, Duration::from_secs(5)).unwrap();
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
    let (tmp, mut server, _, port) = one_server(9650);
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
    let (tmp, mut server, started, port) = one_server(9700);
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
    assert_eq!(status.code(), Some(1), "{err}");
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
            "9750",
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

/// Every record of a results file, as the suite's record type.
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Vec<T> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
        9800,
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
        base_port: 9850,
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
        9900,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
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
        9950,
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
        9980,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not finish within 3 s"), "{err}");
    assert!(err.contains("master_link_status: down"), "{err}");
    assert!(
        servers_under(tmp.path()).is_empty(),
        "servers left after a sync timeout"
    );
    let summary = fs::read_to_string(tmp.path().join("run/summary.md")).unwrap();
    assert!(summary.contains("**incomplete**: failed"), "{summary}");
}

/// `compare` of the pinned build against itself on GET/32B/P16 of the quick matrix: exit 0
/// and the JSON report.
fn compare_a_with_a(tmp: &std::path::Path, out_dir: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "compare",
        "--baseline",
        "8.1.1",
        "--candidate",
        "8.1.1",
        "--quick",
        "--cases",
        "GET/32B/P16",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args, Some(tmp));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn compare_a_against_a_finds_no_regression() {
    let _machine = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let markdown = tmp.path().join("pr.md");
    // A threshold of 5%: this tests the plumbing and the exit code; the false-alarm rate at
    // the default 2% is measured by the detector benchmark (README).
    // Where perf can record, the compare also profiles its case on both sides.
    let perf = perf_unusable();
    if let Some(why) = &perf {
        cannot_run("perf", &format!("compare --flamegraph: {why}"));
    }
    let mut args = vec![
        "--slice-seconds",
        "0.05",
        "--max-time",
        "20s",
        "--threshold",
        "5",
        "--markdown",
        markdown.to_str().unwrap(),
    ];
    if perf.is_none() {
        args.extend(["--flamegraph", "all"]);
    }
    let report = compare_a_with_a(tmp.path(), &out_dir, &args);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    let case = &cases[0];
    assert_eq!(case["case"], "GET/32B/P16/c50/io1");
    assert_ne!(case["verdict"], "regression");
    // At least the minimum of trials, each of six slice pairs, orders rotating.
    let trials = case["trials"].as_array().unwrap();
    let trial_count = trials.last().unwrap()["trial"].as_u64().unwrap();
    assert!(trial_count >= 6, "{trial_count} trials");
    assert_eq!(trials.len() as u64, trial_count * 6);
    let orders: std::collections::BTreeSet<&str> = trials
        .iter()
        .map(|t| t["order"].as_str().unwrap())
        .collect();
    assert_eq!(orders.len(), 2, "both AB and BA orders ran");
    let ops = &case["metrics"][0];
    assert_eq!(ops["metric"], "ops_per_sec");
    let c = &ops["comparison"];
    assert_eq!(c["pairs"].as_u64(), Some(trial_count));
    let (low, high) = (
        c["ci_low"].as_f64().unwrap(),
        c["ci_high"].as_f64().unwrap(),
    );
    assert!(low <= c["ratio"].as_f64().unwrap() && c["ratio"].as_f64().unwrap() <= high);
    assert!(
        case["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["metric"] == "server_cpu_us_per_request")
    );
    // Every slice is a result record on its side; the summaries are on disk.
    for side in ["baseline", "candidate"] {
        let records: Vec<bench_core::result::ResultRecord> =
            read_jsonl(&out_dir.join(side).join("results.jsonl"));
        assert_eq!(records.len() as u64, trial_count * 6, "{side}");
        assert!(records.iter().all(|r| r.metrics.ops_per_sec > 1000.0));
    }
    let md = fs::read_to_string(&markdown).unwrap();
    assert!(
        md.starts_with("## valkey-bench compare: **no regression**"),
        "{md}"
    );
    assert!(!md.contains('<'), "no raw HTML in the PR summary");
    assert_eq!(md, fs::read_to_string(out_dir.join("compare.md")).unwrap());
    assert!(servers_under(tmp.path()).is_empty(), "no server survives");
    // The compare's report: verdicts and both sides' records.
    assert_report(&out_dir, &["compare-", "throughput", "latency-get"]);
    let html = fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("out/baseline") && html.contains("out/candidate"));
    if perf.is_none() {
        let flames = out_dir.join("flamegraphs");
        let index: Value =
            serde_json::from_str(&fs::read_to_string(flames.join("index.json")).unwrap()).unwrap();
        assert_eq!(index[0]["case"], "GET/32B/P16/c50/io1");
        let stem = index[0]["stem"].as_str().unwrap();
        let diff = fs::read_to_string(flames.join(format!("{stem}.diff.svg"))).unwrap();
        assert!(
            diff.contains("processCommand"),
            "Valkey's frames in the diff"
        );
        let movers = fs::read_to_string(flames.join(format!("{stem}.movers.md"))).unwrap();
        assert!(movers.lines().count() > 3, "{movers}");
        assert!(html.contains(&format!("href=\"flamegraphs/{stem}.diff.svg\"")));
        assert!(html.contains("Where the time moved"));
    }
}

#[test]
fn compare_flamegraph_outside_the_perf_suite_is_refused() {
    let out = run(
        &[
            "compare",
            "--baseline",
            "8.1.1",
            "--candidate",
            "8.1.1",
            "--suite",
            "mem",
            "--flamegraph",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--flamegraph profiles perf cases"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn compare_with_an_unbuildable_candidate_exits_2_with_the_build_log() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = broken_tree(tmp.path(), "deliberately unbuildable candidate");
    let out = run(
        &[
            "compare",
            "--baseline",
            "8.1.1",
            "--candidate",
            tree.to_str().unwrap(),
            "--out",
            tmp.path().join("out").to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("could not run"), "{err}");
    assert!(err.contains("building the candidate"), "{err}");
    assert!(err.contains("last lines of the build log"), "{err}");
    assert!(err.contains("deliberately unbuildable candidate"), "{err}");
    // A spec that is neither a version, a directory nor a revision: exit 2, naming it.
    let out = run(
        &[
            "compare",
            "--baseline",
            "8.1.1",
            "--candidate",
            "no-such-thing",
        ],
        Some(tmp.path()),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--candidate \"no-such-thing\""), "{err}");
}

#[test]
fn compare_instructions_mode_counts_the_same_build_alike() {
    let _machine = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let report = compare_a_with_a(tmp.path(), &out_dir, &["--mode", "instructions"]);
    let case = &report["cases"][0];
    assert_eq!(case["verdict"], "no_change", "{case}");
    let c = &case["metrics"][0]["comparison"];
    // A GET costs the server thousands of instructions, not tens or millions.
    let base = c["baseline_median"].as_f64().unwrap();
    assert!((1_000.0..20_000.0).contains(&base), "{base}");
    // Every process of either side counts within 1% of the others.
    let mut all = Vec::new();
    for side in ["baseline", "candidate"] {
        let trial = &case["trials"][0][side];
        for run in 1..=3 {
            all.push(
                trial[format!("run{run}_instructions_per_request")]
                    .as_f64()
                    .unwrap(),
            );
        }
    }
    let (min, max) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let mut pinned = true;
    for side in ["baseline", "candidate"] {
        let lines = fs::read_to_string(out_dir.join(side).join("results.jsonl")).unwrap();
        let record: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(record["mode"], "instructions");
        assert_eq!(record["instructions"].as_array().unwrap().len(), 3);
        pinned &= record["hash_seed_pinned"] == true;
    }
    // With the hash seed pinned (root) the counts repeat almost exactly; without, the
    // seed moves them by a few tenths of a percent.
    let tolerance = if pinned { 1.0001 } else { 1.01 };
    assert!(max / min < tolerance, "pinned {pinned}: {all:?}");
    assert!(servers_under(tmp.path()).is_empty(), "no server survives");
}

#[test]
fn compare_mem_suite_of_one_build_is_no_change() {
    let _machine = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out = run(
        &[
            "compare",
            "--suite",
            "mem",
            "--quick",
            "--cases",
            "string/k16/v16",
            "--baseline",
            "8.1.1",
            "--candidate",
            "8.1.1",
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["suite"], "mem");
    let case = &report["cases"][0];
    assert_eq!(case["case"], "string/k16/v16");
    assert_eq!(case["verdict"], "no_change", "{case}");
    let c = &case["metrics"][0]["comparison"];
    assert_eq!(case["metrics"][0]["metric"], "bytes_per_item");
    // The same build stores the same items in (almost) the same bytes.
    assert!((c["ratio"].as_f64().unwrap() - 1.0).abs() < 0.005, "{c}");
    let records: Vec<bench_core::result::MemRecord> =
        read_jsonl(&out_dir.join("candidate").join("results.jsonl"));
    assert_eq!(records.len(), 6, "one record per trial");
    assert!(servers_under(tmp.path()).is_empty(), "no server survives");
    assert_report(&out_dir, &["compare-", "memory"]);
}

#[test]
fn report_draws_several_runs_together_and_refuses_a_bad_directory() {
    // Two runs of the recorded fixtures: one colour each, one page.
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = workspace_root().join("bench-core/tests/fixtures/report");
    for (run, file) in [
        ("perf-a", "perf.jsonl"),
        ("perf-b", "perf.jsonl"),
        ("mem", "mem.jsonl"),
    ] {
        let dir = tmp.path().join(run);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(fixtures.join(file), dir.join("results.jsonl")).unwrap();
    }
    let out_dir = tmp.path().join("report");
    let dirs = ["perf-a", "perf-b", "mem"].map(|d| tmp.path().join(d));
    let mut args = vec!["report", "--json", "--out", out_dir.to_str().unwrap()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let out = run(&args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let written: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        written["charts"].as_array().unwrap().len() % 2,
        0,
        "svg + png"
    );
    assert_report(
        &out_dir,
        &["throughput", "latency-get", "series-", "memory"],
    );
    let svg = fs::read_to_string(out_dir.join("charts/throughput.svg")).unwrap();
    assert!(
        svg.contains("8.1.1 (perf-a)") && svg.contains("8.1.1 (perf-b)"),
        "a legend entry per run"
    );

    let missing = tmp.path().join("nope");
    let out = run(&["report", missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let out = run(&["report", empty.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no results.jsonl"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn compare_sync_suite_of_one_build_finds_no_regression() {
    let _machine = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    // A 10% threshold: this checks the plumbing; full-sync times of one build vary by a
    // few percent between trials.
    let out = run(
        &[
            "compare",
            "--suite",
            "sync",
            "--quick",
            "--cases",
            "16MiB/r1/disk/",
            "--baseline",
            "8.1.1",
            "--candidate",
            "8.1.1",
            "--threshold",
            "10",
            "--max-time",
            "30s",
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["suite"], "sync");
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_ne!(cases[0]["verdict"], "regression", "{}", cases[0]);
    assert_eq!(cases[0]["metrics"][0]["metric"], "sync_secs");
    let pairs = cases[0]["metrics"][0]["comparison"]["pairs"]
        .as_u64()
        .unwrap();
    assert!(pairs >= 6, "{pairs} pairs");
    for side in ["baseline", "candidate"] {
        let records: Vec<bench_core::result::SyncRecord> =
            read_jsonl(&out_dir.join(side).join("results.jsonl"));
        assert_eq!(records.len() as u64, pairs, "{side}: one record per trial");
        assert!(
            records
                .iter()
                .all(|r| r.metrics.keys_replica == r.metrics.keys_primary)
        );
    }
    assert!(servers_under(tmp.path()).is_empty(), "no server survives");
    assert_report(&out_dir, &["compare-", "sync"]);
}

/// Whether `perf` can record here; the reason when it cannot.
fn perf_unusable() -> Option<String> {
    #[allow(clippy::disallowed_methods)] // a probe of the machine, not of xtask
    let out = std::process::Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .output();
    match out {
        Err(e) => Some(format!("perf cannot run: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "perf record fails here: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Ok(_) => None,
    }
}

#[test]
fn flamegraph_with_io_threads_and_a_diff_shows_valkey_functions() {
    if let Some(why) = perf_unusable() {
        cannot_run("perf", &format!("flamegraph: {why}"));
        return;
    }
    let _machine = heavy();
    let version = build_json()["version"].as_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("out/fg.svg");
    let out = run(
        &[
            "flamegraph",
            "--command",
            "GET",
            "--keyspace",
            "1000",
            "--pipeline",
            "16",
            "--io-threads",
            "2",
            "--warmup",
            "0.3",
            "--duration",
            "1",
            "--diff",
            &version,
            "--base-port",
            "9760",
            "--json",
            "--out",
            svg.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<?xml") && text.contains("</svg>"));
    assert!(
        text.contains("processCommand"),
        "the server's own frames are there"
    );
    assert!(
        text.contains(&format!("valkey-server {version}")),
        "titled with the version"
    );
    assert!(
        text.contains("GET: 50 connections"),
        "titled with the workload"
    );
    let threads: Vec<&str> = report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[0].as_str().unwrap())
        .collect();
    assert!(threads.contains(&"valkey-server"), "{threads:?}");
    assert!(threads.contains(&"I/O threads"), "{threads:?}");
    let top = report["top"].as_array().unwrap();
    assert!(!top.is_empty());
    let shares: f64 = top
        .iter()
        .map(|f| f["self_percent"].as_f64().unwrap())
        .sum();
    assert!(shares > 0.0 && shares <= 100.0 + 1e-6, "{shares}");
    let folded = fs::read_to_string(tmp.path().join("out/fg.folded")).unwrap();
    assert!(folded.lines().all(|l| {
        l.rsplit_once(' ')
            .is_some_and(|(_, n)| n.parse::<u64>().is_ok())
    }));
    assert!(
        fs::read_to_string(tmp.path().join("out/fg.top.md"))
            .unwrap()
            .contains("| function |")
    );
    let diff = fs::read_to_string(tmp.path().join("out/fg.diff.svg")).unwrap();
    assert!(diff.contains("processCommand") && diff.contains("against"));
    assert!(tmp.path().join("out/fg.baseline.svg").is_file());
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn flamegraph_under_callgrind_counts_instructions() {
    let _machine = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("cg.svg");
    let out = run(
        &[
            "flamegraph",
            "--profiler",
            "callgrind",
            "--command",
            "SET",
            "--keyspace",
            "1000",
            "--pipeline",
            "16",
            "--warmup",
            "0.5",
            "--duration",
            "1",
            "--base-port",
            "9770",
            "--json",
            "--out",
            svg.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["count_name"], "instructions");
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.contains("processCommand") && text.contains("setCommand"));
    assert!(
        text.contains("callgrind"),
        "the subtitle says how it was recorded"
    );
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn flamegraph_without_perf_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    let out = xtask(&["flamegraph", "--duration", "1"], None)
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("perf is not installed"), "{err}");
    assert!(err.contains("apt-get install linux-perf"), "{err}");
    assert!(err.contains("--profiler callgrind"), "{err}");
}

#[test]
fn flamegraph_where_perf_event_paranoid_forbids_it_says_how_to_allow_it() {
    use std::os::unix::fs::PermissionsExt;
    let paranoid: i32 = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(-1);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || paranoid <= 1 || !std::path::Path::new("/usr/sbin/runuser").exists() {
        let why = format!("needs root, runuser and perf_event_paranoid > 1 (it is {paranoid})");
        cannot_run("paranoid", &why);
        return;
    }
    // Run as `nobody` from a copy it can read; the check comes before any build.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("xtask");
    fs::copy(xtask_bin(), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    #[allow(clippy::disallowed_methods)] // running xtask as another user
    let out = std::process::Command::new("/usr/sbin/runuser")
        .args(["-u", "nobody", "--"])
        .arg(&bin)
        .args(["flamegraph", "--duration", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("perf_event_paranoid is {paranoid}")),
        "{err}"
    );
    assert!(err.contains("sysctl kernel.perf_event_paranoid=1"), "{err}");
}
