//! Where Valkey comes from: pinned tarballs fetched into an empty cache, and a release
//! tarball the user already has (`--valkey-tarball`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// The break this catches: Debian replaced the pinned revision, and a warm cache hid it.
/// Every pinned version is fetched (not built) into a cache directory that starts empty.
#[test]
fn every_pinned_version_fetches_into_an_empty_cache() {
    let cache = tempfile::tempdir().unwrap();
    let out = xtask(&["fetch", "--json"], None)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "fetch failed: {}", stderr(&out));
    let fetched: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let manifest = xtask::valkey::Manifest::embedded();
    assert_eq!(fetched.len(), manifest.versions.len(), "{fetched:?}");
    for (pinned, got) in manifest.versions.iter().zip(&fetched) {
        assert_eq!(got["version"], pinned.version.as_str());
        assert!(
            got["revision"].is_string(),
            "{}: the cache was empty, so it came from a Debian revision: {got}",
            pinned.version
        );
        let tarball = PathBuf::from(got["tarball"].as_str().unwrap());
        assert!(tarball.starts_with(cache.path()), "{}", tarball.display());
        assert_eq!(
            xtask::valkey::fetch::sha256_file(&tarball).unwrap(),
            pinned.sha256,
            "{}",
            pinned.version
        );
    }
    // Nothing but the verified tarballs is left in the sources directory.
    for pinned in &manifest.versions {
        let dir = cache
            .path()
            .join("valkey-bench/sources")
            .join(&pinned.version);
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![pinned.orig_tarball.as_str()],
            "{}",
            dir.display()
        );
    }
}

/// A tarball of a stand-in tree whose make is instant and writes version-printing
/// binaries: this tests the tarball path and its cache key, not Valkey.
fn tiny_tarball(dir: &Path, salt: &str) -> PathBuf {
    let tree = stand_in_tree(&dir.join("valkey-0.0.0"), "tarball", salt, "");
    let tarball = dir.join("valkey-0.0.0.tar.gz");
    tar(dir, &["-czf", "valkey-0.0.0.tar.gz", "valkey-0.0.0"]);
    fs::remove_dir_all(&tree).unwrap();
    tarball
}

fn tar(dir: &Path, args: &[&str]) {
    #[allow(clippy::disallowed_methods)] // test fixture setup, not a server
    let status = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "tar {args:?}");
}

#[test]
fn a_release_tarball_builds_offline_under_its_content_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let salt = format!("{:?}", std::time::SystemTime::now()); // a fresh cache key per run
    let tarball = tiny_tarball(tmp.path(), &salt);
    let sha256 = xtask::valkey::fetch::sha256_file(&tarball).unwrap();
    let args = [
        "build",
        "--json",
        "--malloc",
        "libc",
        "--valkey-tarball",
        tarball.to_str().unwrap(),
    ];
    let out = run(&args, Some(tmp.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["version"], "0.0.0-tarball");
    assert_eq!(built["source_id"], format!("tarball:{}", &sha256[..16]));
    assert_eq!(built["cached"], false);
    let again: Value = serde_json::from_slice(&run(&args, Some(tmp.path())).stdout).unwrap();
    assert_eq!(again["cached"], true, "the same bytes are the same build");
    let entry = Path::new(built["server"].as_str().unwrap())
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    fs::remove_dir_all(&entry).unwrap(); // this test's salted key is never used again
    let _ = fs::remove_file(entry.with_extension("lock"));
}

#[test]
fn a_tarball_that_is_not_valkey_or_comes_with_another_source_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("other/docs")).unwrap();
    fs::write(tmp.path().join("other/docs/README"), "not valkey\n").unwrap();
    tar(tmp.path(), &["-czf", "other.tar.gz", "other"]);
    fs::write(tmp.path().join("garbage.tar.gz"), "not a tarball\n").unwrap();
    let tiny = tiny_tarball(tmp.path(), "conflict");
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--valkey-tarball", "other.tar.gz"],
            "not a Valkey source tarball",
        ),
        (
            vec!["--valkey-tarball", "garbage.tar.gz"],
            "tar cannot read it",
        ),
        (vec!["--valkey-tarball", "missing.tar.gz"], "no such file"),
        (
            vec![
                "--valkey-tarball",
                tiny.to_str().unwrap(),
                "--valkey-version",
                "8.1.1",
            ],
            "goes alone",
        ),
    ];
    for (flags, expected) in cases {
        let flags: Vec<String> = flags
            .iter()
            .map(|f| {
                if f.ends_with(".tar.gz") && !f.starts_with('/') {
                    tmp.path().join(f).to_string_lossy().into_owned()
                } else {
                    f.to_string()
                }
            })
            .collect();
        let mut args = vec!["build", "--json"];
        args.extend(flags.iter().map(String::as_str));
        let out = run(&args, Some(tmp.path()));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
        assert!(out.stdout.is_empty(), "{flags:?}: nothing was built");
    }
}

/// Exported build variables never reach make (so they cannot hide under a plain cache
/// key), and the compiler is part of the key: another `CC` is another build.
#[test]
fn make_ignores_exported_build_variables_and_the_compiler_is_in_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let salt = format!("{:?}", std::time::SystemTime::now()); // a fresh cache key per run
    let log = tmp.path().join("make-env");
    let tree = stand_in_tree(
        &tmp.path().join("envtree"),
        "env",
        &salt,
        &format!(
            "\techo \"CFLAGS=[$$CFLAGS] OPTIMIZATION=[$$OPTIMIZATION] SANITIZER=[$$SANITIZER] CC=[$(CC)]\" >> {}\n",
            log.display()
        ),
    );
    let wrapper = tmp.path().join("my-cc");
    fs::write(&wrapper, "#!/bin/sh\nexec cc \"$@\"\n").unwrap();
    #[allow(clippy::disallowed_methods)] // test fixture setup, not a server
    let status = Command::new("chmod")
        .args(["+x", wrapper.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let args = [
        "build",
        "--json",
        "--malloc",
        "libc",
        "--valkey-src",
        tree.to_str().unwrap(),
    ];
    let build = |env: &[(&str, &str)]| {
        let mut cmd = xtask(&args, Some(tmp.path()));
        cmd.env_remove("CC");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{env:?}: {}", stderr(&out));
        let built: Value = serde_json::from_slice(&out.stdout).unwrap();
        (built, stderr(&out))
    };
    let (first, err) = build(&[
        ("CFLAGS", "-O0"),
        ("OPTIMIZATION", "-O0"),
        ("SANITIZER", "address"),
    ]);
    assert_eq!(first["cached"], false);
    assert!(
        err.contains("CFLAGS, OPTIMIZATION, SANITIZER from the environment not passed"),
        "{err}"
    );
    let seen = fs::read_to_string(&log).unwrap();
    assert!(
        seen.starts_with("CFLAGS=[] OPTIMIZATION=[] SANITIZER=[] CC=[/"),
        "{seen}"
    );
    let compiler = first["compiler"].as_str().unwrap();
    assert!(
        compiler.starts_with('/') && compiler.contains(" ("),
        "{compiler}"
    );

    let (plain, _) = build(&[]);
    assert_eq!(
        plain["cached"], true,
        "the environment is not part of the build"
    );
    assert_eq!(plain["server"], first["server"]);

    let (other, _) = build(&[("CC", wrapper.to_str().unwrap())]);
    assert_eq!(other["cached"], false, "another compiler is another build");
    assert_ne!(other["server"], first["server"]);
    let wrapper = wrapper.canonicalize().unwrap();
    assert!(
        other["compiler"]
            .as_str()
            .unwrap()
            .starts_with(wrapper.to_str().unwrap()),
        "{other}"
    );
    assert!(
        fs::read_to_string(&log)
            .unwrap()
            .contains(&format!("CC=[{}]", wrapper.display()))
    );
    for built in [&first, &other] {
        let entry = Path::new(built["server"].as_str().unwrap())
            .ancestors()
            .nth(2)
            .unwrap()
            .to_path_buf();
        fs::remove_dir_all(&entry).unwrap(); // salted keys are never used again
        let _ = fs::remove_file(entry.with_extension("lock"));
    }
}

/// The children of `pid` (their pids, names and process groups) from /proc.
fn children_of(pid: u32) -> Vec<(u32, String, Option<u32>)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split at its last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map(|(_, n)| n.to_string());
        let mut fields = rest.split_whitespace().skip(1);
        let ppid: Option<u32> = fields.next().and_then(|p| p.parse().ok());
        let pgrp = fields.next().and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            found.push((child, name.unwrap_or_default(), pgrp));
        }
    }
    found
}

/// `kill -9` of xtask while apt-get fetches into an empty cache: the tools it started go
/// with it (they died with their parent only once they ran through the process module;
/// before, apt-get went on downloading on its own).
#[test]
fn a_fetch_killed_with_sigkill_leaves_no_tool_running() {
    let cache = tempfile::tempdir().unwrap();
    let mut fetch = xtask(&["fetch"], None)
        .env("XDG_CACHE_HOME", cache.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut tools = Vec::new();
    let seen = wait_until(Duration::from_secs(120), || {
        // The long ones: a list update or a download (`apt-get --version` is over at once).
        tools = children_of(fetch.id())
            .into_iter()
            .filter(|(pid, _, _)| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("update") || cmdline.contains("download-file")
            })
            .collect();
        !tools.is_empty()
    });
    if !seen {
        let _ = fetch.kill();
        panic!(
            "fetch started no apt tool within 120 s (finished: {:?})",
            fetch.try_wait()
        );
    }
    // Started by the process module: each in a group of its own (xshell's shared ours).
    for (pid, name, pgrp) in &tools {
        assert_eq!(
            *pgrp,
            Some(*pid),
            "{name} ({pid}) is not in a group of its own"
        );
    }
    signal(&fetch, libc::SIGKILL);
    wait_with_limit(&mut fetch, Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(2), || tools
            .iter()
            .all(|(pid, _, _)| !pid_alive(*pid))),
        "still running 2 s after xtask was killed: {tools:?}"
    );
}
