//! The topology seam on real servers: a standalone deployment, and a replication group
//! whose replicas are attached and synced before `deploy` returns; dropping a deployment
//! stops every node. And the mem suite on a cluster: each primary read, the sums recorded.

use std::time::Duration;

use bench_core::info::Info;
use bench_core::shutdown::Shutdown;
use xtask::host::local_hosts;
use xtask::topology::{ReplicationGroup, Role, Standalone, Topology};

use crate::util::*;

fn options() -> xtask::instances::Options {
    xtask::instances::Options {
        base_port: ports(4),
        ..Default::default()
    }
}

#[test]
fn a_standalone_deployment_targets_its_one_server() {
    let shutdown = Shutdown::new();
    let deployment = Standalone
        .deploy(local_hosts(), &binaries(), &options(), &shutdown)
        .unwrap();
    assert_eq!(deployment.nodes.len(), 1);
    assert_eq!(deployment.nodes[0].role, Role::Primary);
    assert_eq!(deployment.target.endpoints, vec![deployment.primary().addr]);
    let pid = deployment.primary().pid();
    assert!(pid_alive(pid));
    drop(deployment);
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(pid)),
        "the server outlived its deployment"
    );
}

#[test]
fn a_replication_group_is_synced_when_deploy_returns() {
    let shutdown = Shutdown::new();
    let group = ReplicationGroup::attached(2);
    assert_eq!(group.name(), "primary+2");
    let deployment = group
        .deploy(local_hosts(), &binaries(), &options(), &shutdown)
        .unwrap();
    let roles: Vec<Role> = deployment.nodes.iter().map(|n| n.role).collect();
    assert_eq!(roles, [Role::Primary, Role::Replica, Role::Replica]);
    assert_eq!(deployment.target.endpoints, vec![deployment.primary().addr]);
    let mut primary = deployment.primary().client().unwrap();
    let info = Info::parse(&primary.call_text(&["INFO", "replication"]).unwrap());
    assert_eq!(info.get("connected_slaves"), Some("2"), "{info:?}");
    // A write on the primary reaches both replicas.
    primary.call(&["SET", "topology-test", "yes"]).unwrap();
    for replica in deployment.replicas() {
        let mut client = replica.client().unwrap();
        let info = Info::parse(&client.call_text(&["INFO", "replication"]).unwrap());
        assert_eq!(info.get("role"), Some("slave"));
        assert_eq!(info.get("master_link_status"), Some("up"));
        assert!(
            wait_until(Duration::from_secs(10), || {
                client.call_text(&["GET", "topology-test"]).ok().as_deref() == Some("yes")
            }),
            "the write did not reach replica :{}",
            replica.port()
        );
    }
    let pids: Vec<u32> = deployment.nodes.iter().map(|n| n.instance.pid()).collect();
    drop(deployment);
    assert!(
        wait_until(Duration::from_secs(10), || pids
            .iter()
            .all(|&p| !pid_alive(p))),
        "servers outlived their deployment"
    );
}

#[test]
fn the_mem_suite_on_a_cluster_reads_every_primary_and_records_each_share() {
    let _machine = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let (out, out_dir) = bench_in(
        tmp.path(),
        &["--suite", "mem", "--quick", "--topology", "cluster:3x0"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(servers_under(tmp.path()).is_empty());
    let records: Vec<bench_core::result::MemRecord> = read_jsonl(&out_dir.join("results.jsonl"));
    assert_eq!(records.len(), 10);
    for r in &records {
        assert!(r.case.ends_with("/cluster:3x0"), "{}", r.case);
        assert_eq!(r.params.topology.to_string(), "cluster:3x0");
        let m = &r.metrics;
        assert_eq!(m.nodes.len(), 3, "{}", r.case);
        let keys: u64 = m.nodes.iter().map(|n| n.keys).sum();
        assert_eq!(
            keys, r.params.keys,
            "{}: the primaries hold every key once",
            r.case
        );
        let grew: i64 = m.nodes.iter().map(|n| n.data_bytes).sum();
        let total = m.bytes_per_item * r.params.items as f64;
        assert!(
            (grew as f64 - total).abs() < 1.0,
            "{}: {grew} vs {total}",
            r.case
        );
        let used: u64 = m.nodes.iter().map(|n| n.used_memory_after).sum();
        assert_eq!(used, m.used_memory_after, "{}", r.case);
        if r.params.keys >= 3_000 {
            assert!(
                m.nodes.iter().all(|n| n.keys * 5 > r.params.keys),
                "{}: keys spread over the shards: {:?}",
                r.case,
                m.nodes
            );
        }
        assert!(m.settled, "{}", r.case);
    }
}
