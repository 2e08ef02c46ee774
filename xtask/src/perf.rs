//! The perf suite: one case at a time, each repetition on a fresh server.
//!
//! Per case: a calibration run on its own server measures the rate, which fixes the request
//! counts of the warmup and the measured run (the same for every repetition, so they are
//! comparable). Per repetition: fresh server, preload what the command reads (checked),
//! warmup (discarded), measured run, one record.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bench_core::command::{Command, Preload};
use bench_core::engine::{Engine, EngineError, Load, Measurement, Target};
use bench_core::info::Info;
use bench_core::populate;
use bench_core::result::{EngineInfo, HostInfo, Metrics, PerfParams, ResultRecord, SCHEMA_VERSION};
use bench_core::shutdown::Shutdown;
use bench_core::suite::PerfCase;

use crate::host::local::Local;
use crate::instances::{self, Instance};
use crate::monitor::Monitor;
use crate::topology::{Standalone, Topology};
use crate::valkey::Binaries;

/// valkey-benchmark's default value size, used for commands that carry no value.
pub const DEFAULT_VALUE_SIZE: u64 = 3;

/// Everything a case needs that is not the case itself.
pub struct CaseContext<'a> {
    pub run_id: &'a str,
    pub binaries: &'a Binaries,
    pub host: &'a HostInfo,
    pub engine: &'a dyn Engine,
    pub base_port: u16,
    pub shutdown: &'a Shutdown,
}

/// Request counts fixed for all repetitions of a case.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    pub warmup: u64,
    pub measured: u64,
}

/// Runs every repetition of `case`, handing each record to `sink` as soon as it exists.
pub fn run_case(
    case: &PerfCase,
    ctx: &CaseContext<'_>,
    sink: &mut dyn FnMut(ResultRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let counts = calibrate(case, ctx).with_context(|| format!("calibrating {}", case.name))?;
    for repetition in 1..=case.repetitions {
        let record = run_repetition(case, ctx, counts, repetition)
            .with_context(|| format!("{} repetition {repetition}", case.name))?;
        sink(record)?;
    }
    Ok(())
}

pub fn load(case: &PerfCase, requests: u64) -> Load {
    Load {
        command: case.command,
        value_size: case.value_size.unwrap_or(DEFAULT_VALUE_SIZE),
        pipeline: case.pipeline,
        clients: case.clients,
        keyspace: case.keyspace,
        requests,
        threads: case.client_threads,
    }
}

/// Requests in flight at once; counts are never below a few multiples of it.
fn in_flight(case: &PerfCase) -> u64 {
    u64::from(case.clients) * u64::from(case.pipeline)
}

/// The probe's request count: long enough for a rate, short next to the measured run.
pub fn probe_requests(case: &PerfCase) -> u64 {
    (in_flight(case) * 200).clamp(20_000, 500_000)
}

/// Turns a measured rate into the warmup and measured request counts.
pub fn counts_for_rate(case: &PerfCase, ops_per_sec: f64) -> Counts {
    let floor = in_flight(case) * 10;
    let warmup = if case.warmup_seconds > 0.0 {
        ((ops_per_sec * case.warmup_seconds) as u64).max(in_flight(case))
    } else {
        0
    };
    let measured = ((ops_per_sec * case.measure_seconds) as u64)
        .max(floor)
        .max(1000);
    Counts { warmup, measured }
}

pub fn calibrate(case: &PerfCase, ctx: &CaseContext<'_>) -> anyhow::Result<Counts> {
    let probe = probe_requests(case);
    let mut server = start_server(case, ctx)?;
    prepare(case, &mut server, probe)?;
    let m = measure(ctx, &mut server, &load(case, probe))?;
    Ok(counts_for_rate(case, m.ops_per_sec))
}

pub fn run_repetition(
    case: &PerfCase,
    ctx: &CaseContext<'_>,
    counts: Counts,
    repetition: u32,
) -> anyhow::Result<ResultRecord> {
    let mut server = start_server(case, ctx)?;
    let preloaded_items = prepare(case, &mut server, counts.warmup + counts.measured)?;
    let warmup_series = if counts.warmup > 0 {
        measure(ctx, &mut server, &load(case, counts.warmup))
            .context("warmup")?
            .series
    } else {
        Vec::new()
    };
    let mut record = measured_run(
        case,
        ctx,
        &mut server,
        counts,
        preloaded_items,
        repetition,
        true,
    )?;
    record.metrics.warmup_series = warmup_series;
    Ok(record)
}

/// One measured run on a prepared server: INFO before and after (server CPU per request,
/// usec_per_call), the monitor if asked, the post-run checks, one record.
pub fn measured_run(
    case: &PerfCase,
    ctx: &CaseContext<'_>,
    server: &mut Instance,
    counts: Counts,
    preloaded_items: u64,
    repetition: u32,
    monitored: bool,
) -> anyhow::Result<ResultRecord> {
    let measured_load = load(case, counts.measured);
    let mut control = server.client()?;
    let before = Info::parse(&control.call_text(&["INFO", "everything"])?);
    let monitor = monitored.then(|| Monitor::start(vec![("server".into(), server.addr)]));
    let measured = measure(ctx, server, &measured_load);
    let samples = monitor.map(Monitor::stop).unwrap_or_default();
    let m = measured?;
    let after = Info::parse(&control.call_text(&["INFO", "everything"])?);
    let (server_cpu, usec_per_call) = server_costs(&before, &after, case.command, m.requests);
    check_after(case, server)?;
    let b = ctx.binaries;
    Ok(ResultRecord {
        schema: SCHEMA_VERSION,
        run_id: ctx.run_id.to_string(),
        suite: "perf".into(),
        case: case.name.clone(),
        repetition,
        timestamp: crate::results::timestamp(),
        valkey: b.info(),
        host: ctx.host.clone(),
        params: PerfParams {
            command: case.command.name().into(),
            value_size: case.value_size,
            pipeline: case.pipeline,
            clients: case.clients,
            client_threads: case.client_threads,
            io_threads: case.io_threads,
            keyspace: case.keyspace,
            requests: counts.measured,
            warmup_requests: counts.warmup,
            preloaded_items,
            server_config: case.server_config.clone(),
        },
        metrics: Metrics {
            ops_per_sec: m.ops_per_sec,
            requests: m.requests,
            wall_secs: m.wall_secs,
            latency: m.latency,
            histogram: m.histogram,
            series: m.series,
            warmup_series: Vec::new(),
            client_cpu_us_per_request: m.client_cpu_us_per_request,
            server_cpu_us_per_request: server_cpu,
            usec_per_call,
        },
        engine: EngineInfo {
            name: ctx.engine.name().into(),
            version: ctx.engine.version().into(),
            argv: ctx
                .engine
                .describe(&Target::standalone(server.addr), &measured_load),
        },
        monitor: samples,
    })
}

/// The server's CPU per request (µs) and the command's usec_per_call over a run, from INFO
/// read just before and just after it.
pub fn server_costs(
    before: &Info,
    after: &Info,
    command: Command,
    requests: u64,
) -> (Option<f64>, Option<f64>) {
    let cpu = match (before.cpu_seconds(), after.cpu_seconds()) {
        (Some(b), Some(a)) if requests > 0 => Some((a - b) * 1e6 / requests as f64),
        _ => None,
    };
    let name = command.name().to_ascii_lowercase();
    let (b, a) = (before.commandstats(), after.commandstats());
    let usec_per_call = a.get(&name).and_then(|&(calls, usec)| {
        let (calls0, usec0) = b.get(&name).copied().unwrap_or((0, 0));
        (calls > calls0).then(|| (usec - usec0) as f64 / (calls - calls0) as f64)
    });
    (cpu, usec_per_call)
}

pub fn start_server(case: &PerfCase, ctx: &CaseContext<'_>) -> anyhow::Result<Instance> {
    let options = instances::Options {
        base_port: ctx.base_port,
        config: case.server_config.clone(),
        ..Default::default()
    };
    let deployment = Standalone.deploy(&Local, &ctx.binaries.server, &options, ctx.shutdown)?;
    Ok(deployment.into_primary())
}

/// Writes what the command reads and returns how many items that was. `requests` is how
/// many requests will run against this server (list pops need that many elements).
pub fn prepare(case: &PerfCase, server: &mut Instance, requests: u64) -> anyhow::Result<u64> {
    let value_size = case.value_size.unwrap_or(DEFAULT_VALUE_SIZE);
    let mut client = server.client()?;
    let items = match case.command.preload() {
        Preload::None => 0,
        Preload::Strings => populate::strings(&mut client, case.keyspace, value_size)?.items,
        // A pipelined client can send up to one window past -n; keep a margin so no pop
        // ever finds the list empty (checked after the run).
        Preload::List => {
            let count = requests + 2 * in_flight(case);
            populate::list(&mut client, "mylist", count, value_size)?.items
        }
    };
    Ok(items)
}

pub fn measure(
    ctx: &CaseContext<'_>,
    server: &mut Instance,
    load: &Load,
) -> anyhow::Result<Measurement> {
    let addr: SocketAddr = server.addr;
    match ctx
        .engine
        .run(&Target::standalone(addr), load, ctx.shutdown)
    {
        Ok(m) => Ok(m),
        Err(EngineError::Interrupted) => bail!("interrupted"),
        Err(e) => {
            if !server.is_running() {
                bail!(
                    "{e}\nthe server exited; last log lines:\n{}",
                    server.log_tail(20)
                );
            }
            Err(e.into())
        }
    }
}

/// Checks that the run measured what it claims: the server survived, and list pops never
/// found the list empty.
fn check_after(case: &PerfCase, server: &Instance) -> anyhow::Result<()> {
    let mut client = server
        .client()
        .context("the server did not survive the run")?;
    if matches!(case.command, Command::Lpop | Command::Rpop) {
        let left = client.call_int(&["LLEN", "mylist"])?;
        if left <= 0 {
            bail!("mylist ran empty during the run, so some pops measured nil replies");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_core::suite::{PerfSpec, QUICK_PERF};

    fn case(pipeline: u32) -> PerfCase {
        let mut c = PerfSpec::from_toml(QUICK_PERF).unwrap().expand().remove(0);
        c.pipeline = pipeline;
        c.clients = 50;
        c.warmup_seconds = 0.5;
        c.measure_seconds = 2.0;
        c
    }

    #[test]
    fn counts_follow_the_rate_with_floors() {
        let c = case(1);
        assert_eq!(
            counts_for_rate(&c, 100_000.0),
            Counts {
                warmup: 50_000,
                measured: 200_000
            }
        );
        // A crawling server still gets several windows of requests.
        assert_eq!(
            counts_for_rate(&c, 10.0),
            Counts {
                warmup: 50,
                measured: 1000
            }
        );
        let deep = case(16);
        assert_eq!(counts_for_rate(&deep, 10.0).measured, 8000);
        let mut none = case(1);
        none.warmup_seconds = 0.0;
        assert_eq!(counts_for_rate(&none, 100_000.0).warmup, 0);
    }

    #[test]
    fn server_costs_come_from_info_deltas() {
        let info = |cpu: f64, calls: u64, usec: u64| {
            Info::parse(&format!(
                "# CPU\r\nused_cpu_sys:0\r\nused_cpu_user:{cpu}\r\n# Commandstats\r\ncmdstat_get:calls={calls},usec={usec},usec_per_call=1\r\n"
            ))
        };
        let (cpu, per_call) = server_costs(
            &info(1.0, 100, 50),
            &info(1.5, 1100, 1050),
            Command::Get,
            1000,
        );
        assert!((cpu.unwrap() - 500.0).abs() < 1e-6);
        assert_eq!(per_call, Some(1.0));
        let (_, none) = server_costs(&info(1.0, 100, 50), &info(1.5, 100, 50), Command::Set, 1000);
        assert_eq!(none, None);
    }

    #[test]
    fn probe_is_bounded() {
        assert_eq!(probe_requests(&case(1)), 20_000);
        assert_eq!(probe_requests(&case(16)), 160_000);
        assert_eq!(probe_requests(&case(1000)), 500_000);
    }
}
