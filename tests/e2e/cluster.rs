//! Cluster and replica topologies on real servers from our build: the quick suite on a
//! 3-shard cluster, a slot migrated under load, reads from replicas, a compare on a
//! cluster, the replicas topology, and the bad inputs that must start nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::Duration;

use bench_core::client::{Client, Value as Reply};
use bench_core::cluster::{SlotMap, key_slot};
use bench_core::result::ResultRecord;
use serde_json::Value;

use crate::util::*;

/// `xtask start --topology T --json`: the process and the JSON line it printed when every
/// node was ready.
fn start_topology(topology: &str, tmp: &Path) -> (Started, Value) {
    build_json();
    let base = ports(8).to_string();
    start_with(&["--topology", topology, "--base-port", &base], tmp)
}

/// (role, port) of every node `start` printed.
fn nodes(started: &Value) -> Vec<(String, u16)> {
    started["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["role"].as_str().unwrap().to_string(),
                i["port"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

fn client(port: u16) -> Client {
    Client::connect(
        SocketAddr::from(([127, 0, 0, 1], port)),
        None,
        Duration::from_secs(10),
    )
    .unwrap()
}

/// `xtask loadgen` with `args`, its report read from `--out`.
fn loadgen(args: &[&str], tmp: &Path, name: &str) -> (std::process::Output, Value) {
    let report = tmp.join(format!("{name}.json"));
    let mut all = vec!["loadgen"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", report.to_str().unwrap()]);
    let out = run(&all, Some(tmp));
    let json = std::fs::read_to_string(&report)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (out, json)
}

/// The calls of `command` a node's INFO commandstats counts.
fn calls(port: u16, command: &str) -> u64 {
    let info =
        bench_core::info::Info::parse(&client(port).call_text(&["INFO", "commandstats"]).unwrap());
    info.commandstats()
        .get(command)
        .map_or(0, |&(calls, _)| calls)
}

#[test]
fn the_quick_suite_on_a_three_shard_cluster_spreads_over_every_shard_without_errors() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (out, out_dir) = bench_in(
        tmp.path(),
        &["--quick", "--topology", "cluster:3x0", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        servers_under(tmp.path()).is_empty(),
        "servers outlived the run"
    );
    let records: Vec<ResultRecord> = read_jsonl(&out_dir.join("results.jsonl"));
    assert_eq!(records.len(), 40, "20 quick cases × 2 repetitions");
    for r in &records {
        assert!(r.case.ends_with("/cluster:3x0"), "{}", r.case);
        assert_eq!(r.params.topology.to_string(), "cluster:3x0");
        let m = &r.metrics;
        assert!(m.redirects.is_empty(), "{}: {:?}", r.case, m.redirects);
        assert_eq!(m.nodes.len(), 3, "{}: {:?}", r.case, m.nodes);
        let per_node: u64 = m.nodes.iter().map(|n| n.requests).sum();
        assert_eq!(
            per_node, m.requests,
            "{}: nodes add up to the total",
            r.case
        );
        assert!(
            r.engine.argv.iter().any(|a| a == "--cluster"),
            "{}: the reproduce line drives a cluster: {:?}",
            r.case,
            r.engine.argv
        );
        // Commands with drawn keys (and PING, round robin) reach every shard; the fixed
        // keys valkey-benchmark's tests use (mylist, myset, ...) live on one.
        let spread = ["PING", "SET", "GET", "INCR", "MSET"].contains(&r.params.command.as_str());
        let busy = m.nodes.iter().filter(|n| n.requests > 0).count();
        if spread {
            assert_eq!(busy, 3, "{}: {:?}", r.case, m.nodes);
            let least = m.nodes.iter().map(|n| n.requests).min().unwrap();
            assert!(
                least * 4 > m.requests / 3,
                "{}: one shard got far less than a third: {:?}",
                r.case,
                m.nodes
            );
        } else {
            assert_eq!(busy, 1, "{}: {:?}", r.case, m.nodes);
        }
        assert!(m.server_cpu_us_per_request.is_some_and(|c| c > 0.0));
    }
}

/// Moves `slot` from node `from` to node `to` as `valkey-cli --cluster reshard` does:
/// IMPORTING / MIGRATING, MIGRATE the keys, then the new owner on both, pausing in each
/// state so requests meet it.
fn migrate(slot: u16, from: u16, to: u16, pause: Duration) {
    let (mut source, mut target) = (client(from), client(to));
    let from_id = source.call_text(&["CLUSTER", "MYID"]).unwrap();
    let to_id = target.call_text(&["CLUSTER", "MYID"]).unwrap();
    let slot = slot.to_string();
    target
        .call(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id])
        .unwrap();
    source
        .call(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id])
        .unwrap();
    thread::sleep(pause);
    loop {
        let Reply::Array(Some(keys)) = source
            .call(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
            .unwrap()
        else {
            panic!("GETKEYSINSLOT")
        };
        if keys.is_empty() {
            break;
        }
        let mut args: Vec<Vec<u8>> = [
            "MIGRATE",
            "127.0.0.1",
            &to.to_string(),
            "",
            "0",
            "5000",
            "KEYS",
        ]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
        for key in keys {
            let Reply::Bulk(Some(key)) = key else {
                panic!("a key")
            };
            args.push(key);
        }
        source.call(&args).unwrap();
    }
    // The keys are at the target, the slot still at the source: requests get ASK.
    thread::sleep(pause);
    for node in [&mut target, &mut source] {
        node.call(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id])
            .unwrap();
    }
}

#[test]
fn a_slot_migrated_mid_run_loses_no_request_and_its_redirects_are_counted() {
    let _machine = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let (mut cluster, started) = start_topology("cluster:3x0", tmp.path());
    let nodes = nodes(&started);
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes
            .iter()
            .all(|(role, _)| role.starts_with("shard") && role.ends_with("primary"))
    );
    let ports: Vec<u16> = nodes.iter().map(|(_, p)| *p).collect();
    // Key 42 of the generator's names: its slot's owner gives it away mid-run.
    let slot = key_slot(b"key:000000000042");
    let map = SlotMap::discover(&mut client(ports[0])).unwrap();
    let owner = map.shards[map.owner(slot).unwrap()].primary.port();
    let new_owner = *ports.iter().find(|&&p| p != owner).unwrap();
    let seed = ports[0].to_string();
    let requests = 400_000u64;
    let migration = thread::spawn(move || {
        // Under way before the migration starts (the run takes seconds).
        thread::sleep(Duration::from_millis(700));
        migrate(slot, owner, new_owner, Duration::from_millis(300));
    });
    let (out, report) = loadgen(
        &[
            "--cluster",
            "--port",
            &seed,
            "--command",
            "SET {key} {value}",
            "--keyspace",
            "100",
            "--clients",
            "8",
            "--pipeline",
            "4",
            "--requests",
            &requests.to_string(),
            "--warmup",
            "0",
        ],
        tmp.path(),
        "migrate",
    );
    migration.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(report["partial"].is_null(), "{report}");
    assert_eq!(
        report["requests"].as_u64(),
        Some(requests),
        "every request answered once"
    );
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let redirects = &report["redirects"];
    assert!(
        redirects["MOVED"].as_u64().is_some_and(|n| n >= 1),
        "the new owner was learned from MOVED: {redirects}"
    );
    assert!(
        redirects["ASK"].as_u64().is_some_and(|n| n >= 1),
        "requests during the migration were sent on with ASK: {redirects}"
    );
    // The key lives at its new owner, and the old one sends its clients there.
    assert_eq!(
        client(new_owner)
            .call_int(&["EXISTS", "key:000000000042"])
            .unwrap(),
        1
    );
    let moved = client(owner)
        .call(&["GET", "key:000000000042"])
        .unwrap_err();
    assert!(moved.to_string().contains("MOVED"), "{moved}");

    // A node that announces an address that is none of ours (what a task could once ask
    // for with --server-config): neither the generator nor the populators go there.
    let ours: Vec<SocketAddr> = ports
        .iter()
        .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect();
    client(ports[0])
        .call(&[
            "CONFIG",
            "SET",
            "cluster-announce-client-ipv4",
            "127.0.0.99",
        ])
        .unwrap();
    let load = bench_core::engine::Load {
        command: bench_core::command::Command::Get,
        value_size: 32,
        pipeline: 1,
        clients: 2,
        keyspace: 100,
        requests: 1000,
        threads: 1,
        client_cpus: Vec::new(),
        rate: None,
    };
    let target = bench_core::engine::Target::cluster(
        vec![ours[0]],
        ours.clone(),
        bench_core::topology::ReadFrom::Primaries,
    );
    use bench_core::engine::Engine;
    let refused = bench_core::loadgen::engine::NativeEngine
        .run(&target, &load, &bench_core::shutdown::Shutdown::new())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("127.0.0.99") && refused.contains("none of the deployment's nodes"),
        "{refused}"
    );
    let refused =
        bench_core::cluster::ClusterClient::connect(ours[0], &ours, None, Duration::from_secs(5))
            .err()
            .expect("the populators' client refuses the map")
            .to_string();
    assert!(refused.contains("127.0.0.99"), "{refused}");
    assert_eq!(cluster.stop(Duration::from_secs(20)).code(), Some(0));
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn reads_from_replicas_are_served_by_the_replicas_and_writes_by_the_primaries() {
    let _machine = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let (mut cluster, started) = start_topology("cluster:2x1", tmp.path());
    let nodes = nodes(&started);
    let names: Vec<&str> = nodes.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "shard1-primary",
            "shard2-primary",
            "shard1-replica1",
            "shard2-replica1"
        ]
    );
    let seed = nodes[0].1.to_string();
    let (out, report) = loadgen(
        &[
            "--cluster",
            "--read-from",
            "replicas",
            "--port",
            &seed,
            "--workload",
            "basic_rw",
            "--clients",
            "4",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ],
        tmp.path(),
        "replicas",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    // The servers' own counts: GETs on the replicas only; SETs sent to the primaries
    // (a replica's SETs are its primary's, replicated: no more than the primary's).
    for (role, port) in &nodes {
        let (gets, sets) = (calls(*port, "get"), calls(*port, "set"));
        if role.ends_with("primary") {
            assert!(gets == 0 && sets > 0, "{role}: {gets} GET, {sets} SET");
        } else {
            let shard = &role[..role.find('-').unwrap()];
            let primary = nodes
                .iter()
                .find(|(r, _)| *r == format!("{shard}-primary"))
                .unwrap();
            assert!(gets > 0, "{role}: {gets} GET");
            assert!(sets <= calls(primary.1, "set"), "{role}: {sets} SET");
        }
    }
    assert_eq!(report["nodes"].as_array().unwrap().len(), 4, "{report}");
    assert_eq!(cluster.stop(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn a_compare_of_one_build_on_a_cluster_finds_no_change() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let version = build_json()["version"].as_str().unwrap().to_string();
    let base = ports(16).to_string();
    let out = run(
        &[
            "compare",
            "--baseline",
            &version,
            "--candidate",
            &version,
            "--quick",
            "--cases",
            "GET/32B/P16/",
            "--topology",
            "cluster:2x0",
            // Two clusters and the client on 2 cores: trials spread by ±15% (an MDE of
            // 6.7% after 19 pairs on cluster:3x0), so 2% is not decidable in minutes. With
            // a core busy, 0.1 s slices and 3 minutes once ended inconclusive (26 trials,
            // median +6.2%, interval +0.1% .. +12.5%): longer slices and more looks.
            "--threshold",
            "10",
            "--slice-seconds",
            "0.2",
            "--max-time",
            "5m",
            "--base-port",
            &base,
            "--out",
            tmp.path().join("cmp").to_str().unwrap(),
            "--json",
        ],
        Some(tmp.path()),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("every case is timed instead"), "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["case"], "GET/32B/P16/c50/io1/10k-keys/cluster:2x0");
    assert_eq!(cases[0]["verdict"], "no_change", "{}", cases[0]);
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn the_replicas_topology_measures_the_primary_with_its_replicas_attached() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"SET\"]"),
            ("pipelines", "[8]"),
            ("repetitions", "1"),
        ],
    );
    let (out, out_dir) = bench_in(
        tmp.path(),
        &[
            "--suite-file",
            suite.to_str().unwrap(),
            "--topology",
            "replicas:2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<ResultRecord> = read_jsonl(&out_dir.join("results.jsonl"));
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.case, "SET/64B/P8/c10/io1/1k-keys/replicas:2");
    assert_eq!(r.params.topology.to_string(), "replicas:2");
    assert!(
        r.metrics.nodes.is_empty(),
        "not a cluster: no per-node split"
    );
    // The 1 Hz monitor watched the primary and both replicas.
    let watched: std::collections::BTreeSet<&str> = r
        .monitor
        .iter()
        .flat_map(|s| s.servers.iter().map(|n| n.role.as_str()))
        .collect();
    assert_eq!(
        watched,
        ["primary", "replica1", "replica2"].into_iter().collect(),
        "{:?}",
        r.monitor
    );
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn bad_topologies_and_cluster_misuse_are_refused_before_anything_starts() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], says: &[&str]| {
        let out = run(args, Some(tmp.path()));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for s in says {
            assert!(err.contains(s), "{args:?}: {s:?} not in {err}");
        }
    };
    refused(
        &["bench", "--quick", "--topology", "cluster:0x1"],
        &["\"cluster:0x1\"", "cluster:SxR"],
    );
    refused(
        &["bench", "--quick", "--topology", "ring:3"],
        &["\"ring:3\"", "replicas:N"],
    );
    refused(
        &["bench", "--quick", "--read-from", "replicas"],
        &[
            "--read-from replicas needs a cluster with replicas",
            "standalone",
        ],
    );
    refused(
        &[
            "bench",
            "--quick",
            "--topology",
            "cluster:3x0",
            "--read-from",
            "replicas",
        ],
        &["needs a cluster with replicas", "cluster:3x0"],
    );
    refused(
        &[
            "bench",
            "--suite",
            "sync",
            "--quick",
            "--topology",
            "cluster:3x0",
        ],
        &["--topology cluster:3x0", "drop --topology"],
    );
    refused(
        &[
            "bench",
            "--suite",
            "mem",
            "--quick",
            "--topology",
            "replicas:1",
        ],
        &["--topology replicas:1", "use standalone or cluster:Sx0"],
    );
    refused(
        &[
            "bench",
            "--suite",
            "mem",
            "--quick",
            "--topology",
            "cluster:2x1",
        ],
        &["--topology cluster:2x1", "replication backlog"],
    );
    refused(
        &[
            "compare",
            "--baseline",
            "8.1.1",
            "--candidate",
            "8.1.1",
            "--suite",
            "mem",
            "--server-cpus",
            "1",
        ],
        &["--server-cpus", "--suite perf"],
    );
    refused(
        &[
            "flamegraph",
            "--topology",
            "cluster:2x1",
            "--read-from",
            "replicas",
        ],
        &["--read-from replicas", "first primary"],
    );
    refused(
        &["bench", "--quick", "--server-config", "cluster-enabled=yes"],
        &["`cluster-enabled` is set by the harness"],
    );
    let suite = suite_file(tmp.path(), &[("topology", "\"cluster:3\"")]);
    refused(
        &["bench", "--suite-file", suite.to_str().unwrap()],
        &["`topology`", "\"cluster:3\""],
    );
    refused(
        &[
            "compare",
            "--baseline",
            "8.1.1",
            "--candidate",
            "8.1.1",
            "--mode",
            "instructions",
            "--topology",
            "cluster:3x0",
        ],
        &["--mode instructions", "cluster:3x0"],
    );
    // A multi-key command whose keys span slots, on a cluster someone else runs.
    let (mut cluster, started) = start_topology("cluster:2x0", tmp.path());
    let seed = nodes(&started)[0].1.to_string();
    refused(
        &[
            "loadgen",
            "--cluster",
            "--port",
            &seed,
            "--command",
            "MSET",
            "--requests",
            "10",
        ],
        &["MSET", "different slots", "hash tag"],
    );
    assert_eq!(calls(nodes(&started)[0].1, "mset"), 0, "nothing was sent");
    assert_eq!(cluster.stop(Duration::from_secs(20)).code(), Some(0));
    assert!(servers_under(tmp.path()).is_empty());
}
