//! What one measured perf run makes: the server's costs per request from INFO read just
//! before and just after it, and its record (the perf suite's repetitions and slices, and
//! `capacity`'s trials).

use bench_core::command::Command;
use bench_core::engine::Measurement;
use bench_core::info::Info;
use bench_core::perf::PerfCase;
use bench_core::result::{
    EngineInfo, Metrics, MonitorSample, PerfParams, ResultRecord, SCHEMA_VERSION,
};

use super::perf::Counts;
use crate::case::{CaseContext, Server};

/// What one measured run gave, to be made a record.
pub struct Run {
    pub measurement: Measurement,
    pub costs: ServerCosts,
    pub monitor: Vec<MonitorSample>,
    pub counts: Counts,
    pub preloaded_items: u64,
    /// The engine's invocation of the measured run.
    pub argv: Vec<String>,
}

/// The perf record of `run`, measured on `server` as the `repetition`th of `case`.
pub fn record(
    case: &PerfCase,
    ctx: &CaseContext<'_>,
    server: &dyn Server,
    run: Run,
    repetition: u32,
) -> ResultRecord {
    let Run {
        measurement: m,
        costs,
        monitor,
        counts,
        preloaded_items,
        argv,
    } = run;
    let b = ctx.binaries;
    ResultRecord {
        schema: SCHEMA_VERSION,
        run_id: ctx.run_id.to_string(),
        suite: "perf".into(),
        case: case.name.clone(),
        repetition,
        timestamp: crate::rundir::timestamp(),
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
            topology: case.topology,
            placement: case.placement.clone(),
            tls: case.tls,
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
            server_cpu_us_per_request: costs.cpu,
            server_user_us_per_request: costs.user,
            server_sys_us_per_request: costs.sys,
            usec_per_call: costs.usec_per_call,
            nodes: m.nodes,
            redirects: m.redirects,
            client_hosts: m.client_hosts,
            offered_rate: m.offered_rate,
            latency_from: m.latency_from,
            late_sends: m.late_sends,
        },
        engine: EngineInfo {
            name: ctx.engine.name().into(),
            version: ctx.engine.version().into(),
            argv,
        },
        monitor,
        server_hosts: server.hosts(ctx.hosts),
    }
}

/// What a run cost the server, per request, from INFO read just before and just after
/// it; `None` where INFO lacks the field.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerCosts {
    /// CPU time, user + system, µs per request.
    pub cpu: Option<f64>,
    /// Its user-space part, µs per request.
    pub user: Option<f64>,
    /// Its kernel part, µs per request.
    pub sys: Option<f64>,
    /// The command's own `usec_per_call` over the run (commandstats).
    pub usec_per_call: Option<f64>,
}

/// The server's CPU per request (µs; in all, user and system) and the command's
/// usec_per_call over a run, from INFO read just before and just after it.
pub fn server_costs(before: &Info, after: &Info, command: Command, requests: u64) -> ServerCosts {
    let per_request = |b: Option<f64>, a: Option<f64>| match (b, a) {
        (Some(b), Some(a)) if requests > 0 => Some((a - b) * 1e6 / requests as f64),
        _ => None,
    };
    let field = |info: &Info, name: &str| info.get_f64(name);
    let name = command.name().to_ascii_lowercase();
    let (b, a) = (before.commandstats(), after.commandstats());
    let usec_per_call = a.get(&name).and_then(|&(calls, usec)| {
        let (calls0, usec0) = b.get(&name).copied().unwrap_or((0, 0));
        (calls > calls0).then(|| (usec - usec0) as f64 / (calls - calls0) as f64)
    });
    ServerCosts {
        cpu: per_request(before.cpu_seconds(), after.cpu_seconds()),
        user: per_request(
            field(before, "used_cpu_user"),
            field(after, "used_cpu_user"),
        ),
        sys: per_request(field(before, "used_cpu_sys"), field(after, "used_cpu_sys")),
        usec_per_call,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_costs_come_from_info_deltas() {
        let info = |cpu: f64, calls: u64, usec: u64| {
            Info::parse(&format!(
                "# CPU\r\nused_cpu_sys:0\r\nused_cpu_user:{cpu}\r\n# Commandstats\r\ncmdstat_get:calls={calls},usec={usec},usec_per_call=1\r\n"
            ))
        };
        let costs = server_costs(
            &info(1.0, 100, 50),
            &info(1.5, 1100, 1050),
            Command::Get,
            1000,
        );
        assert!((costs.cpu.unwrap() - 500.0).abs() < 1e-6);
        assert!((costs.user.unwrap() - 500.0).abs() < 1e-6);
        assert_eq!(costs.sys, Some(0.0));
        assert_eq!(costs.usec_per_call, Some(1.0));
        let none = server_costs(&info(1.0, 100, 50), &info(1.5, 100, 50), Command::Set, 1000);
        assert_eq!(none.usec_per_call, None);
    }
}
