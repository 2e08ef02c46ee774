//! `cargo xtask report` of several runs, and of a directory that is not a run.

use std::fs;

use serde_json::Value;

use crate::util::*;

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
    // A throughput chart per pipeline depth (the fixtures have P1 and P16).
    assert!(out_dir.join("charts/throughput-p1.svg").is_file());
    let svg = fs::read_to_string(out_dir.join("charts/throughput-p16.svg")).unwrap();
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
