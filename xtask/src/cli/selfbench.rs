//! `cargo xtask selfbench`: our generator against valkey-benchmark, same server, same
//! load, alternating, to show what each costs per request.
//!
//! One fresh server, 100,000 keys of 32 bytes preloaded; GET from 50 connections at
//! pipeline 1 and 16. Each trial runs a fixed number of requests; rounds alternate which
//! engine goes first. A third client, the floor (`loadgen/floor.rs`: epoll, one send and
//! one read per batch, nothing timed or recorded), shows what the kernel's loopback TCP work
//! and a minimum of user work cost, so each engine's overhead over it is visible. Client CPU is user + system time: for the native engine this
//! process's (`RUSAGE_SELF`), for valkey-benchmark the reaped child's (`RUSAGE_CHILDREN`),
//! each over the whole run, setup included.

use std::time::Duration;

use bench_core::command::Command;
use bench_core::engine::{Engine, Load, Target};
use bench_core::loadgen::CpuTime;
use bench_core::loadgen::engine::NativeEngine;
use bench_core::loadgen::floor::FloorEngine;
use bench_core::populate;
use bench_core::shutdown::Shutdown;
use bench_core::stats::median;
use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::ValkeyArgs;
use crate::host::local::Local;
use crate::instances;
use crate::process::reaped_children_cpu;
use crate::topology::{Standalone, Topology};
use crate::valkey_benchmark::ValkeyBenchmark;

const KEYSPACE: u64 = 100_000;
const VALUE_SIZE: u64 = 32;
const CLIENTS: u32 = 50;

#[derive(Args, Debug)]
pub struct SelfbenchCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    /// Trials per engine and pipeline depth.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Requests per trial at pipeline 1 (ten times as many at pipeline 16).
    #[arg(long, default_value_t = 300_000)]
    pub requests: u64,
    #[arg(long, default_value_t = 9000)]
    pub base_port: u16,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Debug, Serialize)]
struct Trial {
    engine: &'static str,
    pipeline: u32,
    round: u32,
    requests: u64,
    ops_per_sec: f64,
    cpu_us_per_request: f64,
    user_us_per_request: f64,
    system_us_per_request: f64,
}

impl SelfbenchCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let binaries = self.valkey.binaries(shutdown)?;
        let vb = ValkeyBenchmark::new(&binaries.benchmark, shutdown)?;
        let native = NativeEngine;
        let floor = FloorEngine;
        let options = instances::Options {
            base_port: self.base_port,
            ..Default::default()
        };
        let server = Standalone
            .deploy(&Local, &binaries.server, &options, shutdown)?
            .into_primary();
        let populated = populate::strings(&mut server.client()?, KEYSPACE, VALUE_SIZE)?;
        eprintln!(
            "Valkey {} on :{}; preloaded {KEYSPACE} keys of {VALUE_SIZE} B ({:.0} keys/s); {} rounds",
            binaries.version,
            server.port(),
            populated.items_per_sec(),
            self.rounds
        );
        let mut trials = Vec::new();
        for pipeline in [1u32, 16] {
            let load = Load {
                command: Command::Get,
                value_size: VALUE_SIZE,
                pipeline,
                clients: CLIENTS,
                keyspace: KEYSPACE,
                requests: self.requests * if pipeline > 1 { 10 } else { 1 },
                threads: 1,
            };
            for round in 1..=self.rounds {
                // Rotate which engine goes first.
                let mut engines: [&dyn Engine; 3] = [&native, &vb, &floor];
                engines.rotate_left(round as usize % 3);
                for engine in engines {
                    let trial = trial(engine, server.addr, &load, round, shutdown)?;
                    eprintln!(
                        "P{pipeline} round {round} {:<16} {:>12.0} ops/s {:>6.3} µs CPU/request (user {:.3}, system {:.3})",
                        trial.engine,
                        trial.ops_per_sec,
                        trial.cpu_us_per_request,
                        trial.user_us_per_request,
                        trial.system_us_per_request
                    );
                    trials.push(trial);
                }
            }
        }
        drop(server);
        let summary = summarize(&trials);
        if self.json {
            println!("{}", json!({"trials": trials, "summary": summary}));
        } else {
            println!(
                "| pipeline | native ops/s | valkey-benchmark ops/s | ratio | native CPU µs/req (user + sys) | valkey-benchmark CPU µs/req (user + sys) | ratio | floor CPU µs/req (user + sys) | floor / valkey-benchmark |"
            );
            println!(
                "| -------: | -----------: | ---------------------: | ----: | -----------------------------: | ---------------------------------------: | ----: | ----------------------------: | -----------------------: |"
            );
            for s in &summary {
                println!(
                    "| {} | {:.0} | {:.0} | {:.2} | {:.3} ({:.3} + {:.3}) | {:.3} ({:.3} + {:.3}) | {:.2} | {:.3} ({:.3} + {:.3}) | {:.2} |",
                    s.pipeline,
                    s.native_ops,
                    s.vb_ops,
                    s.ops_ratio,
                    s.native_cpu,
                    s.native_user,
                    s.native_system,
                    s.vb_cpu,
                    s.vb_user,
                    s.vb_system,
                    s.cpu_ratio,
                    s.floor_cpu,
                    s.floor_user,
                    s.floor_system,
                    s.floor_cpu / s.vb_cpu
                );
            }
            println!(
                "\nmedians over {} rounds; ratio = native / valkey-benchmark; floor = a bare epoll client that only sends and counts replies",
                self.rounds
            );
        }
        Ok(())
    }
}

fn trial(
    engine: &dyn Engine,
    addr: std::net::SocketAddr,
    load: &Load,
    round: u32,
    shutdown: &Shutdown,
) -> anyhow::Result<Trial> {
    let (self_before, children_before) = (CpuTime::of(libc::RUSAGE_SELF), reaped_children_cpu());
    let m = engine.run(&Target::standalone(addr), load, shutdown)?;
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
    })
}

#[derive(Debug, Serialize)]
struct Summary {
    pipeline: u32,
    native_ops: f64,
    vb_ops: f64,
    ops_ratio: f64,
    native_cpu: f64,
    vb_cpu: f64,
    cpu_ratio: f64,
    native_user: f64,
    native_system: f64,
    vb_user: f64,
    vb_system: f64,
    floor_cpu: f64,
    floor_user: f64,
    floor_system: f64,
}

fn summarize(trials: &[Trial]) -> Vec<Summary> {
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
        out.push(Summary {
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
