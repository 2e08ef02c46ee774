//! The sync suite: full-sync time of replicas joining a populated primary.
//!
//! Per case: start a primary and N replicas; populate the primary (checked); optionally
//! start a write load on it; send REPLICAOF to every replica at once, each from its own
//! thread that then polls the replica's INFO replication every millisecond until the link
//! is up and no sync is in progress; stop the load; wait until every replica has caught up
//! with the primary's offset; compare key counts; one record per replica.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::client::Client;
use bench_core::distribution::ValueSize;
use bench_core::info::Info;
use bench_core::loadgen::{self, RunOptions, Stop};
use bench_core::populate;
use bench_core::result::{EngineInfo, SCHEMA_VERSION, SyncMetrics, SyncParams, SyncRecord};
use bench_core::shutdown::Shutdown;
use bench_core::sync::{SyncCase, sync_done};
use bench_core::workload::WorkloadSpec;

pub use crate::case::CaseContext;
use crate::case::monitor::Monitor;
use crate::instances;
use crate::topology::{ReplicationGroup, Topology};

/// How often each replica is polled during its sync.
const POLL: Duration = Duration::from_millis(1);
/// The write load during a sync: open loop, so its pressure is the same on every build.
const WRITE_RATE: f64 = 10_000.0;

pub fn run_case(case: &SyncCase, ctx: &CaseContext<'_>) -> anyhow::Result<Vec<SyncRecord>> {
    let mut config = std::collections::BTreeMap::new();
    config.insert(
        "repl-diskless-sync".into(),
        yes_no(case.diskless_sync).into(),
    );
    // No waiting for more replicas before a diskless transfer: the default (5 s), or a
    // delay with repl-diskless-sync-max-replicas (acted on about once a second), would
    // make the wait, not the sync, the figure. Replicas that arrive after a diskless
    // transfer began wait for the next one, as they would in production.
    config.insert("repl-diskless-sync-delay".into(), "0".into());
    config.insert("repl-diskless-load".into(), case.diskless_load.clone());
    // The suite file's own settings win.
    config.extend(case.server_config.clone());
    let options = instances::Options {
        base_port: ctx.base_port,
        config,
        ..Default::default()
    };
    // Detached: the suite sends REPLICAOF itself, because the sync is what it times.
    let deployment = ReplicationGroup::detached(case.replicas).deploy(
        ctx.hosts,
        ctx.binaries,
        &options,
        ctx.shutdown,
    )?;
    let server_hosts = crate::case::server_hosts(&deployment.nodes, ctx.hosts);
    let primary = deployment.primary();
    let replicas: Vec<&instances::Instance> = deployment.replicas().collect();
    let mut control = primary.client()?;
    // Random values: 'x' * n compresses to almost nothing in an RDB, which would make the
    // transfer a fraction of the data.
    populate::random_strings(&mut control, case.keys, case.value_size, 1)
        .context("populating the primary")?;
    let before = Info::parse(&control.call_text(&["INFO"])?);

    let load_stop = Shutdown::new();
    let load = case.write_load.then(|| {
        let (addr, stop) = (primary.addr, load_stop.clone());
        thread::spawn(move || write_load(addr, &stop))
    });
    let timeout = Duration::from_secs(case.timeout_seconds);
    let mut watched = vec![("primary".to_string(), primary.addr)];
    watched.extend(
        replicas
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("replica{}", i + 1), r.addr)),
    );
    let monitor = Monitor::start(watched, None);
    let syncs: Vec<_> = replicas
        .iter()
        .map(|r| {
            let (addr, source, shutdown) = (r.addr, primary.addr, ctx.shutdown.clone());
            thread::spawn(move || full_sync(addr, source, timeout, &shutdown))
        })
        .collect();
    let mut sync_secs = Vec::new();
    let mut failure = None;
    for (handle, replica) in syncs.into_iter().zip(&replicas) {
        match handle
            .join()
            .map_err(|_| anyhow::anyhow!("a sync poller panicked"))
            .and_then(|r| r)
        {
            Ok(secs) => sync_secs.push(secs),
            Err(e) => {
                failure.get_or_insert_with(|| {
                    e.context(format!(
                        "replica :{} of {}; its last log lines:\n{}",
                        replica.port(),
                        case.name,
                        replica.log_tail(8)
                    ))
                });
            }
        }
    }
    let samples = monitor.stop();
    load_stop.trigger();
    if let Some(handle) = load {
        let _ = handle.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let after = Info::parse(&control.call_text(&["INFO"])?);
    let sent = after.get_u64("total_net_repl_output_bytes").unwrap_or(0)
        - before.get_u64("total_net_repl_output_bytes").unwrap_or(0);
    let rdb_bytes = if case.diskless_sync {
        0
    } else {
        primary.file_len("dump.rdb").unwrap_or(0)
    };
    let keys_primary = control.call_int(&["DBSIZE"])? as u64;
    let offset = after.get_u64("master_repl_offset").unwrap_or(0);
    let b = ctx.binaries;
    let mut records = Vec::new();
    for (i, (replica, secs)) in replicas.iter().zip(&sync_secs).enumerate() {
        let mut client = replica.client()?;
        caught_up(&mut client, offset, timeout)
            .with_context(|| format!("replica :{} catching up", replica.port()))?;
        let keys_replica = client.call_int(&["DBSIZE"])? as u64;
        if keys_replica != keys_primary {
            bail!(
                "replica :{} holds {keys_replica} keys after its sync, the primary {keys_primary}",
                replica.port()
            );
        }
        let transfer_bytes = sent / u64::from(case.replicas);
        records.push(SyncRecord {
            schema: SCHEMA_VERSION,
            run_id: ctx.run_id.to_string(),
            suite: "sync".into(),
            case: case.name.clone(),
            repetition: 1,
            timestamp: crate::rundir::timestamp(),
            valkey: b.info(),
            host: ctx.host.clone(),
            params: SyncParams {
                keys: case.keys,
                value_size: case.value_size,
                data_bytes: case.data_bytes(),
                replicas: case.replicas,
                replica: i as u32 + 1,
                diskless_sync: case.diskless_sync,
                diskless_load: case.diskless_load.clone(),
                write_load: case.write_load,
                server_config: case.server_config.clone(),
                dir_fs: primary.dir_fs(),
            },
            metrics: SyncMetrics {
                sync_secs: *secs,
                transfer_bytes,
                throughput_bytes_per_sec: transfer_bytes as f64 / secs.max(1e-9),
                rdb_bytes,
                fork_usec: after.get_u64("latest_fork_usec").unwrap_or(0),
                keys_primary,
                keys_replica,
            },
            engine: EngineInfo {
                name: "replicaof".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                argv: vec![
                    "REPLICAOF".into(),
                    primary.addr.ip().to_string(),
                    primary.port().to_string(),
                ],
            },
            monitor: samples.clone(),
            server_hosts: server_hosts.clone(),
        });
    }
    Ok(records)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Sends REPLICAOF (the primary's own address, as the replica reaches it) and polls until
/// the full sync is done; returns its duration.
fn full_sync(
    replica: SocketAddr,
    primary: SocketAddr,
    timeout: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<f64> {
    let mut client = Client::connect(replica, None, Duration::from_secs(10))?;
    let (ip, port) = (primary.ip().to_string(), primary.port().to_string());
    let sent = Instant::now();
    client.call(&["REPLICAOF", ip.as_str(), port.as_str()])?;
    loop {
        let info = Info::parse(&client.call_text(&["INFO", "replication"])?);
        if sync_done(&info) {
            return Ok(sent.elapsed().as_secs_f64());
        }
        if shutdown.is_triggered() {
            bail!("interrupted");
        }
        if sent.elapsed() > timeout {
            bail!(
                "the full sync did not finish within {} s (master_link_status: {}, sync in progress: {})",
                timeout.as_secs(),
                info.get("master_link_status").unwrap_or("?"),
                info.get("master_sync_in_progress").unwrap_or("?")
            );
        }
        thread::sleep(POLL);
    }
}

/// Waits until the replica has processed the primary's stream up to `offset`.
fn caught_up(client: &mut Client, offset: u64, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let info = Info::parse(&client.call_text(&["INFO", "replication"])?);
        if info
            .get_u64("slave_repl_offset")
            .is_some_and(|o| o >= offset)
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "the replica did not reach offset {offset} within {} s",
                timeout.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// SETs on their own keys (`load:` prefix) at a fixed rate until `stop`.
fn write_load(primary: SocketAddr, stop: &Shutdown) {
    let mut spec = WorkloadSpec::single("SET", 100_000, 64);
    spec.key_prefix = "load:".into();
    spec.values = ValueSize::Fixed { bytes: 64 };
    let options = RunOptions {
        connections: 4,
        pipeline: 16,
        threads: 1,
        rate: Some(WRITE_RATE),
        stop: Stop::Duration(Duration::from_secs(3600)),
        warmup: Duration::ZERO,
        cluster: None,
        cpus: Vec::new(),
        tls: None,
        share: None,
        start_at: None,
    };
    let _ = loadgen::run(&[primary], &spec, &options, stop, |_| {});
}
