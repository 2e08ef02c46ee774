//! The other commands on hosts of a test network (`testnet.rs`): two client hosts whose
//! merged histogram is the sum of theirs, a runner with a hosts file (and tasks that may
//! not name hosts), `start` over two hosts and `loadgen` from two client hosts against it,
//! `compare` with its servers on one host and its load on another (its counts made here),
//! a flame graph of a server on a host, TLS across hosts.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::remote::records;
use crate::testnet::TestNet;
use crate::util::*;

#[test]
fn two_client_hosts_merge_into_the_histogram_of_all_their_requests() {
    let _machine = heavy();
    let net = TestNet::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"GET\"]"),
            ("pipelines", "[1]"),
            ("repetitions", "1"),
        ],
    );
    let (out, dir) = bench_in(
        tmp.path(),
        &[
            "--suite-file",
            suite.to_str().unwrap(),
            "--hosts",
            net.hosts_file.to_str().unwrap(),
            "--server-hosts",
            "h3",
            "--client-hosts",
            "h1,h2",
        ],
    );
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    let recs = records(&dir);
    assert_eq!(recs.len(), 1, "{said}");
    let m = &recs[0]["metrics"];
    let hosts = m["client_hosts"]
        .as_array()
        .expect("client_hosts in the record");
    let names: Vec<&str> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["h1", "h2"]);
    // The suite's 10 connections, divided.
    let connections: Vec<u64> = hosts
        .iter()
        .map(|h| h["connections"].as_u64().unwrap())
        .collect();
    assert_eq!(connections, [5, 5]);
    let decode =
        |v: &Value| bench_core::loadgen::stats::decode_histogram(v.as_str().unwrap()).unwrap();
    let mut union = decode(&hosts[0]["histogram"]);
    union.add(decode(&hosts[1]["histogram"])).unwrap();
    let merged = decode(&m["histogram"]);
    assert!(!merged.is_empty());
    assert_eq!(merged.len(), union.len());
    assert_eq!(merged.len(), m["requests"].as_u64().unwrap());
    let buckets = |h: &hdrhistogram::Histogram<u64>| -> Vec<(u64, u64)> {
        h.iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    };
    assert_eq!(buckets(&merged), buckets(&union), "every bucket's count");
    assert_eq!(
        m["p99_us"].as_f64().unwrap(),
        union.value_at_quantile(0.99) as f64
    );
    for h in hosts {
        assert!(h["requests"].as_u64().unwrap() > 0, "{h}");
        assert!(h["clock_offset_us"].as_f64().unwrap().abs() < 1e6, "{h}");
    }
    // The server ran on h3, the load on h1 and h2: none of it here.
    assert_eq!(recs[0]["server_hosts"][0]["name"], "h3");
    assert!(
        wait_until(Duration::from_secs(5), || net.ours().is_empty()),
        "{:?}",
        net.ours()
    );
}

#[test]
fn a_runner_with_a_hosts_file_runs_its_tasks_there_and_a_task_asks_for_counts_not_names() {
    use crate::queue::{queue_add, queue_list, state_of};
    let _machine = heavy();
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let (queue, results) = (tmp.path().join("queue"), tmp.path().join("results"));
    let q = queue.to_str().unwrap();
    let hosts = net.hosts_file.to_str().unwrap();
    // A task document never names hosts (nor a hosts file): refused before it is queued.
    for (flag, why) in [
        (["--hosts", hosts], "is not taken in a task"),
        (["--server-hosts", "h1"], "never names"),
        (["--client-hosts", "h1"], "never names"),
    ] {
        let out = run(
            &["queue", "--queue", q, "add", "bench", flag[0], flag[1]],
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{flag:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
    }
    // It may ask for a count, which the runner takes from its own hosts: one server host
    // is there, two are not.
    let port = ports(8).to_string();
    let task = |count: &str| {
        queue_add(
            &queue,
            "bench",
            &[
                "--quick",
                "--commands",
                "GET",
                "--pipelines",
                "1",
                "--base-port",
                &port,
                "--server-hosts",
                count,
            ],
        )
        .remove(0)
    };
    let ids = [task("1"), task("2")];
    let out = run(
        &[
            "runner",
            "--queue",
            q,
            "--once",
            "--results",
            results.to_str().unwrap(),
            "--hosts",
            hosts,
            "--server-hosts",
            "h1",
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let tasks = queue_list(&queue);
    let done = state_of(&tasks, &ids[0]);
    assert_eq!(done["state"], "done", "{done:#}");
    let failed = state_of(&tasks, &ids[1]);
    assert_eq!(failed["state"], "failed", "{failed:#}");
    let why = failed["task"]["error"].as_str().unwrap();
    assert!(
        why.contains("--server-hosts 2: this runner has 1 such host(s) (h1)"),
        "{why}"
    );
    let dir = std::path::Path::new(done["task"]["results"].as_str().unwrap());
    let recs = records(dir);
    assert!(!recs.is_empty());
    for r in &recs {
        assert_eq!(r["server_hosts"][0]["name"], "h1", "{r}");
    }
    assert!(
        wait_until(Duration::from_secs(5), || net.ours().is_empty()),
        "{:?}",
        net.ours()
    );
}

#[test]
fn start_puts_a_replica_on_another_host_loadgen_drives_it_from_two_and_compare_runs_there() {
    let _machine = heavy();
    let net = TestNet::new(2);
    let tmp = tempfile::tempdir().unwrap();
    let hosts = net.hosts_file.to_str().unwrap();
    let base = ports(8).to_string();
    // start: a primary on h1, its replica on h2, each named with its host and address.
    let (mut started, listed) = start_with(
        &[
            "--topology",
            "replicas:1",
            "--hosts",
            hosts,
            "--server-hosts",
            "h1,h2",
            "--base-port",
            &base,
        ],
        tmp.path(),
    );
    let nodes = listed["instances"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{listed}");
    for (node, (host, role)) in nodes.iter().zip([("h1", "primary"), ("h2", "replica")]) {
        assert_eq!(node["host"], host, "{listed}");
        assert_eq!(node["role"], role, "{listed}");
    }
    assert_eq!(
        nodes[0]["addr"].as_str().unwrap(),
        format!("{}:{}", net.hosts[0].addr, nodes[0]["port"])
    );
    assert_eq!(net.servers().len(), 2);
    // loadgen drives the primary from h2 and from here at once: one open-loop schedule
    // partitioned between them, their measurements merged.
    let primary = nodes[0]["addr"].as_str().unwrap().to_string();
    let (ip, port) = primary.rsplit_once(':').unwrap();
    let loadgen = |host: &str, clients: &str| {
        run(
            &[
                "loadgen",
                "--host",
                host,
                "--port",
                port,
                "--command",
                "GET",
                "--keyspace",
                "100",
                "--clients",
                "10",
                "--rate",
                "2000",
                "--duration",
                "2",
                "--warmup",
                "0.2",
                "--hosts",
                hosts,
                "--client-hosts",
                clients,
                "--json",
            ],
            None,
        )
    };
    // The loopback is each host's own: refused with other hosts, nothing started.
    let refused = loadgen("127.0.0.1", "h2,local");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("its own loopback"),
        "{}",
        stderr(&refused)
    );
    let out = loadgen(ip, "h2,local");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = report["client_hosts"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["h2", "local"], "{report}");
    let sent: u64 = parts.iter().map(|h| h["requests"].as_u64().unwrap()).sum();
    assert_eq!(sent, report["requests"].as_u64().unwrap(), "{report}");
    for h in parts {
        // Each host's half of the one schedule, not a copy of it.
        assert_eq!(h["offered_rate"].as_f64(), Some(1000.0), "{h}");
        assert_eq!(h["connections"], 5, "{h}");
    }
    // 2000/s for 2 s: the aggregate is the requested rate (a send's slot is in the
    // window or not: a few either way).
    assert!((3900..=4100).contains(&sent), "{sent} requests: {report}");
    assert_eq!(report["all"]["errors"], 0, "{report}");
    // SIGTERM: an interruption, which `start` answers by stopping its servers (exit 0, as
    // on this machine).
    let status = started.stop(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        wait_until(Duration::from_secs(5), || net.ours().is_empty()),
        "{:?}",
        net.ours()
    );
    // compare, counting: the exact counts are made here (valgrind runs here), and the
    // report says so; nothing is started on the host.
    let counted_dir = tmp.path().join("counted");
    let counted = run(
        &[
            "compare",
            "--baseline",
            "8.1.1",
            "--candidate",
            "8.1.1",
            "--quick",
            "--cases",
            "GET/32B/P16",
            "--mode",
            "instructions",
            "--json",
            "--hosts",
            hosts,
            "--server-hosts",
            "h1",
            "--out",
            counted_dir.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert_eq!(counted.status.code(), Some(0), "{}", stderr(&counted));
    let report: Value = serde_json::from_slice(&counted.stdout).unwrap();
    assert!(
        report["findings"].as_array().unwrap().iter().any(|f| f
            .as_str()
            .unwrap()
            .contains("the hosts given were not used")),
        "{report}"
    );
    assert!(
        !stderr(&counted).contains("host h1"),
        "{}",
        stderr(&counted)
    );
    assert_eq!(report["cases"][0]["verdict"], "no_change", "{report}");
    // compare, timed: both sides' servers on h1, load from h2.
    let out_dir = tmp.path().join("compare");
    let out = run(
        &[
            "compare",
            "--baseline",
            "8.1.1",
            "--candidate",
            "8.1.1",
            "--quick",
            "--cases",
            "GET/32B/P16",
            "--mode",
            "time",
            "--slice-seconds",
            "0.05",
            "--max-time",
            "20s",
            "--threshold",
            "5",
            "--json",
            "--base-port",
            &base,
            "--hosts",
            hosts,
            "--server-hosts",
            "h1",
            "--client-hosts",
            "h2",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    let side = fs::read_to_string(out_dir.join("baseline").join("results.jsonl")).unwrap();
    let first: Value = serde_json::from_str(side.lines().next().unwrap()).unwrap();
    assert_eq!(first["server_hosts"][0]["name"], "h1", "{first}");
    assert_eq!(first["metrics"]["client_hosts"][0]["name"], "h2", "{first}");
    assert!(
        wait_until(Duration::from_secs(5), || net.ours().is_empty()),
        "{:?}",
        net.ours()
    );
}

#[test]
fn a_flamegraph_of_a_server_on_another_host_is_recorded_there_and_brought_back() {
    if let Some(why) = perf_unusable() {
        cannot_run("perf", &format!("flamegraph on a host: {why}"));
        return;
    }
    let _machine = heavy();
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let hosts = net.hosts_file.to_str().unwrap();
    // callgrind runs the server under valgrind here: refused with hosts, nothing reached.
    let refused = run(
        &[
            "flamegraph",
            "--profiler",
            "callgrind",
            "--hosts",
            hosts,
            "--server-hosts",
            "h1",
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--profiler perf"),
        "{}",
        stderr(&refused)
    );
    let svg = tmp.path().join("fg.svg");
    let out = run(
        &[
            "flamegraph",
            "--command",
            "GET",
            "--keyspace",
            "1000",
            "--warmup",
            "0.3",
            "--duration",
            "1",
            "--hosts",
            hosts,
            "--server-hosts",
            "h1",
            "--base-port",
            &ports(8).to_string(),
            "--json",
            "--out",
            svg.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["host"], "h1", "{report}");
    assert!(
        report["method"].as_str().unwrap().ends_with("on host h1"),
        "{report}"
    );
    // perf ran there, against the server there: its stacks came back folded.
    let folded = fs::read_to_string(tmp.path().join("fg.folded")).unwrap();
    assert!(folded.contains("processCommand"), "{folded:.2000}");
    assert!(fs::read_to_string(&svg).unwrap().contains("on host h1"));
    assert!(
        wait_until(Duration::from_secs(5), || net.ours().is_empty()),
        "outlived the run: {:?}",
        net.ours()
    );
}

#[test]
fn tls_crosses_hosts_with_client_certificates_shipped_to_the_agents() {
    let _machine = heavy();
    crate::tls::tls_build();
    let net = TestNet::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"GET\"]"),
            ("pipelines", "[8]"),
            ("repetitions", "1"),
        ],
    );
    // A primary on h1, its replica on h2 (replication over TLS between the hosts), the
    // load from h3 presenting a client certificate.
    let (out, dir) = bench_in(
        tmp.path(),
        &[
            "--suite-file",
            suite.to_str().unwrap(),
            "--tls",
            "--tls-auth-clients",
            "--topology",
            "replicas:1",
            "--hosts",
            net.hosts_file.to_str().unwrap(),
            "--server-hosts",
            "h1,h2",
            "--client-hosts",
            "h3",
        ],
    );
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    let recs = records(&dir);
    assert_eq!(recs.len(), 1, "{said}");
    let r = &recs[0];
    assert_eq!(r["params"]["tls"]["auth_clients"], true, "{r}");
    let on: Vec<&str> = r["server_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(on, ["h1", "h2"], "{r}");
    assert_eq!(r["metrics"]["client_hosts"][0]["name"], "h3", "{r}");
    assert!(
        r["metrics"]["client_hosts"][0]["requests"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The replica synced over TLS before the load (its role is in the monitor's samples).
    let roles: Vec<&str> = r["monitor"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["servers"].as_array().unwrap())
        .map(|s| s["role"].as_str().unwrap())
        .collect();
    assert!(roles.iter().any(|r| r.starts_with("replica")), "{roles:?}");
    assert!(
        wait_until(Duration::from_secs(5), || net.ours().is_empty()),
        "{:?}",
        net.ours()
    );
    // The keys went with the servers: no TLS directory is left on any host.
    for host in &net.hosts {
        let left: Vec<String> = fs::read_dir(host.work_dir.join("scratch"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains("-tls-"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{}: {left:?}", host.name);
    }
}
