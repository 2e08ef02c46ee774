//! What `compare`'s default mode may call, on planted changes whose truth we know: a
//! count says *that* a case changed, time says *which way*. A system call planted on the
//! command path (kernel time, a handful of instructions) is a regression named as a
//! kernel-side change; the same tree against a candidate that replaced the call with a
//! short busy loop (more instructions, less time) is never a regression.

use serde_json::Value;

use crate::util::*;

/// Builds a planted tree (outside the heavy lock: a build is not a measurement).
fn build(tree: &std::path::Path, tmp: &std::path::Path) {
    let built = run(
        &["build", "--json", "--valkey-src", tree.to_str().unwrap()],
        Some(tmp),
    );
    assert!(built.status.success(), "{}", stderr(&built));
}

/// `compare` on GET/32B/P16 of the quick matrix in the default mode, `env` set for both
/// sides' servers; the exit code and the JSON report.
fn compare(
    tmp: &std::path::Path,
    baseline: &str,
    candidate: &str,
    env: &[(&str, &str)],
) -> (Option<i32>, Value, String) {
    let out_dir = tmp.join("out");
    let mut cmd = xtask(
        &[
            "compare",
            "--baseline",
            baseline,
            "--candidate",
            candidate,
            "--quick",
            "--cases",
            "GET/32B/P16",
            "--slice-seconds",
            "0.05",
            "--max-time",
            "150s",
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
        ],
        Some(tmp),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {err}"));
    assert!(servers_under(tmp).is_empty(), "no server survives");
    (out.status.code(), report, err)
}

/// The metric of a case by key.
fn metric<'a>(case: &'a Value, key: &str) -> &'a Value {
    case["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == key)
        .unwrap_or_else(|| panic!("no {key} in {case}"))
}

/// Four `getppid` calls per command against the clean tree: instructions move by about
/// 1% (the calls' user-space side), the count of getppid by exactly 4 per request, time
/// says slower, and the run names it a kernel-side change; exit 1.
#[test]
fn a_planted_system_call_is_a_regression_named_kernel_side() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = syscall_tree(tmp.path());
    build(&tree, tmp.path());
    let _machine = heavy();
    let (code, report, err) = compare(
        tmp.path(),
        "8.1.1",
        tree.to_str().unwrap(),
        &[("VB_SYSCALLS", "4")],
    );
    assert_eq!(code, Some(1), "a planted system call is slower: {err}");
    let case = &report["cases"][0];
    assert_eq!(case["verdict"], "regression", "{case}");
    let instructions = metric(case, "instructions_per_request");
    let ratio = instructions["comparison"]["ratio"].as_f64().unwrap();
    assert!(
        ratio < 1.03,
        "a system call is a handful of instructions: {instructions}"
    );
    let calls = &metric(case, "syscalls_per_request.getppid")["comparison"];
    let added =
        calls["candidate_median"].as_f64().unwrap() - calls["baseline_median"].as_f64().unwrap();
    assert!((added - 4.0).abs() < 0.01, "exactly 4 per request: {calls}");
    // Time decided it; the sys CPU metric is recorded beside it.
    let ops = metric(case, "ops_per_sec");
    assert!(ops["comparison"]["ratio"].as_f64().unwrap() < 1.0, "{ops}");
    metric(case, "server_sys_us_per_request");
    let note = case["note"].as_str().unwrap();
    assert!(
        note.contains("kernel-side change: getppid +4.00/req"),
        "{note}"
    );
    let findings = report["findings"].to_string();
    assert!(findings.contains("kernel-side change"), "{findings}");
    let md = std::fs::read_to_string(tmp.path().join("out/compare.md")).unwrap();
    assert!(
        md.starts_with("## valkey-bench compare: **1 regression(s); kernel-side change**"),
        "{md}"
    );
}

/// The system call in the baseline, a short busy loop in its place in the candidate (20
/// iterations: about 100 instructions more than a getppid call, and less time): the
/// instruction count rises, the system calls fall, and compare must call it an
/// improvement or leave it inconclusive, never a regression (exit 0 or 3, never 1).
#[test]
fn more_instructions_in_less_time_is_never_a_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let syscalls = syscall_tree(tmp.path());
    let slowed = slowed_tree(tmp.path());
    build(&syscalls, tmp.path());
    build(&slowed, tmp.path());
    let _machine = heavy();
    let (code, report, err) = compare(
        tmp.path(),
        syscalls.to_str().unwrap(),
        slowed.to_str().unwrap(),
        &[("VB_SYSCALLS", "1"), ("VB_SLOWDOWN_ITERS", "20")],
    );
    let case = &report["cases"][0];
    assert!(
        matches!(code, Some(0) | Some(3)),
        "exit {code:?}: more instructions in less time is no regression: {case}\n{err}"
    );
    assert!(
        ["improvement", "inconclusive"].contains(&case["verdict"].as_str().unwrap()),
        "{case}"
    );
    // The screen saw both changes, and said so as changes.
    let instructions = &metric(case, "instructions_per_request")["comparison"];
    assert!(
        instructions["ratio"].as_f64().unwrap() > 1.005,
        "more instructions: {instructions}"
    );
    let calls = &metric(case, "syscalls_per_request.getppid")["comparison"];
    assert_eq!(calls["candidate_median"].as_f64(), Some(0.0), "{calls}");
    assert_eq!(case["screen"], "moved", "{case}");
    // The instruction rise (+2.6%) is in the median above; whether it also counts as a
    // change depends on the processes' spread, which a loaded machine can widen (a process
    // that takes an extra event-loop pass per batch, +2.8%, was seen in 2 of 5 runs with a
    // core kept busy), so the note is asked only for the exact system-call change.
    let note = case["note"].as_str().unwrap();
    assert!(
        note.starts_with("changed: ") && note.contains("getppid -1.00/req"),
        "{note}"
    );
    let findings = report["findings"].to_string();
    assert!(
        findings.contains("a count says that a case changed, not which way"),
        "{findings}"
    );
}
