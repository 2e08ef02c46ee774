//! `selfbench --instructions`: each client's user-space instructions per request, counted,
//! where the CPU-time figures of one run move by more than the differences between the
//! clients.
//!
//! Each client (the floor and the native generator) runs alone in a child of this program
//! (`selfbench --client ENGINE`, nothing else in it) under `valgrind --tool=callgrind`,
//! twice: with `n` and with `3n` requests. What a request costs is the difference over the
//! `2n` more requests, so start-up, connecting and the report cancel out. What follows the
//! clock instead of the requests does not: the native client's 50 connections look at the
//! clock and the stop flags every 50 ms (about 1.3 million instructions a second under
//! callgrind, measured on an idle run), and the longer run lasts longer, which adds about
//! 15 instructions a request at pipeline 16 and 110 at pipeline 1 on the 2-core VM, more on
//! a slower or busier machine. Server and clients are pinned apart as in the timed mode:
//! how many connections one `epoll_wait` finds ready also moves the per-request share of
//! the loop around it. So compare counts taken side by side. A count cannot see the kernel:
//! the system calls (the same for both clients, one `sendto` and one `recvfrom` per batch)
//! and the TCP work they do, most of each client's CPU on loopback, nor what a cache miss
//! costs.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::engine::{Engine, Target};
use bench_core::loadgen::engine::{self, NativeEngine};
use bench_core::loadgen::floor::FloorEngine;
use bench_core::placement::Placement;
use bench_core::shutdown::Shutdown;
use serde::Serialize;

use super::load;
use crate::case::CaseContext;
use crate::case::preload::Preload;
use crate::counts::callgrind;

/// The clients counted, in the order they run.
pub const CLIENTS: [&str; 2] = ["floor", "native"];

/// One client's count at one pipeline depth.
#[derive(Clone, Debug, Serialize)]
pub struct Count {
    pub engine: &'static str,
    pub pipeline: u32,
    /// Requests of the shorter run; the longer one sends three times as many.
    pub requests: u64,
    pub instructions_per_request: f64,
}

/// Counts every client at pipeline 1 and 16 against one fresh server of `ctx`'s build;
/// `requests` is the shorter run's count at pipeline 1 (ten times as many at 16).
pub fn run(
    ctx: &CaseContext<'_>,
    placement: &Placement,
    requests: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<Count>> {
    let valgrind = crate::process::output(
        {
            let mut cmd = crate::process::command("valgrind");
            cmd.arg("--version");
            cmd
        },
        "valgrind",
        ctx.shutdown,
        Some(Duration::from_secs(30)),
    );
    if !valgrind.is_ok_and(|o| o.status.success()) {
        bail!("selfbench --instructions needs valgrind (Debian: apt-get install valgrind)");
    }
    let mut server = ctx.deploy(crate::instances::Options {
        config: placement.server_config().into_iter().collect(),
        ..Default::default()
    })?;
    server.preload(&Preload::strings(engine::workload(&load(1, 0))))?;
    let port = server.port();
    // The clients inherit this thread's CPUs.
    let before = bench_core::placement::thread_cpus()?;
    if let Some(client) = &placement.client_cpus {
        bench_core::placement::pin_thread(&client.ids().collect::<Vec<_>>())?;
    }
    let counts = count_all(ctx, port, requests, progress);
    let restored = bench_core::placement::pin_thread(&before);
    drop(server);
    let counts = counts?;
    restored?;
    Ok(counts)
}

fn count_all(
    ctx: &CaseContext<'_>,
    port: u16,
    requests: u64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<Count>> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe().context("finding this program to run the clients")?;
    let mut counts = Vec::new();
    for pipeline in [1u32, 16] {
        let n = requests * if pipeline > 1 { 10 } else { 1 };
        for engine in CLIENTS {
            let mut totals = [0u64; 2];
            for (i, requests) in [n, 3 * n].into_iter().enumerate() {
                let out = dir
                    .path()
                    .join(format!("{engine}-{pipeline}-{requests}.out"));
                totals[i] = counted(&exe, &out, engine, port, pipeline, requests, ctx.shutdown)?;
            }
            let per_request = totals[1].saturating_sub(totals[0]) as f64 / (2 * n) as f64;
            progress(format!(
                "P{pipeline} {engine:<7} {per_request:>8.0} instructions/request ({} and {} in runs of {n} and {} requests)",
                totals[0],
                totals[1],
                3 * n
            ));
            counts.push(Count {
                engine,
                pipeline,
                requests: n,
                instructions_per_request: per_request,
            });
        }
    }
    Ok(counts)
}

/// One client run under callgrind: its instructions.
fn counted(
    exe: &Path,
    out: &Path,
    engine: &str,
    port: u16,
    pipeline: u32,
    requests: u64,
    shutdown: &Shutdown,
) -> anyhow::Result<u64> {
    let mut cmd = crate::process::command("valgrind");
    cmd.args(["--tool=callgrind", "-q"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["selfbench", "--client", engine, "--port"])
        .arg(port.to_string())
        .arg("--pipeline")
        .arg(pipeline.to_string())
        .arg("--requests")
        .arg(requests.to_string());
    let name = format!("{engine} client under callgrind");
    let done = crate::process::output(cmd, &name, shutdown, Some(Duration::from_secs(900)))?;
    if !done.status.success() {
        bail!(
            "the {name} failed ({}): {}",
            done.status,
            crate::process::tail(&done.stderr, 5)
        );
    }
    callgrind::total_instructions(out)
}

/// What `selfbench --client ENGINE` runs, alone in its process: `requests` GETs at
/// `pipeline` from the selfbench load's connections to the server at 127.0.0.1:`port`.
pub fn client(
    engine: &str,
    port: u16,
    pipeline: u32,
    requests: u64,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let target = Target::standalone(([127, 0, 0, 1], port).into());
    let load = load(pipeline, requests);
    let engine: &dyn Engine = match engine {
        "floor" => &FloorEngine,
        "native" => &NativeEngine,
        other => bail!("--client {other}: the clients are {}", CLIENTS.join(", ")),
    };
    let m = engine.run(&target, &load, shutdown)?;
    if m.requests != requests {
        bail!(
            "the {} client sent {} of {requests} requests",
            engine.name(),
            m.requests
        );
    }
    Ok(())
}

/// Per pipeline depth: (floor, native) instructions per request.
pub fn pairs(counts: &[Count]) -> Vec<(u32, f64, f64)> {
    [1, 16]
        .into_iter()
        .filter_map(|p| {
            let of = |e: &str| {
                counts
                    .iter()
                    .find(|c| c.pipeline == p && c.engine == e)
                    .map(|c| c.instructions_per_request)
            };
            Some((p, of("floor")?, of("native")?))
        })
        .collect()
}
