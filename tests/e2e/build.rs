//! Building Valkey: `build --json` and the cache, a `--ref` through a git worktree, a failed
//! build's log, concurrent builds of one cache key.

use std::fs;
use std::process::Stdio;

use serde_json::Value;

use crate::util::*;

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
fn a_git_ref_builds_through_a_worktree_without_touching_the_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = pinned_tree(&tmp.path().join("valkey"));
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
        assert_eq!(out.status.code(), Some(2), "attempt {attempt}: {err}");
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
    let salt = format!("{:?}", std::time::SystemTime::now()); // a fresh cache key per test run
    let counter = tmp.path().join("make-runs");
    let tree = stand_in_tree(
        &tmp.path().join("tiny"),
        "test",
        &salt,
        &format!("\techo run >> {}\n\tsleep 1\n", counter.display()),
    );
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
