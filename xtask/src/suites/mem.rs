//! The mem suite: one case at a time, each on a fresh server.
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
use bench_core::info::Info;
use bench_core::mem::{self, MemCase};
use bench_core::result::{EngineInfo, MemMetrics, MemParams, MemRecord, SCHEMA_VERSION};
use bench_core::shutdown::Shutdown;

use crate::instances;
pub use crate::run::CaseContext;

/// Samples of the data's memory that must agree, and the least time between two.
const WINDOW: usize = 10;
const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Relative spread the window may have.
const TOLERANCE: f64 = 0.001;
/// The longest wait for memory to settle.
const MAX_SETTLE: Duration = Duration::from_secs(5);

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
    let mut client = server.client()?;
    // The monitor's connection is open for both readings (its buffers are left out with
    // ours, as mem_clients_normal).
    let monitor = server.monitor();
    // INFO is warmed up by the monitor's first sample; `hz` may come from server_config.
    let hz = Info::parse(&client.call_text(&["INFO", "server"])?)
        .get_u64("hz")
        .context("INFO server has no hz")?;
    let every = sample_every(hz);
    case.warm_up(&mut client)
        .with_context(|| format!("warming up {}", case.name))?;
    let (before, _, _) = settle(&mut client, every, ctx.shutdown)
        .context("waiting for the empty server's memory to settle")?;
    let populated = case
        .populate(&mut client)
        .with_context(|| format!("populating {}", case.name));
    let settled_after = populated
        .is_ok()
        .then(|| settle(&mut client, every, ctx.shutdown));
    let samples = monitor.stop();
    let populated = populated?;
    let (after, settle_secs, settled) = settled_after.expect("populated")?;
    case.verify(&mut client)
        .with_context(|| format!("verifying {}", case.name))?;
    let stats = mem::memory_stats(&client.call(&["MEMORY", "STATS"])?);
    let encoding = client.call_text(&[b"OBJECT".as_slice(), b"ENCODING", &case.sample_key()])?;
    let used = |info: &Info| info.get_u64("used_memory").unwrap_or(0);
    let clients = |info: &Info| info.get_u64("mem_clients_normal").unwrap_or(0);
    let delta = data_memory(&after)? as f64 - data_memory(&before)? as f64;
    let bytes_per_item = delta / case.items as f64;
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
            used_memory_before: used(&before),
            used_memory_after: used(&after),
            mem_clients_before: clients(&before),
            mem_clients_after: clients(&after),
            used_memory_rss_after: after.get_u64("used_memory_rss").unwrap_or(0),
            fragmentation_ratio: after
                .get("mem_fragmentation_ratio")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            allocator_allocated: after.get_u64("allocator_allocated").unwrap_or(0),
            allocator_active: after.get_u64("allocator_active").unwrap_or(0),
            allocator_resident: after.get_u64("allocator_resident").unwrap_or(0),
            encoding,
            populate_items_per_sec: populated.items_per_sec(),
            settle_secs,
            settled,
            memory_stats: stats,
        },
        engine: EngineInfo {
            name: "populate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            argv: Vec::new(),
        },
        monitor: samples,
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
