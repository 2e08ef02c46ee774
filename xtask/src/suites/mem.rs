//! The mem suite: one case at a time, each on a fresh server (or a fresh cluster, whose
//! primaries are each read and summed; the record lists each one's share).
//!
//! Per case: start a server; send each command the populator uses once, on a key then
//! deleted (what the server allocates on a command's first call, such as its ~24 KB
//! latency histogram, is then in both readings); wait until the data's memory settles;
//! read INFO memory; populate exactly the declared items; wait until it settles again;
//! read INFO memory (before any verification traffic, whose first calls would count);
//! verify the cardinality; read `MEMORY STATS` and the sample key's encoding; one record.
//!
//! The data's memory is `used_memory − mem_clients_normal`: the clients' buffers (ours and
//! the monitor's) are resized by the server on its own clock (a new client's 16 KB reply
//! buffer shrinks to ~1.5 KB 100 to 200 ms after it connects, often between the
//! readings), so they are left out rather than hoped to cancel.

use std::time::{Duration, Instant};

use anyhow::Context;
use bench_core::client::Client;
use bench_core::cluster::{ClusterClient, KeyedClient, Single, SlotMap, key_slot};
use bench_core::info::Info;
use bench_core::mem::{self, MemCase};
use bench_core::result::{EngineInfo, MemMetrics, MemNode, MemParams, MemRecord, SCHEMA_VERSION};
use bench_core::shutdown::Shutdown;

pub use crate::case::CaseContext;
use crate::instances;

/// Samples of the data's memory that must agree, and the least time between two.
const WINDOW: usize = 10;
const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Relative spread the window may have.
const TOLERANCE: f64 = 0.001;
/// The longest wait for memory to settle.
const MAX_SETTLE: Duration = Duration::from_secs(5);

/// Control connections' timeout.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

fn used(info: &Info) -> u64 {
    info.get_u64("used_memory").unwrap_or(0)
}

/// Every primary's settled reading.
struct Readings {
    infos: Vec<Info>,
    /// The longest wait of them, and whether every one settled.
    secs: f64,
    settled: bool,
}

/// Waits for each primary's data memory to settle in turn.
fn settle_all(
    readers: &mut [Client],
    every: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<Readings> {
    let mut out = Readings {
        infos: Vec::new(),
        secs: 0.0,
        settled: true,
    };
    for reader in readers {
        let (info, secs, settled) = settle(reader, every, shutdown)?;
        out.infos.push(info);
        out.secs = out.secs.max(secs);
        out.settled &= settled;
    }
    Ok(out)
}

/// Which scratch keys warm every primary up: key 0 outside a cluster; on a cluster, for
/// each shard the first scratch key its slots own.
fn warm_up_keys(case: &MemCase, target: &bench_core::engine::Target) -> anyhow::Result<Vec<u64>> {
    if target.cluster.is_none() {
        return Ok(vec![0]);
    }
    let map = SlotMap::discover(&mut Client::connect(
        target.primary(),
        target.tls.as_ref(),
        CONTROL_TIMEOUT,
    )?)?;
    let mut keys = Vec::new();
    for shard in 0..map.shards.len() {
        let index = (0..1_000_000u64)
            .find(|&i| map.owner(key_slot(&case.warm_up_key(i))) == Some(shard))
            .context("no scratch key for a shard")?;
        keys.push(index);
    }
    Ok(keys)
}

/// Memory the server uses for everything but its clients' buffers.
fn data_memory(info: &Info) -> anyhow::Result<u64> {
    let used = info
        .get_u64("used_memory")
        .context("INFO memory has no used_memory")?;
    let clients = info
        .get_u64("mem_clients_normal")
        .context("INFO memory has no mem_clients_normal")?;
    Ok(used.saturating_sub(clients))
}

/// How far apart settle samples are taken: the window spans at least two `serverCron`
/// ticks, so what the server changes on its own clock (it accounts client memory and
/// resizes buffers there) lands inside a window, not after it. 20 ms at the default `hz`.
fn sample_every(hz: u64) -> Duration {
    let two_ticks = Duration::from_millis(2000 / hz.max(1));
    (two_ticks / WINDOW as u32).max(MIN_SAMPLE_EVERY)
}

/// Reads INFO memory until the data's memory settles; returns the last reading, the time
/// it took and whether it settled.
fn settle(
    client: &mut Client,
    every: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<(Info, f64, bool)> {
    let start = Instant::now();
    let mut samples = Vec::new();
    loop {
        let info = Info::parse(&client.call_text(&["INFO", "memory"])?);
        samples.push(data_memory(&info)?);
        let settled = mem::is_settled(&samples, WINDOW, TOLERANCE);
        if settled || start.elapsed() > MAX_SETTLE || shutdown.is_triggered() {
            anyhow::ensure!(!shutdown.is_triggered(), "interrupted");
            return Ok((info, start.elapsed().as_secs_f64(), settled));
        }
        std::thread::sleep(every);
    }
}

pub fn run_case(case: &MemCase, ctx: &CaseContext<'_>) -> anyhow::Result<MemRecord> {
    let server = ctx.deploy(instances::Options {
        config: case.server_config.clone(),
        ..Default::default()
    })?;
    let target = server.target();
    // One control connection per primary reads its memory; the writes go through one
    // client that sends each key to its owner (the one server, outside a cluster).
    let mut readers: Vec<Client> = target
        .endpoints
        .iter()
        .map(|&addr| Client::connect(addr, target.tls.as_ref(), CONTROL_TIMEOUT))
        .collect::<Result<_, _>>()?;
    let (mut cluster, mut single) = match target.cluster {
        Some(_) => (
            Some(ClusterClient::connect(
                target.primary(),
                &target.nodes,
                target.tls.as_ref(),
                CONTROL_TIMEOUT,
            )?),
            None,
        ),
        None => (
            None,
            Some(Client::connect(
                target.primary(),
                target.tls.as_ref(),
                CONTROL_TIMEOUT,
            )?),
        ),
    };
    let mut plain = single.as_mut().map(Single::new);
    let writer: &mut dyn KeyedClient = match (cluster.as_mut(), plain.as_mut()) {
        (Some(c), _) => c,
        (None, Some(p)) => p,
        (None, None) => unreachable!("one of the two is connected"),
    };
    // The monitor's connection is open for both readings (its buffers are left out with
    // ours, as mem_clients_normal).
    let monitor = server.monitor();
    // INFO is warmed up by the monitor's first sample; `hz` may come from server_config.
    let hz = Info::parse(&readers[0].call_text(&["INFO", "server"])?)
        .get_u64("hz")
        .context("INFO server has no hz")?;
    let every = sample_every(hz);
    for index in warm_up_keys(case, &target)? {
        case.warm_up(writer, index)
            .with_context(|| format!("warming up {}", case.name))?;
    }
    let before = settle_all(&mut readers, every, ctx.shutdown)
        .context("waiting for the empty server's memory to settle")?;
    let populated = case
        .populate(writer)
        .with_context(|| format!("populating {}", case.name));
    let settled_after = populated
        .is_ok()
        .then(|| settle_all(&mut readers, every, ctx.shutdown));
    let samples = monitor.stop();
    let populated = populated?;
    let after = settled_after.expect("populated")?;
    case.verify(writer)
        .with_context(|| format!("verifying {}", case.name))?;
    let sample = case.sample_key();
    let encoding = writer.call_keyed(&sample, &[b"OBJECT".as_slice(), b"ENCODING", &sample])?;
    let encoding = match encoding {
        bench_core::client::Value::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        other => anyhow::bail!("OBJECT ENCODING replied {other:?}"),
    };
    let stats = mem::memory_stats(&readers[0].call(&["MEMORY", "STATS"])?);
    let mut nodes = Vec::new();
    let mut delta = 0i64;
    for ((reader, b), a) in readers.iter_mut().zip(&before.infos).zip(&after.infos) {
        let grew = data_memory(a)? as i64 - data_memory(b)? as i64;
        delta += grew;
        nodes.push(MemNode {
            addr: reader.addr().to_string(),
            keys: reader.call_int(&["DBSIZE"])? as u64,
            used_memory_before: used(b),
            used_memory_after: used(a),
            data_bytes: grew,
        });
    }
    if target.cluster.is_none() {
        nodes.clear();
    }
    let sum = |infos: &[Info], f: &dyn Fn(&Info) -> u64| infos.iter().map(f).sum::<u64>();
    let clients = |info: &Info| info.get_u64("mem_clients_normal").unwrap_or(0);
    let field = |name: &'static str| move |info: &Info| info.get_u64(name).unwrap_or(0);
    let (first_after, settle_secs, settled) = (&after.infos[0], after.secs, after.settled);
    let bytes_per_item = delta as f64 / case.items as f64;
    let user = case.user_bytes_per_item();
    let b = ctx.binaries;
    Ok(MemRecord {
        schema: SCHEMA_VERSION,
        run_id: ctx.run_id.to_string(),
        suite: "mem".into(),
        case: case.name.clone(),
        repetition: 1,
        timestamp: crate::rundir::timestamp(),
        valkey: b.info(),
        host: ctx.host.clone(),
        params: MemParams {
            data_type: case.data_type.name().into(),
            items: case.items,
            keys: case.keys,
            key_size: case.key_size,
            value_size: case.value_size,
            field_size: case.field_size,
            expiry: case.expiry,
            server_config: case.server_config.clone(),
            topology: case.topology,
            tls: case.tls,
        },
        metrics: MemMetrics {
            user_bytes_per_item: user,
            bytes_per_item,
            overhead_bytes_per_item: bytes_per_item - user,
            efficiency: if bytes_per_item > 0.0 {
                user / bytes_per_item
            } else {
                0.0
            },
            used_memory_before: sum(&before.infos, &used),
            used_memory_after: sum(&after.infos, &used),
            mem_clients_before: sum(&before.infos, &clients),
            mem_clients_after: sum(&after.infos, &clients),
            used_memory_rss_after: sum(&after.infos, &field("used_memory_rss")),
            fragmentation_ratio: first_after
                .get("mem_fragmentation_ratio")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            allocator_allocated: sum(&after.infos, &field("allocator_allocated")),
            allocator_active: sum(&after.infos, &field("allocator_active")),
            allocator_resident: sum(&after.infos, &field("allocator_resident")),
            encoding,
            populate_items_per_sec: populated.items_per_sec(),
            settle_secs,
            settled,
            memory_stats: stats,
            nodes,
        },
        engine: EngineInfo {
            name: "populate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            argv: Vec::new(),
        },
        monitor: samples,
        server_hosts: server.hosts(ctx.hosts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settle_window_spans_two_server_ticks() {
        assert_eq!(sample_every(10), Duration::from_millis(20));
        assert_eq!(sample_every(100), MIN_SAMPLE_EVERY);
        // hz 1: a tick a second, a 2 s window.
        assert_eq!(sample_every(1) * WINDOW as u32, Duration::from_secs(2));
        assert_eq!(sample_every(0), sample_every(1));
    }
}
