//! Selfbench: our generator against valkey-benchmark, same server, same load,
//! alternating, to show what each costs per request.
//!
//! One fresh server, 100,000 keys of 32 bytes preloaded; GET from 50 connections at
//! pipeline 1 and 16. Each trial runs a fixed number of requests; rounds alternate which
//! engine goes first. A third client, the floor (`loadgen/floor.rs`: epoll, one send and
//! one read per batch, nothing timed or recorded), shows what the kernel's loopback TCP
//! work and a minimum of user work cost, so each engine's overhead over it is visible.
//! Client CPU is user + system time: for the native engine this process's
//! (`RUSAGE_SELF`), for valkey-benchmark the reaped child's (`RUSAGE_CHILDREN`), each over
//! the whole run, setup included. Where the machine has two CPUs or more, the server runs
//! on one and every client on another (the trials run on a thread pinned there, which the
//! generator's threads and valkey-benchmark inherit): unpinned, the scheduler moved the
//! clients' kernel cost from trial to trial by more than the differences measured.

use std::time::{Duration, Instant};

use bench_core::command::Command;
use bench_core::compare::family::median_interval;
use bench_core::engine::{Engine, Load, Target};
use bench_core::loadgen::CpuTime;
use bench_core::loadgen::engine::{self, NativeEngine};
use bench_core::loadgen::floor::FloorEngine;
use bench_core::placement::Placement;
use bench_core::shutdown::Shutdown;
use bench_core::stats::median;
use serde::Serialize;

use crate::case::preload::Preload;
use crate::case::{CaseContext, Server};
use crate::instances;
use crate::process::reaped_children_cpu;

pub mod instructions;

const KEYSPACE: u64 = 100_000;
const VALUE_SIZE: u64 = 32;
const CLIENTS: u32 = 50;

#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub engine: &'static str,
    pub pipeline: u32,
    pub round: u32,
    pub requests: u64,
    pub ops_per_sec: f64,
    pub cpu_us_per_request: f64,
    pub user_us_per_request: f64,
    pub system_us_per_request: f64,
    /// The server's CPU per request (side-by-side modes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_us_per_request: Option<f64>,
}

/// Runs `rounds` rounds per pipeline depth, each engine once per round (`ctx.engine` is
/// valkey-benchmark's; the native one and the floor are ours), and returns every trial as
/// it ran and the medians. Each step's one-line summary goes to `progress` as it happens.
pub fn run(
    ctx: &CaseContext<'_>,
    placement: &Placement,
    rounds: u32,
    requests: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<(Vec<Trial>, Vec<Summary>)> {
    let mut server = ctx.deploy(instances::Options {
        config: placement.server_config().into_iter().collect(),
        ..Default::default()
    })?;
    let before = bench_core::placement::thread_cpus()?;
    if let Some(client) = &placement.client_cpus {
        bench_core::placement::pin_thread(&client.ids().collect::<Vec<_>>())?;
    }
    let trials = trials(ctx, &mut *server, rounds, requests, progress);
    bench_core::placement::pin_thread(&before)?;
    drop(server);
    let trials = trials?;
    let summary = summarize(&trials, rounds);
    Ok((trials, summary))
}

fn trials(
    ctx: &CaseContext<'_>,
    server: &mut dyn Server,
    rounds: u32,
    requests: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<Trial>> {
    let shutdown = ctx.shutdown;
    let (native, floor, vb) = (NativeEngine, FloorEngine, ctx.engine);
    let started = Instant::now();
    let preloaded = server.preload(&Preload::strings(engine::workload(&load(1, 0))))?;
    progress(format!(
        "Valkey {} on :{}; preloaded {preloaded} keys of {VALUE_SIZE} B ({:.0} keys/s); {rounds} rounds",
        ctx.binaries.version,
        server.port(),
        preloaded as f64 / started.elapsed().as_secs_f64().max(1e-9),
    ));
    let target = server.target();
    let mut trials = Vec::new();
    for pipeline in [1u32, 16] {
        let load = load(pipeline, requests * if pipeline > 1 { 10 } else { 1 });
        for round in 1..=rounds {
            // Rotate which engine goes first.
            let mut engines: [&dyn Engine; 3] = [&native, vb, &floor];
            engines.rotate_left(round as usize % 3);
            for engine in engines {
                let trial = trial(engine, &target, &load, round, shutdown)?;
                progress(format!(
                    "P{pipeline} round {round} {:<16} {:>12.0} ops/s {:>6.3} µs CPU/request (user {:.3}, system {:.3})",
                    trial.engine,
                    trial.ops_per_sec,
                    trial.cpu_us_per_request,
                    trial.user_us_per_request,
                    trial.system_us_per_request
                ));
                trials.push(trial);
            }
        }
    }
    Ok(trials)
}

fn load(pipeline: u32, requests: u64) -> Load {
    Load {
        command: Command::Get,
        value_size: VALUE_SIZE,
        pipeline,
        clients: CLIENTS,
        keyspace: KEYSPACE,
        requests,
        threads: 1,
        client_cpus: Vec::new(),
        rate: None,
    }
}

fn trial(
    engine: &dyn Engine,
    target: &Target,
    load: &Load,
    round: u32,
    shutdown: &Shutdown,
) -> anyhow::Result<Trial> {
    let (self_before, children_before) = (CpuTime::of(libc::RUSAGE_SELF), reaped_children_cpu());
    let m = engine.run(target, load, shutdown)?;
    let cpu = if engine.name() != "valkey-benchmark" {
        CpuTime::of(libc::RUSAGE_SELF) - self_before
    } else {
        reaped_children_cpu() - children_before
    };
    let per_request = |s: f64| s * 1e6 / m.requests.max(1) as f64;
    // Pause between trials so one engine's tail does not overlap the next one's start.
    std::thread::sleep(Duration::from_millis(200));
    Ok(Trial {
        engine: engine.name(),
        pipeline: load.pipeline,
        round,
        requests: m.requests,
        ops_per_sec: m.ops_per_sec,
        cpu_us_per_request: per_request(cpu.total()),
        user_us_per_request: per_request(cpu.user),
        system_us_per_request: per_request(cpu.system),
        server_us_per_request: None,
    })
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub pipeline: u32,
    pub native_ops: f64,
    pub vb_ops: f64,
    pub ops_ratio: f64,
    pub native_cpu: f64,
    pub vb_cpu: f64,
    pub cpu_ratio: f64,
    pub native_user: f64,
    pub native_system: f64,
    pub vb_user: f64,
    pub vb_system: f64,
    pub floor_cpu: f64,
    pub floor_user: f64,
    pub floor_system: f64,
    /// Native CPU over the floor's within each round (they run back to back), and their
    /// median: the generator's overhead over the least a client costs.
    pub native_floor_ratios: Vec<f64>,
    pub native_floor_ratio: f64,
    /// The distribution-free 95% interval of that median (low, high, its exact
    /// coverage); none with fewer than 6 rounds.
    pub native_floor_interval: Option<(f64, f64, f64)>,
}

pub fn summarize(trials: &[Trial], rounds: u32) -> Vec<Summary> {
    let mut out = Vec::new();
    for pipeline in [1, 16] {
        let of = |engine: &str, f: fn(&Trial) -> f64| {
            let v: Vec<f64> = trials
                .iter()
                .filter(|t| t.pipeline == pipeline && t.engine == engine)
                .map(f)
                .collect();
            median(&v).unwrap_or(f64::NAN)
        };
        let (native_ops, vb_ops) = (
            of("native", |t| t.ops_per_sec),
            of("valkey-benchmark", |t| t.ops_per_sec),
        );
        let (native_cpu, vb_cpu) = (
            of("native", |t| t.cpu_us_per_request),
            of("valkey-benchmark", |t| t.cpu_us_per_request),
        );
        let native_floor_ratios: Vec<f64> = (1..=rounds)
            .filter_map(|round| {
                let at = |engine: &str| {
                    trials
                        .iter()
                        .find(|t| t.pipeline == pipeline && t.round == round && t.engine == engine)
                        .map(|t| t.cpu_us_per_request)
                };
                Some(at("native")? / at("floor")?)
            })
            .collect();
        out.push(Summary {
            native_floor_ratio: median(&native_floor_ratios).unwrap_or(f64::NAN),
            native_floor_interval: median_interval(&native_floor_ratios, 0.95),
            native_floor_ratios,
            native_user: of("native", |t| t.user_us_per_request),
            native_system: of("native", |t| t.system_us_per_request),
            vb_user: of("valkey-benchmark", |t| t.user_us_per_request),
            vb_system: of("valkey-benchmark", |t| t.system_us_per_request),
            floor_cpu: of("floor", |t| t.cpu_us_per_request),
            floor_user: of("floor", |t| t.user_us_per_request),
            floor_system: of("floor", |t| t.system_us_per_request),
            pipeline,
            native_ops,
            vb_ops,
            ops_ratio: native_ops / vb_ops,
            native_cpu,
            vb_cpu,
            cpu_ratio: native_cpu / vb_cpu,
        });
    }
    out
}

/// What a way of deploying costs per request, side by side with another: the native
/// engine, the same GET load, on each `(name, context)`'s server (every one up and
/// preloaded before the first trial, all stopped at the end). Rounds rotate which goes
/// first; trials of one round run back to back. Each trial's server CPU is the INFO
/// `used_cpu_user + used_cpu_sys` delta over it (summed over a cluster's primaries).
///
/// `selfbench --cluster`: standalone, a one-shard cluster (the same load on one server:
/// routing, kept request bytes, the redirect bookkeeping are the difference) and a
/// three-shard cluster (each connection's window split over three sockets, so its sends
/// carry fewer requests each). `selfbench --tls`: one server over plain TCP and one over
/// TLS, both from the TLS build.
///
/// With `placement` pinned, servers and client run on their own CPUs: unpinned, where
/// the scheduler puts them moves the client's kernel cost (a sender whose receiver runs
/// on the other core allocates its socket buffers from cold slabs), which changed a
/// cluster-against-standalone ratio from run to run by more than the difference measured.
pub fn side_by_side(
    modes: &[(&'static str, &CaseContext<'_>)],
    placement: &Placement,
    rounds: u32,
    requests: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<(Vec<Trial>, Vec<ModeSummary>)> {
    let native = NativeEngine;
    let mut servers = Vec::new();
    for &(name, ctx) in modes {
        let mut server = ctx.deploy(instances::Options {
            config: placement.server_config().into_iter().collect(),
            ..Default::default()
        })?;
        let preloaded = server.preload(&Preload::strings(engine::workload(&load(1, 0))))?;
        progress(format!(
            "{name}: Valkey {} from :{}, {preloaded} keys of {VALUE_SIZE} B",
            ctx.binaries.version,
            server.port()
        ));
        servers.push((name, server));
    }
    let shutdown = modes[0].1.shutdown;
    let mut trials = Vec::new();
    for pipeline in [1u32, 16] {
        let load = Load {
            client_cpus: placement
                .client_cpus
                .as_ref()
                .map(|c| c.ids().collect())
                .unwrap_or_default(),
            ..load(pipeline, requests * if pipeline > 1 { 10 } else { 1 })
        };
        for round in 1..=rounds {
            let mut order: Vec<usize> = (0..servers.len()).collect();
            order.rotate_left(round as usize % servers.len());
            for i in order {
                let (name, server) = &mut servers[i];
                let target = server.target();
                let before = server.info()?.cpu_seconds();
                let mut t = trial(&native, &target, &load, round, shutdown)?;
                let after = server.info()?.cpu_seconds();
                t.engine = name;
                t.server_us_per_request = before
                    .zip(after)
                    .map(|(b, a)| (a - b) * 1e6 / t.requests.max(1) as f64);
                progress(format!(
                    "P{pipeline} round {round} {name:<12} {:>12.0} ops/s {:>6.3} µs client CPU/request (user {:.3}, system {:.3}), server {}",
                    t.ops_per_sec,
                    t.cpu_us_per_request,
                    t.user_us_per_request,
                    t.system_us_per_request,
                    t.server_us_per_request
                        .map_or("?".to_string(), |s| format!("{s:.3} µs/request")),
                ));
                trials.push(t);
            }
        }
    }
    drop(servers);
    let names: Vec<&'static str> = modes.iter().map(|&(name, _)| name).collect();
    let summary = summarize_modes(&trials, &names, rounds);
    Ok((trials, summary))
}

/// Per pipeline depth and mode (the first is the base), the medians of the trials and
/// the ratios to the base. A round runs every mode back to back, so a ratio within a
/// round cancels the machine's drift between rounds (adjacent runs on this VM differ by
/// ~15%, rounds minutes apart by more); the median of those ratios is the figure.
fn summarize_modes(trials: &[Trial], modes: &[&'static str], rounds: u32) -> Vec<ModeSummary> {
    let mut summary = Vec::new();
    for pipeline in [1, 16] {
        let of = |mode: &str, f: fn(&Trial) -> Option<f64>| {
            let v: Vec<f64> = trials
                .iter()
                .filter(|t| t.pipeline == pipeline && t.engine == mode)
                .filter_map(f)
                .collect();
            median(&v).unwrap_or(f64::NAN)
        };
        let paired = |mode: &str, f: fn(&Trial) -> Option<f64>| -> Vec<f64> {
            (1..=rounds)
                .filter_map(|round| {
                    let at = |m: &str| {
                        trials
                            .iter()
                            .find(|t| t.pipeline == pipeline && t.round == round && t.engine == m)
                            .and_then(f)
                    };
                    Some(at(mode)? / at(modes[0])?)
                })
                .collect()
        };
        let client = |t: &Trial| Some(t.cpu_us_per_request);
        let server = |t: &Trial| t.server_us_per_request;
        for &mode in modes {
            let client_ratios = paired(mode, client);
            summary.push(ModeSummary {
                pipeline,
                mode,
                ops_per_sec: of(mode, |t| Some(t.ops_per_sec)),
                client_cpu: of(mode, client),
                client_ratio: median(&client_ratios).unwrap_or(f64::NAN),
                client_ratios,
                server_cpu: of(mode, server),
                server_ratio: median(&paired(mode, server)).unwrap_or(f64::NAN),
            });
        }
    }
    summary
}

/// Medians over the rounds of one mode at one pipeline depth, µs per request, and its
/// ratios to the first mode's: the median over rounds of the ratio within each round.
#[derive(Debug, Serialize)]
pub struct ModeSummary {
    pub pipeline: u32,
    pub mode: &'static str,
    pub ops_per_sec: f64,
    pub client_cpu: f64,
    pub client_ratio: f64,
    /// Each round's client ratio, in round order: how far one round can be off.
    pub client_ratios: Vec<f64>,
    pub server_cpu: f64,
    pub server_ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(engine: &'static str, pipeline: u32, round: u32, cpu: f64) -> Trial {
        Trial {
            engine,
            pipeline,
            round,
            requests: 1000,
            ops_per_sec: 1.0,
            cpu_us_per_request: cpu,
            user_us_per_request: cpu / 2.0,
            system_us_per_request: cpu / 2.0,
            server_us_per_request: Some(2.0 * cpu),
        }
    }

    #[test]
    fn side_by_side_ratios_are_taken_within_a_round() {
        // The machine drifts from round to round; the candidate costs 1.1x within two of
        // the three rounds. Each mode's median (2.0 and 2.0) would read 1.0.
        let mut trials = Vec::new();
        for (round, base, candidate) in [(1, 1.0, 1.1), (2, 2.0, 2.2), (3, 3.0, 2.0)] {
            for pipeline in [1, 16] {
                trials.push(trial("base", pipeline, round, base));
                trials.push(trial("candidate", pipeline, round, candidate));
            }
        }
        let summary = summarize_modes(&trials, &["base", "candidate"], 3);
        let candidate = summary
            .iter()
            .find(|s| s.pipeline == 16 && s.mode == "candidate")
            .unwrap();
        assert!((candidate.client_ratio - 1.1).abs() < 1e-9, "{candidate:?}");
        assert!((candidate.server_ratio - 1.1).abs() < 1e-9);
        assert_eq!(candidate.client_ratios.len(), 3);
        assert_eq!(candidate.client_cpu, 2.0);
        let base = summary.iter().find(|s| s.mode == "base").unwrap();
        assert_eq!(base.client_ratio, 1.0);
    }
}
