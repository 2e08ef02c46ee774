//! CPU pinning on real servers from our build: a pinned server and generator threads as
//! `/proc` sees them, the placement in records, and the lists that must be refused.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bench_core::result::ResultRecord;

use crate::util::*;

/// `Cpus_allowed_list` of a process or thread's `/proc` status.
fn cpus_allowed(status: &Path) -> String {
    std::fs::read_to_string(status)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn pinned_servers_and_generator_threads_run_on_their_cpus() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    // The server: Valkey's own affinity settings, visible in /proc.
    let base = ports(4).to_string();
    let (mut server, started) =
        start_with(&["--server-cpus", "1", "--base-port", &base], tmp.path());
    let pid = started["instances"][0]["pid"].as_u64().unwrap();
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    assert_eq!(cpus_allowed(Path::new(&format!("/proc/{pid}/status"))), "1");
    // The generator: every worker thread on CPU 0 while it runs.
    let spec = bench_core::workload::WorkloadSpec::single("GET {key}", 1000, 8);
    let options = bench_core::loadgen::RunOptions {
        connections: 4,
        pipeline: 4,
        threads: 2,
        rate: None,
        stop: bench_core::loadgen::Stop::Duration(Duration::from_millis(1500)),
        warmup: Duration::ZERO,
        cluster: None,
        cpus: vec![0],
        tls: None,
        share: None,
        start_at: None,
    };
    let mut seen = Vec::new();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    bench_core::loadgen::run(
        &[addr],
        &spec,
        &options,
        &bench_core::shutdown::Shutdown::new(),
        |_| {
            for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if comm.starts_with("loadgen-") {
                    seen.push((
                        comm.trim().to_string(),
                        cpus_allowed(&task.path().join("status")),
                    ));
                }
            }
        },
    )
    .unwrap();
    assert!(seen.iter().any(|(c, _)| c == "loadgen-0"), "{seen:?}");
    assert!(seen.iter().any(|(c, _)| c == "loadgen-1"), "{seen:?}");
    assert!(seen.iter().all(|(_, cpus)| cpus == "0"), "{seen:?}");
    assert_eq!(server.stop(Duration::from_secs(20)).code(), Some(0));
    // A pinned perf run records its placement, and no warning says they share CPUs.
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"GET\"]"),
            ("pipelines", "[4]"),
            ("repetitions", "1"),
        ],
    );
    let (out, out_dir) = bench_in(
        tmp.path(),
        &[
            "--suite-file",
            suite.to_str().unwrap(),
            "--server-cpus",
            "1",
            "--client-cpus",
            "0",
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("share CPUs"), "{err}");
    let records: Vec<ResultRecord> = read_jsonl(&out_dir.join("results.jsonl"));
    let p = &records[0].params.placement;
    assert_eq!(
        (
            p.server_cpus.as_ref().unwrap().to_string(),
            p.client_cpus.as_ref().unwrap().to_string()
        ),
        ("1".to_string(), "0".to_string())
    );
    assert_eq!(
        records[0].params.server_config.get("server-cpulist"),
        None,
        "the case's own config"
    );
}

#[test]
fn overlapping_or_absent_cpus_are_refused() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            vec!["--server-cpus", "0", "--client-cpus", "0"],
            "both name CPU 0",
        ),
        (
            vec!["--server-cpus", "4095"],
            "not available to this process",
        ),
        (vec!["--client-cpus", "1-0"], "runs backwards"),
        (
            vec!["--server-config", "server-cpulist=0"],
            "server-cpulist",
        ),
    ] {
        let mut all = vec!["bench", "--quick"];
        all.extend(args.iter().copied());
        let out = run(&all, Some(tmp.path()));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(servers_under(tmp.path()).is_empty());
}
