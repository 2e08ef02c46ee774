//! Untrusted input: suite files and flags that try to reach past their field (another
//! server option, a path the server writes, a shell) are refused with exit 2 before
//! anything starts; a value stays one argv item.

use std::fs;
use std::time::Duration;

use bench_core::client::Value;

use crate::util::*;

fn assert_refused(args: &[&str], tmp: &std::path::Path, expected: &[&str]) {
    let out = run(args, Some(tmp));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    for part in expected {
        assert!(err.contains(part), "{args:?}: {part:?} missing from: {err}");
    }
    assert!(servers_under(tmp).is_empty(), "{args:?} started a server");
}

#[test]
fn suite_files_of_every_suite_cannot_set_what_the_harness_owns() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let mem = write(
        "mem.toml",
        "suite = \"mem\"\ndata_types = [\"string\"]\nvalue_sizes = [16]\nkey_size = 16\n\
         field_size = 8\nitems = 100\nelements_per_key = 10\nexpiry = [false]\n\
         [server_config]\nBIND = \"0.0.0.0\"\n",
    );
    assert_refused(
        &["bench", "--suite", "mem", "--suite-file", &mem],
        tmp.path(),
        &["server_config.BIND", "lowercase"],
    );
    let sync = write(
        "sync.toml",
        "suite = \"sync\"\ndata_mb = [1]\nvalue_size = 1024\nreplicas = [1]\n\
         diskless_sync = [false]\ndiskless_load = [\"disabled\"]\nwrite_load = [false]\n\
         timeout_seconds = 60\n[server_config]\npidfile = \"/etc/passwd\"\n",
    );
    assert_refused(
        &["bench", "--suite", "sync", "--suite-file", &sync],
        tmp.path(),
        &["server_config.pidfile", "set by the harness"],
    );
    let perf = suite_file(
        tmp.path(),
        &[("server_config", "{ maxclients = \"--bind 0.0.0.0\" }")],
    );
    assert_refused(
        &["bench", "--suite-file", perf.to_str().unwrap()],
        tmp.path(),
        &["server_config.maxclients", "starts with '-'"],
    );
    for (flag, expected) in [
        ("unixsocket=/tmp/x.sock", "set by the harness"),
        ("Dir=/", "lowercase"),
        ("maxclients=-x", "starts with '-'"),
        // Off the allowlist: records would claim client certificates were required; a
        // debug command a load could reach; an address that sends clients elsewhere.
        (
            "tls-auth-clients=no",
            "not a setting a benchmark may change",
        ),
        (
            "enable-debug-command=yes",
            "not a setting a benchmark may change",
        ),
        (
            "replica-announce-ip=127.0.0.99",
            "not a setting a benchmark may change",
        ),
    ] {
        assert_refused(
            &["start", "--server-config", flag],
            tmp.path(),
            &["--server-config", expected],
        );
    }
    // Allowed, but a value the server itself refuses: bad input too (exit 2, the setting
    // named), not a failure of the run (it exited 1, compare's code for a regression).
    assert_refused(
        &["start", "--server-config", "maxmemory=lots"],
        tmp.path(),
        &["refuses the setting", "maxmemory", "must be a memory value"],
    );
}

/// Each list is capped (1000 values), and so is their product: a million cases would be
/// held in memory (and a queued task would hold a runner for years). Refused before
/// anything is built or started.
#[test]
fn a_matrix_of_a_million_cases_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    for command in ["bench", "compare"] {
        let mut args = vec![command];
        if command == "compare" {
            args.extend(["--baseline", "8.1.1", "--candidate", "8.1.1"]);
        }
        args.extend(["--value-sizes", "1..1000", "--pipelines", "1..1000"]);
        assert_refused(&args, tmp.path(), &["matrix", "cases", "at most 10000"]);
    }
}

#[test]
fn cflags_never_reach_a_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let flags = format!("--cflags=-O2 $(touch {})", marker.display());
    assert_refused(
        &["build", &flags],
        tmp.path(),
        &["--cflags", "'$' is not allowed"],
    );
    assert!(!marker.exists());
}

/// The value of a setting is one argv item: a multi-word value works where Valkey splits
/// it itself (`save`), and words that look like options stay inside the value.
#[test]
fn a_server_config_value_is_one_argument() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (mut started, info) =
        start_instances_with(1, ports(1), tmp.path(), &["--server-config", "save=900 1"]);
    let port = info["instances"][0]["port"].as_u64().unwrap() as u16;
    let mut client = bench_core::client::Client::connect(
        ([127, 0, 0, 1], port).into(),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let mut get = |name: &str| match client.call(&["CONFIG", "GET", name]).unwrap() {
        Value::Array(Some(items)) => match &items[..] {
            [_, Value::Bulk(Some(v))] => String::from_utf8_lossy(v).into_owned(),
            other => panic!("CONFIG GET {name}: {other:?}"),
        },
        other => panic!("CONFIG GET {name}: {other:?}"),
    };
    assert_eq!(get("save"), "900 1");
    assert_eq!(get("bind"), "127.0.0.1");
    assert_eq!(get("protected-mode"), "yes");
    assert!(started.stop(Duration::from_secs(20)).success());

    // Words that look like options stay inside maxclients' value, which the server then
    // refuses: it never listens on every interface.
    let out = run(
        &[
            "start",
            "--base-port",
            &ports(8).to_string(),
            "--server-config",
            "maxclients=100 --bind 0.0.0.0 --protected-mode no",
        ],
        Some(tmp.path()),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("couldn't be parsed into an integer"), "{err}");
    assert!(servers_under(tmp.path()).is_empty());
}
