//! TLS on real servers from our TLS build: servers with a TLS port only refuse plaintext
//! (a clear error, not a hang), a wrong CA or a missing client certificate is a clear
//! error, and the perf suite (on a cluster, with client certificates) and loadgen run over
//! TLS with every record saying so.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bench_core::client::Client;
use bench_core::result::ResultRecord;
use bench_core::transport::{Tls, TlsMode};
use serde_json::Value;

use crate::util::*;

/// `xtask build --tls --json` (cached after the first build).
pub fn tls_build() -> &'static Value {
    static BUILD: OnceLock<Value> = OnceLock::new();
    BUILD.get_or_init(|| {
        let out = run(&["build", "--tls", "--json"], None);
        assert!(
            out.status.success(),
            "xtask build --tls failed:\n{}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("build --json prints JSON")
    })
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The client configuration `start --tls --json` printed the files of.
fn tls_of(started: &Value) -> Tls {
    let read = |field: &str| std::fs::read(started["tls"][field].as_str().unwrap()).unwrap();
    let identity = started["tls"]["client_cert"]
        .is_string()
        .then(|| (read("client_cert"), read("client_key")));
    Tls::new(
        &read("ca"),
        identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        None,
    )
    .unwrap()
}

/// Runs `f` on a thread of its own and fails unless it ends within `limit` (a refused
/// connection must not hang; a hang fails the test instead of blocking it).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not end within {limit:?}"))
}

/// `xtask loadgen ARGS`, failing unless it ends within 20 s.
fn loadgen_within(args: &[&str], tmp: &Path) -> std::process::Output {
    let mut all = vec!["loadgen".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let tmp = tmp.to_path_buf();
    within(Duration::from_secs(20), &format!("{all:?}"), move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        run(&args, Some(&tmp))
    })
}

#[test]
fn a_tls_server_refuses_plaintext_and_wrong_certificates_clearly() {
    tls_build();
    let tmp = tempfile::tempdir().unwrap();
    let base = ports(2).to_string();
    let (mut server, started) = start_with(&["--tls", "--base-port", &base], tmp.path());
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    let tls = tls_of(&started);
    assert!(!tls.presents_certificate());

    // Over TLS it answers, and it has no plain listener.
    let mut c = Client::connect(addr(port), Some(&tls), Duration::from_secs(10)).unwrap();
    assert!(c.is_tls());
    let port_config = c.call(&["CONFIG", "GET", "port"]).unwrap();
    assert_eq!(
        format!("{port_config:?}"),
        r#"Array(Some([Bulk(Some([112, 111, 114, 116])), Bulk(Some([48]))]))"#,
        "port 0: no plaintext listener"
    );

    // Plaintext on the TLS port: the server closes it, and the error says why it may have.
    let err = within(Duration::from_secs(8), "a plaintext PING", move || {
        Client::connect(addr(port), None, Duration::from_secs(5))
            .and_then(|mut c| c.call(&["PING"]))
            .unwrap_err()
            .to_string()
    });
    assert!(err.contains("TLS port"), "{err}");

    // Another run's CA: the handshake fails, naming the cause.
    let other =
        xtask::tls::Material::generate(TlsMode::default(), tempfile::tempdir().unwrap(), &[])
            .unwrap();
    let wrong_ca = other.client().clone();
    let err = within(
        Duration::from_secs(8),
        "a handshake with a wrong CA",
        move || {
            Client::connect(addr(port), Some(&wrong_ca), Duration::from_secs(5))
                .err()
                .expect("a certificate of another CA is refused")
                .to_string()
        },
    );
    assert!(err.contains("does not chain to the CA"), "{err}");

    // loadgen the same ways: exit non-zero, the reason on stderr, promptly.
    let p = port.to_string();
    let plain = loadgen_within(&["--port", &p, "--requests", "1000"], tmp.path());
    assert!(!plain.status.success());
    assert!(
        stderr(&plain).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&plain)
    );
    assert!(stderr(&plain).contains("TLS port"), "{}", stderr(&plain));
    let wrong = loadgen_within(
        &[
            "--port",
            &p,
            "--requests",
            "1000",
            "--tls-ca",
            other.ca.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("does not chain to the CA"),
        "{}",
        stderr(&wrong)
    );

    // And with the run's CA it drives the server.
    let ca = started["tls"]["ca"].as_str().unwrap();
    let report = tmp.path().join("report.json");
    let ok = run(
        &[
            "loadgen",
            "--port",
            &p,
            "--requests",
            "20000",
            "--warmup",
            "0",
            "--tls-ca",
            ca,
            "--pipeline",
            "8",
            "--out",
            report.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["requests"], 20000, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert!(server.stop(Duration::from_secs(10)).success());
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn tls_to_a_plain_port_is_a_clear_error() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, started) = start_instances(1, ports(1), tmp.path());
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    let material =
        xtask::tls::Material::generate(TlsMode::default(), tempfile::tempdir().unwrap(), &[])
            .unwrap();
    let tls = material.client().clone();
    // Valkey reads the ClientHello as an inline command: it answers an error or waits for
    // the line's end; either way the handshake fails within its deadline.
    let err = within(
        Duration::from_secs(15),
        "a TLS handshake with a plain port",
        move || {
            Client::connect(addr(port), Some(&tls), Duration::from_secs(5))
                .err()
                .expect("a plain port is no TLS server")
                .to_string()
        },
    );
    assert!(err.contains("plain-TCP port"), "{err}");
    // The generator's connections (the async path) the same way.
    let p = port.to_string();
    let out = loadgen_within(
        &[
            "--port",
            &p,
            "--requests",
            "100",
            "--tls-ca",
            material.ca.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("plain-TCP port"), "{}", stderr(&out));
    assert!(server.stop(Duration::from_secs(10)).success());
}

#[test]
fn client_certificates_are_required_when_asked_for() {
    tls_build();
    let tmp = tempfile::tempdir().unwrap();
    let base = ports(2).to_string();
    let (mut server, started) = start_with(
        &["--tls", "--tls-auth-clients", "--base-port", &base],
        tmp.path(),
    );
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    let with_cert = tls_of(&started);
    assert!(with_cert.presents_certificate());
    let mut c = Client::connect(addr(port), Some(&with_cert), Duration::from_secs(10)).unwrap();
    assert!(c.call(&["PING"]).is_ok());
    // The same CA without a certificate: refused at the first exchange, not a hang.
    let ca = std::fs::read(started["tls"]["ca"].as_str().unwrap()).unwrap();
    let without = Tls::new(&ca, None, None).unwrap();
    let err = within(
        Duration::from_secs(8),
        "a client without a certificate",
        move || {
            Client::connect(addr(port), Some(&without), Duration::from_secs(5))
                .and_then(|mut c| c.call(&["PING"]))
                .unwrap_err()
                .to_string()
        },
    );
    assert!(err.contains("CertificateRequired"), "{err}");
    assert!(err.contains("refused our client certificate"), "{err}");
    assert!(server.stop(Duration::from_secs(10)).success());
}

/// The perf records of a run in `dir`.
fn records(dir: &Path) -> Vec<ResultRecord> {
    read_jsonl(&dir.join("results.jsonl"))
}

#[test]
fn the_perf_suite_runs_over_tls_on_a_cluster_with_replicas_and_client_certificates() {
    let _machine = heavy();
    tls_build();
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"SET\", \"GET\"]"),
            ("pipelines", "[8]"),
            ("repetitions", "1"),
        ],
    );
    let (out, dir) = bench_in(
        tmp.path(),
        &[
            "--suite-file",
            suite.to_str().unwrap(),
            "--tls",
            "--tls-auth-clients",
            "--topology",
            "cluster:2x1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let records = records(&dir);
    assert_eq!(records.len(), 2, "SET and GET");
    for r in &records {
        assert!(r.case.ends_with("/cluster:2x1/tls-auth"), "{}", r.case);
        assert_eq!(r.params.tls, Some(TlsMode { auth_clients: true }));
        assert!(r.valkey.build.tls);
        assert!(r.metrics.requests > 0);
        assert_eq!(
            r.metrics.nodes.len(),
            2,
            "traffic on every shard: {}",
            r.case
        );
        // The monitor reached all four nodes over TLS, replicas included (replication
        // and the cluster bus run over TLS too: the cluster came up with its replicas
        // synced before the preload).
        let sampled: std::collections::BTreeSet<&str> = r
            .monitor
            .iter()
            .flat_map(|m| m.servers.iter().map(|s| s.role.as_str()))
            .collect();
        assert_eq!(sampled.len(), 4, "{sampled:?}");
        assert!(r.metrics.nodes.iter().all(|n| n.requests > 0), "{}", r.case);
        assert!(
            r.engine.argv.iter().any(|a| a == "--tls-cert"),
            "the recorded command repeats the TLS flags: {:?}",
            r.engine.argv
        );
    }
    assert!(servers_under(tmp.path()).is_empty());
    // The certificates went with the servers.
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("-tls-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn suites_and_modes_that_cannot_speak_tls_refuse_it_before_starting_anything() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["bench", "--suite", "sync", "--tls"][..], "the sync suite"),
        (&["bench", "--tls-auth-clients"][..], "--tls"),
        (
            &[
                "compare",
                "--baseline",
                "8.1.1",
                "--candidate",
                "8.1.1",
                "--tls",
                "--mode",
                "instructions",
            ][..],
            "--mode instructions",
        ),
        (
            &["flamegraph", "--tls", "--profiler", "callgrind"][..],
            "--profiler callgrind",
        ),
    ] {
        let out = run(args, Some(tmp.path()));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let out = run(
        &["loadgen", "--tls-ca", "/no/such/ca.crt"],
        Some(tmp.path()),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--tls-ca /no/such/ca.crt"),
        "{}",
        stderr(&out)
    );
    assert!(servers_under(tmp.path()).is_empty());
}

/// The Valkey queue on a server that requires TLS and AUTH: `valkeys://` with the user's
/// CA and an ACL user's password from a file adds and lists tasks; every missing or wrong
/// piece is refused with the variable to set (exit 2), and the password is never printed.
#[test]
fn a_valkey_queue_behind_tls_and_auth_takes_tasks_only_with_both() {
    tls_build();
    let tmp = tempfile::tempdir().unwrap();
    let base = ports(2).to_string();
    let (mut server, started) = start_with(&["--tls", "--base-port", &base], tmp.path());
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    let ca = started["tls"]["ca"].as_str().unwrap().to_string();
    let mut admin =
        Client::connect(addr(port), Some(&tls_of(&started)), Duration::from_secs(10)).unwrap();
    admin
        .call(&[
            "ACL",
            "SETUSER",
            "queue",
            "on",
            ">s3cret-pw",
            "~*",
            "&*",
            "+@all",
        ])
        .unwrap();
    admin.call(&["ACL", "SETUSER", "default", "off"]).unwrap();
    let (good, bad) = (tmp.path().join("pw"), tmp.path().join("wrong"));
    std::fs::write(&good, "s3cret-pw\n").unwrap();
    std::fs::write(&bad, "guess\n").unwrap();
    let url = format!("valkeys://127.0.0.1:{port}/lab");
    let plain = format!("valkey://127.0.0.1:{port}/lab");
    let queue = |url: &str, env: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["queue", "--queue", url, "--json"];
        all.extend_from_slice(args);
        let mut cmd = xtask(&all, Some(tmp.path()));
        for var in [
            "VALKEY_BENCH_QUEUE_CA",
            "VALKEY_BENCH_QUEUE_USER",
            "VALKEY_BENCH_QUEUE_PASSWORD_FILE",
            "VALKEY_BENCH_QUEUE_PASSWORD",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        cmd.output().unwrap()
    };
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let refused: [(&str, Env, &str); 4] = [
        (&url, vec![], "set VALKEY_BENCH_QUEUE_CA=FILE"),
        (&url, vec![("VALKEY_BENCH_QUEUE_CA", &ca)], "requires AUTH"),
        (
            &url,
            vec![
                ("VALKEY_BENCH_QUEUE_CA", &ca),
                ("VALKEY_BENCH_QUEUE_USER", "queue"),
                ("VALKEY_BENCH_QUEUE_PASSWORD_FILE", bad),
            ],
            "refused AUTH as user \"queue\"",
        ),
        (
            &plain,
            vec![("VALKEY_BENCH_QUEUE_CA", &ca)],
            "give valkeys://",
        ),
    ];
    for (url, env, says) in refused {
        let out = queue(url, &env, &["list"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(says), "{env:?}: {err}");
        assert!(
            !err.contains("s3cret-pw") && !err.contains("guess"),
            "{err}"
        );
    }
    // Plain TCP to the TLS port: no answer it could take for the queue's.
    let out = queue(&plain, &[], &["list"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    // Another deployment's CA: the certificate does not verify, which no wait would fix.
    let other_base = ports(2).to_string();
    let (mut other, other_started) = start_with(&["--tls", "--base-port", &other_base], tmp.path());
    let other_ca = other_started["tls"]["ca"].as_str().unwrap().to_string();
    let out = queue(
        &url,
        &[
            ("VALKEY_BENCH_QUEUE_CA", &other_ca),
            ("VALKEY_BENCH_QUEUE_USER", "queue"),
            ("VALKEY_BENCH_QUEUE_PASSWORD_FILE", good),
        ],
        &["list"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("TLS with the queue server failed"), "{err}");
    other.stop(Duration::from_secs(20));

    let both = [
        ("VALKEY_BENCH_QUEUE_CA", ca.as_str()),
        ("VALKEY_BENCH_QUEUE_USER", "queue"),
        ("VALKEY_BENCH_QUEUE_PASSWORD_FILE", good),
    ];
    let out = queue(&url, &both, &["add", "bench", "--quick"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = added["added"][0].as_str().unwrap().to_string();
    let out = queue(&url, &both, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    // By host name: the certificate is checked against the name (it names localhost).
    let by_name = format!("valkeys://localhost:{port}/lab");
    let out = queue(&by_name, &both, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = queue(&url, &both, &["cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(admin);
    server.stop(Duration::from_secs(20));
}
