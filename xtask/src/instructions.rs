//! `compare --mode instructions`: instructions per request, counted by callgrind, for a
//! request stream whose shape does not depend on timing.
//!
//! Per case and side, the server runs under `valgrind --tool=callgrind`. After startup and
//! the preload, `callgrind_control --zero` resets the counters; then [`REQUESTS`] requests
//! run; `callgrind_control --dump` writes what they cost. Determinism comes from: one
//! connection, batches written whole and answered before the next one
//! (`loadgen::stream`), `hz 1` (timer work that scales with wall time, which callgrind
//! stretches, is a few calls), `activerehashing no` (serverCron's rehashing runs for a time
//! budget) and `jemalloc-bg-thread no` (no purging thread driven by time).
//!
//! What stays: Valkey seeds its hash function from /dev/urandom at startup, so the buckets
//! keys land in, and a lookup's probes, differ between processes. That is why a side is
//! counted in [`RUNS`] processes and the median taken (we first subtracted a short run
//! from a long one, which let the preload's seed-dependent cost leak in: A/A differed by
//! up to 5.7%).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::command::Preload;
use bench_core::compare::{self, Better, CaseResult, MetricResult, Trial, TrialPair};
use bench_core::distribution::{KeyDistribution, ValueSize};
use bench_core::engine::Load;
use bench_core::loadgen::{engine, stream};
use bench_core::suite::PerfCase;
use bench_core::workload::{WeightedCommand, WorkloadSpec};
use serde::Serialize;

use crate::cli::compare::{Side, Sides};
use crate::instances;
use crate::suite::CaseContext;
use crate::valkey::Binaries;

/// Requests counted per run.
pub const REQUESTS: u64 = 40_000;
/// Server processes per side; the median of their counts is the side's figure.
pub const RUNS: usize = 3;
/// valkey-server under callgrind starts ~50× slower.
const READY_UNDER_VALGRIND: Duration = Duration::from_secs(180);

/// valkey-benchmark's default value size, for commands without a value.
const DEFAULT_VALUE_SIZE: u64 = 3;

/// One counted side of one case, also written as a result record.
#[derive(Clone, Debug, Serialize)]
pub struct InstructionsRecord {
    pub run_id: String,
    pub suite: &'static str,
    pub mode: &'static str,
    pub case: String,
    pub side: String,
    pub timestamp: String,
    pub valkey: bench_core::result::ValkeyInfo,
    pub requests: u64,
    /// Instructions of the counted requests, one figure per server process.
    pub instructions: Vec<u64>,
    /// Median over the processes, divided by the requests.
    pub instructions_per_request: f64,
    pub pipeline: u32,
    pub server_config: std::collections::BTreeMap<String, String>,
}

pub fn compare_cases(
    cases: &[PerfCase],
    sides: &Sides,
    ctx: &CaseContext<'_>,
    threshold: f64,
) -> anyhow::Result<Vec<CaseResult>> {
    check_valgrind()?;
    let mut results = Vec::new();
    for case in cases {
        let trial = |side: Side| -> anyhow::Result<Trial> {
            eprintln!("{}: counting the {side:?} under callgrind", case.name);
            let record = count(case, sides.binaries(side), side, ctx)
                .with_context(|| format!("{} on the {side:?} under callgrind", case.name))?;
            sides.dir(side).append_serialized(&record)?;
            let mut trial = Trial::from([(
                "instructions_per_request".to_string(),
                record.instructions_per_request,
            )]);
            for (run, total) in record.instructions.iter().enumerate() {
                trial.insert(
                    format!("run{}_instructions_per_request", run + 1),
                    *total as f64 / record.requests as f64,
                );
            }
            Ok(trial)
        };
        let baseline = trial(Side::Baseline)?;
        let candidate = trial(Side::Candidate)?;
        let per_request = |t: &Trial| t["instructions_per_request"];
        let comparison = compare::compare_exact(
            per_request(&baseline),
            per_request(&candidate),
            Better::Lower,
            threshold,
        );
        results.push(CaseResult {
            case: case.name.clone(),
            verdict: comparison.verdict,
            note: None,
            metrics: vec![MetricResult {
                metric: "instructions_per_request".into(),
                label: "instructions/req".into(),
                better: Better::Lower,
                comparison,
            }],
            trials: vec![TrialPair {
                trial: 1,
                pair: 1,
                order: "AB".into(),
                baseline,
                candidate,
            }],
        });
    }
    Ok(results)
}

fn check_valgrind() -> anyhow::Result<()> {
    let out = crate::process::command("valgrind")
        .arg("--version")
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "--mode instructions runs the server under valgrind, which is not installed; \
             install it (apt-get install valgrind) or use --mode time"
        ),
    }
}

/// The workload a perf case sends, with this process's seed.
fn spec(case: &PerfCase, requests: u64) -> WorkloadSpec {
    engine::workload(&Load {
        command: case.command,
        value_size: case.value_size.unwrap_or(DEFAULT_VALUE_SIZE),
        pipeline: case.pipeline,
        clients: 1,
        keyspace: case.keyspace,
        requests,
        threads: 1,
    })
}

fn count(
    case: &PerfCase,
    binaries: &Binaries,
    side: Side,
    ctx: &CaseContext<'_>,
) -> anyhow::Result<InstructionsRecord> {
    let instructions = (0..RUNS)
        .map(|_| run_once(case, binaries, ctx))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let per_run: Vec<f64> = instructions.iter().map(|&i| i as f64).collect();
    let median = bench_core::stats::median(&per_run).expect("RUNS > 0");
    Ok(InstructionsRecord {
        run_id: ctx.run_id.to_string(),
        suite: "perf",
        mode: "instructions",
        case: case.name.clone(),
        side: format!("{side:?}").to_lowercase(),
        timestamp: crate::results::timestamp(),
        valkey: binaries.info(),
        requests: REQUESTS,
        instructions,
        instructions_per_request: median / REQUESTS as f64,
        pipeline: case.pipeline,
        server_config: server_config(case),
    })
}

fn server_config(case: &PerfCase) -> std::collections::BTreeMap<String, String> {
    let mut config = case.server_config.clone();
    config.insert("hz".into(), "1".into());
    config.insert("jemalloc-bg-thread".into(), "no".into());
    // serverCron rehashes for up to 1 ms per call: a time budget, not a count.
    config.insert("activerehashing".into(), "no".into());
    config
}

/// Starts the server under callgrind, preloads, zeroes the counters, sends [`REQUESTS`],
/// dumps, and returns the dump's instruction total.
fn run_once(case: &PerfCase, binaries: &Binaries, ctx: &CaseContext<'_>) -> anyhow::Result<u64> {
    let scratch = tempfile::Builder::new()
        .prefix("valkey-bench-callgrind-")
        .tempdir()?;
    let out_file = scratch.path().join("callgrind.out");
    let options = instances::Options {
        base_port: ctx.base_port,
        config: server_config(case),
        wrapper: vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", out_file.display()),
            "--dump-instr=no".into(),
            "--dump-line=no".into(),
        ],
        ready_timeout: READY_UNDER_VALGRIND,
    };
    let server = instances::start(&binaries.server, 1, &options, ctx.shutdown)?.remove(0);
    let addr = server.addr;
    preload(case, addr)?;
    callgrind_control("--zero", server.pid(), ctx)?;
    let outcome = stream::run(
        addr,
        &spec(case, REQUESTS),
        REQUESTS,
        case.pipeline as usize,
    )
    .context("sending the request stream")?;
    if outcome.error_replies > 0 {
        bail!(
            "{} of {REQUESTS} requests got error replies; the count would not be of the command",
            outcome.error_replies
        );
    }
    callgrind_control("--dump", server.pid(), ctx)?;
    let dump = dump_file(scratch.path())?;
    if let Some(keep) = std::env::var_os("VALKEY_BENCH_KEEP_CALLGRIND") {
        // For callgrind_annotate: where the instructions went.
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep)?;
        let name = format!(
            "callgrind.{}.{}.{}.out",
            case.name.replace('/', "_"),
            binaries.source_id.replace([':', '/'], "_"),
            server.pid()
        );
        std::fs::copy(&dump, keep.join(name))?;
    }
    let total = total_instructions(&dump)?;
    drop(server);
    Ok(total)
}

/// `callgrind_control --zero|--dump PID`: talks to the running server's callgrind.
fn callgrind_control(action: &str, pid: u32, ctx: &CaseContext<'_>) -> anyhow::Result<()> {
    let mut cmd = crate::process::command("callgrind_control");
    cmd.arg(action).arg(pid.to_string());
    let out = crate::process::output(
        cmd,
        "callgrind_control",
        ctx.shutdown,
        Some(Duration::from_secs(60)),
    )?;
    if !out.status.success() || !out.stdout.contains("OK") {
        bail!(
            "callgrind_control {action} {pid} failed ({}): {}{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
    Ok(())
}

/// The dump callgrind wrote: `callgrind.out.N` beside the output file.
fn dump_file(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mut dumps: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("callgrind.out."))
        })
        .collect();
    dumps.sort();
    dumps
        .pop()
        .with_context(|| format!("callgrind wrote no dump in {}", dir.display()))
}

/// What the command reads.
fn preload(case: &PerfCase, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let value_size = case.value_size.unwrap_or(DEFAULT_VALUE_SIZE);
    let (template, count) = match case.command.preload() {
        Preload::None => return Ok(()),
        Preload::Strings => ("SET {key} {value}", case.keyspace),
        // Pops of the long run never find the list empty.
        Preload::List => ("RPUSH mylist {value}", REQUESTS + 1000),
    };
    let spec = WorkloadSpec {
        name: "preload".into(),
        seed: 1,
        keyspace: count,
        key_prefix: String::new(),
        key_digits: 12,
        keys: KeyDistribution::Sequential,
        values: ValueSize::Fixed {
            bytes: value_size as u32,
        },
        commands: vec![WeightedCommand {
            command: template.into(),
            weight: 1,
        }],
        subscribers: 0,
    };
    // The preload is not counted, so its batches need not be small.
    let outcome = stream::run(addr, &spec, count, 1000).context("preloading")?;
    anyhow::ensure!(
        outcome.error_replies == 0,
        "{} preload writes failed",
        outcome.error_replies
    );
    Ok(())
}

/// The `summary:` (or `totals:`) line of a callgrind output file: total instructions.
pub fn total_instructions(file: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading callgrind's output {}", file.display()))?;
    parse_total(&text).with_context(|| {
        format!(
            "{} has no `summary:` or `totals:` line; is it a callgrind output file?",
            file.display()
        )
    })
}

fn parse_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callgrind_totals() {
        let text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n\nfn=(1) main\n5 10\n\nsummary: 123456789\ntotals: 123456789\n";
        assert_eq!(parse_total(text), Some(123_456_789));
        assert_eq!(parse_total("events: Ir\ntotals: 42 7\n"), Some(42));
        assert_eq!(parse_total("events: Ir\n"), None);
    }
}
