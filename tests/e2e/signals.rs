//! Teardown: ports in use are skipped, and SIGTERM, SIGINT, SIGKILL of xtask and a panic
//! all leave no server behind; a reader that closes the pipe early ends a listing quietly.

use std::fs;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use bench_core::result::ResultRecord;
use bench_core::shutdown::Shutdown;

use crate::util::*;

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
            &ports(8).to_string(),
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
    let (mut child, started) = start_instances(1, ports(1), tmp.path());
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
        base_port: ports(4),
        ..Default::default()
    };
    // The options (their TLS configuration's trait objects) are not UnwindSafe; the
    // closure only reads them, and nothing is used after the unwind but the pids.
    let pids = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let started = xtask::instances::start(&server, 2, &options, &shutdown).unwrap();
        let pids: Vec<u32> = started.iter().map(|i| i.pid()).collect();
        assert!(pids.iter().all(|&p| pid_alive(p)));
        std::panic::panic_any(pids);
    }))
    .unwrap_err();
    let pids = pids.downcast::<Vec<u32>>().unwrap();
    assert_eq!(pids.len(), 2);
    assert!(
        pids.iter().all(|&p| !pid_alive(p)),
        "a server outlived the panic"
    );
}

/// `queue list --json | head -c 100`: the reader leaves early, the listing stops quietly,
/// no panic, with exit 141 as a tool SIGPIPE killed (Rust ignores SIGPIPE, so the next
/// write fails): not 0, which would pass a `pipefail` job whose outcome was never reached.
#[test]
fn a_listing_whose_reader_leaves_early_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp.path().join("q");
    // 1000 tasks list to about 330 KB: more than a pipe holds, so a write must fail.
    crate::queue::queue_add(
        &queue,
        "bench",
        &["--quick", "--commands", "GET", "--value-sizes", "1..1000"],
    );
    let mut child = xtask(
        &[
            "queue",
            "--queue",
            queue.to_str().unwrap(),
            "list",
            "--json",
        ],
        None,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        first.starts_with(b"{"),
        "{}",
        String::from_utf8_lossy(&first)
    );
}
