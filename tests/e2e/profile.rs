//! `cargo xtask flamegraph`: perf with I/O threads and `--diff`, callgrind, and the
//! messages when perf is missing or forbidden; a flame graph of a cluster's primary.

use std::fs;

use serde_json::Value;

use crate::util::*;

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
            &ports(8).to_string(),
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
            &ports(8).to_string(),
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

#[test]
fn a_flame_graph_of_a_cluster_profiles_a_primary_under_cluster_routed_load() {
    if let Some(why) = perf_unusable() {
        cannot_run("perf", &format!("flamegraph: {why}"));
        return;
    }
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("fg").join("flame.svg");
    let base = ports(8).to_string();
    let out = run(
        &[
            "flamegraph",
            "--topology",
            "cluster:2x0",
            "--command",
            "GET {key}",
            "--duration",
            "2",
            "--warmup",
            "0.3",
            "--base-port",
            &base,
            "--out",
            svg.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Only a server in cluster mode looks up each key's node (getNodeByQuery, under
    // processCommand): the profile is of a cluster primary under routed load.
    let folded = std::fs::read_to_string(svg.with_extension("folded")).unwrap();
    assert!(folded.contains("getNodeByQuery"), "{folded:.2000}");
    assert!(servers_under(tmp.path()).is_empty());
    let refused = run(
        &[
            "flamegraph",
            "--topology",
            "cluster:2x0",
            "--profiler",
            "callgrind",
        ],
        Some(tmp.path()),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--profiler perf"));
}
