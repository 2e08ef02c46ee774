//! The perf suite: one case at a time, each repetition on a fresh server.
//!
//! Per case: a calibration run on its own server measures the rate, which fixes the request
//! counts of the warmup and the measured run (the same for every repetition, so they are
//! comparable). Per repetition, the case flow (`case/`): fresh server, preload what the
//! command reads (checked), warmup (discarded), measured run with its probes (INFO deltas,
//! the 1 Hz monitor), one record. `pair` is a comparison's trial: both sides' servers,
//! measured in alternating slices.

use anyhow::{Context, bail};
use bench_core::command::{Command, Preload as Reads};
use bench_core::engine::{Load, Measurement};
use bench_core::loadgen::engine;
use bench_core::perf::PerfCase;
use bench_core::result::ResultRecord;

use super::perf_record::{Run, record, server_costs};
pub use crate::case::CaseContext;
use crate::case::preload::{self, Preload};
use crate::case::{Server, drive};
use crate::instances;

/// valkey-benchmark's default value size, used for commands that carry no value.
pub const DEFAULT_VALUE_SIZE: u64 = 3;

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
    // Before its first server starts: an engine that cannot run the case's load says so.
    ctx.engine
        .can_run(&load(case, 1))
        .map_err(|why| crate::error::UsageError(format!("{}: {why}", case.name)))?;
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
        client_cpus: case
            .placement
            .client_cpus
            .as_ref()
            .map(|c| c.ids().collect())
            .unwrap_or_default(),
        rate: None,
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
    let mut server = deploy(case, ctx, probe)?.0;
    let m = drive(ctx, server.as_mut(), &load(case, probe))?;
    Ok(counts_for_rate(case, m.ops_per_sec))
}

pub fn run_repetition(
    case: &PerfCase,
    ctx: &CaseContext<'_>,
    counts: Counts,
    repetition: u32,
) -> anyhow::Result<ResultRecord> {
    let (mut server, preloaded_items) = deploy(case, ctx, counts.warmup + counts.measured)?;
    let warmup_series = if counts.warmup > 0 {
        drive(ctx, server.as_mut(), &load(case, counts.warmup))
            .context("warmup")?
            .series
    } else {
        Vec::new()
    };
    let mut record = measured_run(
        case,
        ctx,
        server.as_mut(),
        counts,
        preloaded_items,
        repetition,
        true,
    )?;
    record.metrics.warmup_series = warmup_series;
    Ok(record)
}

/// One perf trial of a comparison, on a fresh server per side (`ctxs[0]` the baseline's,
/// `ctxs[1]` the candidate's): both preloaded and warmed by one slice, then [`SLICES`]
/// measured slices per side alternating A B B A A B ... (starting with side `first`).
/// The host's speed on this kind of machine shifts between regimes lasting seconds (we
/// measured 1.1M ↔ 0.65M GET/s on one server within a 30 s run), so sides measured in
/// adjacent slices of a fraction of a second see the same regime, where trials seconds
/// apart do not. Every slice is a record, handed to `sink` with its side as it is
/// measured; returns per slice which side ran first and the two records.
pub fn pair(
    case: &PerfCase,
    counts: Counts,
    pair: usize,
    first: usize,
    ctxs: [&CaseContext<'_>; 2],
    sink: &mut dyn FnMut(usize, &ResultRecord) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Slice>> {
    let order = [first, 1 - first];
    let slice = Counts {
        warmup: 0,
        measured: counts.measured,
    };
    let total = counts.measured * (SLICES as u64 + 1);
    // Deployed in the trial's order too: what a server's age does (a cluster's first
    // seconds of gossip, the machine's state after the other side's start) falls on
    // each side in turn, as the slices' order does.
    let mut deployed: [Option<(Box<dyn Server>, u64)>; 2] = [None, None];
    for side in order {
        deployed[side] = Some(deploy(case, ctxs[side], total)?);
    }
    let (mut servers, mut items) = (Vec::new(), Vec::new());
    for (server, preloaded) in deployed.into_iter().flatten() {
        servers.push(server);
        items.push(preloaded);
    }
    for side in order {
        drive(
            ctxs[side],
            servers[side].as_mut(),
            &load(case, counts.measured),
        )
        .with_context(|| format!("warming the {}", SIDE_NAMES[side]))?;
    }
    let mut slices = Vec::new();
    for k in 0..SLICES {
        // A B | B A | A B ...: the warmup ended with order[1], so the first slice repeats it.
        let turn = if k % 2 == 0 {
            [order[1], order[0]]
        } else {
            order
        };
        let mut got = [None, None];
        for side in turn {
            let repetition = ((pair - 1) * SLICES + k + 1) as u32;
            let record = measured_run(
                case,
                ctxs[side],
                servers[side].as_mut(),
                slice,
                items[side],
                repetition,
                false,
            )
            .with_context(|| format!("{} on the {}", case.name, SIDE_NAMES[side]))?;
            sink(side, &record)?;
            got[side] = Some(record);
        }
        let [Some(baseline), Some(candidate)] = got else {
            unreachable!("both sides ran the slice")
        };
        slices.push(Slice {
            first: turn[0],
            records: [baseline, candidate],
        });
    }
    Ok(slices)
}

/// Measured slices per side in one perf trial of a comparison.
pub const SLICES: usize = 6;

const SIDE_NAMES: [&str; 2] = ["baseline", "candidate"];

/// One slice of a comparison's trial: which side ran first, then both sides' records
/// (the baseline's first).
pub struct Slice {
    pub first: usize,
    pub records: [ResultRecord; 2],
}

/// One measured run on a prepared server: INFO before and after (server CPU per request,
/// usec_per_call), the monitor if asked, the post-run checks, one record.
pub fn measured_run(
    case: &PerfCase,
    ctx: &CaseContext<'_>,
    server: &mut dyn Server,
    counts: Counts,
    preloaded_items: u64,
    repetition: u32,
    monitored: bool,
) -> anyhow::Result<ResultRecord> {
    let measured_load = load(case, counts.measured);
    let before = server.info()?;
    let monitor = monitored.then(|| server.monitor());
    let measured = drive(ctx, server, &measured_load);
    let samples = monitor.map(|m| m.stop()).unwrap_or_default();
    let m: Measurement = measured?;
    let after = server.info()?;
    let costs = server_costs(&before, &after, case.command, m.requests);
    check_after(case, server)?;
    let argv = ctx.engine.describe(&server.target(), &measured_load);
    Ok(record(
        case,
        ctx,
        &*server,
        Run {
            measurement: m,
            costs,
            monitor: samples,
            counts,
            preloaded_items,
            argv,
        },
        repetition,
    ))
}

/// A fresh server for the case (its server config), preloaded for `requests` requests;
/// returns it with the preloaded item count.
pub fn deploy(
    case: &PerfCase,
    ctx: &CaseContext<'_>,
    requests: u64,
) -> anyhow::Result<(Box<dyn Server>, u64)> {
    let mut config = case.server_config.clone();
    config.extend(case.placement.server_config());
    let mut server = ctx.deploy(instances::Options {
        config,
        ..Default::default()
    })?;
    let items = server.preload(&preload(case, requests))?;
    Ok((server, items))
}

/// What the case's command reads, for `requests` requests: its string keys, or a list
/// long enough for that many pops (list pops need that many elements).
pub fn preload(case: &PerfCase, requests: u64) -> Preload {
    let spec = engine::workload(&load(case, requests));
    let reads = match case.command.preload() {
        Reads::None => preload::Reads::Nothing,
        Reads::Strings => preload::Reads::Strings,
        // A pipelined client can send up to one window past -n; keep a margin so no pop
        // ever finds the list empty (checked after the run).
        Reads::List => preload::Reads::List {
            key: LIST_KEY.into(),
            len: requests + 2 * in_flight(case),
        },
    };
    Preload { spec, reads }
}

/// The list the pop commands pop from (valkey-benchmark's name for it).
const LIST_KEY: &str = "mylist";

/// Checks that the run measured what it claims: the server survived, and list pops never
/// found the list empty.
fn check_after(case: &PerfCase, server: &mut dyn Server) -> anyhow::Result<()> {
    if !matches!(case.command, Command::Lpop | Command::Rpop) {
        return server
            .answers()
            .context("the server did not survive the run");
    }
    let left = server
        .list_len(LIST_KEY)
        .context("the server did not survive the run")?;
    if left <= 0 {
        bail!("{LIST_KEY} ran empty during the run, so some pops measured nil replies");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_core::perf::{PerfSpec, QUICK_PERF};

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

    use crate::case::fake::{self, FakeEngine, FakeServers, Log};
    use bench_core::shutdown::Shutdown;

    fn host() -> bench_core::result::HostInfo {
        crate::host::info()
    }

    /// The case flow's order, on fake servers and a fake engine: calibration on a server
    /// of its own, then per repetition a fresh server, preload, warmup, INFO, the monitor,
    /// the measured run, INFO, the after-run check.
    #[test]
    fn a_case_calibrates_then_runs_each_repetition_on_a_fresh_server() {
        let log = Log::default();
        let (engine, servers) = (FakeEngine { log: log.clone() }, FakeServers::new(&log));
        let (binaries, host, shutdown) = (fake::binaries("9.0.0"), host(), Shutdown::new());
        let ctx = fake::context(&binaries, &host, &engine, &servers, &shutdown);
        let mut c = case(1);
        c.repetitions = 2;
        c.command = Command::Get;
        let mut records = Vec::new();
        run_case(&c, &ctx, &mut |r| {
            records.push(r);
            Ok(())
        })
        .unwrap();
        // 100,000 ops/s: 0.5 s of warmup, 2 s measured.
        let probe = probe_requests(&c);
        let keys = c.keyspace;
        let mut expected = vec![
            "deploy#1 9.0.0".to_string(),
            format!("preload#1 strings {keys}"),
            format!("run#1 {probe}"),
        ];
        for n in [2, 3] {
            expected.extend([
                format!("deploy#{n} 9.0.0"),
                format!("preload#{n} strings {keys}"),
                format!("run#{n} 50000"),
                format!("info#{n}"),
                format!("monitor#{n}"),
                format!("run#{n} 200000"),
                format!("info#{n}"),
                format!("check#{n}"),
            ]);
        }
        assert_eq!(log.take(), expected);
        let reps: Vec<u32> = records.iter().map(|r| r.repetition).collect();
        assert_eq!(reps, [1, 2]);
        assert!(records.iter().all(|r| r.params.requests == 200_000
            && r.params.warmup_requests == 50_000
            && r.params.preloaded_items == keys
            && r.metrics.usec_per_call == Some(1.0)));
    }

    /// A comparison's trial: both servers deployed and preloaded and warmed in the trial's
    /// order, then slices alternating so the side that ran last runs first next (A B | B A
    /// | A B ...), every slice a record handed over as it is measured.
    #[test]
    fn a_pair_alternates_its_slices_across_both_sides() {
        let log = Log::default();
        let (engine, servers) = (FakeEngine { log: log.clone() }, FakeServers::new(&log));
        let (host, shutdown) = (host(), Shutdown::new());
        let (a, b) = (fake::binaries("baseline"), fake::binaries("candidate"));
        let ctx_a = fake::context(&a, &host, &engine, &servers, &shutdown);
        let ctx_b = fake::context(&b, &host, &engine, &servers, &shutdown);
        let c = case(1);
        let counts = Counts {
            warmup: 0,
            measured: 1000,
        };
        let mut sunk = Vec::new();
        // Trial 2 starts with the candidate (side 1).
        let slices = pair(&c, counts, 2, 1, [&ctx_a, &ctx_b], &mut |side, r| {
            sunk.push((side, r.repetition));
            Ok(())
        })
        .unwrap();
        let runs: Vec<String> = log
            .take()
            .into_iter()
            .filter(|l| l.starts_with("deploy") || l.starts_with("run"))
            .collect();
        // Deployed in the trial's order too: the candidate's server is #1 here.
        let mut expected = vec![
            "deploy#1 candidate".to_string(),
            "deploy#2 baseline".to_string(),
            "run#1 1000".to_string(),
            "run#2 1000".to_string(),
        ];
        let server = |side: usize| 2 - side;
        let mut sides = Vec::new();
        for k in 0..SLICES {
            let turn = if k % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in turn {
                expected.push(format!("run#{} 1000", server(side)));
                sides.push((side, (SLICES + k + 1) as u32));
            }
        }
        assert_eq!(runs, expected);
        assert_eq!(sunk, sides);
        assert_eq!(slices.len(), SLICES);
        let firsts: Vec<usize> = slices.iter().map(|s| s.first).collect();
        assert_eq!(firsts, [0, 1, 0, 1, 0, 1]);
        assert!(
            slices
                .iter()
                .all(|s| s.records[0].valkey.version == "baseline"
                    && s.records[1].valkey.version == "candidate")
        );
    }

    /// Pops read a list long enough for every request plus two windows in flight; commands on
    /// string keys find the keyspace written.
    #[test]
    fn pops_preload_a_list_that_outlasts_the_run() {
        let mut c = case(16);
        c.command = Command::Lpop;
        let p = preload(&c, 10_000);
        assert_eq!(
            p.reads,
            preload::Reads::List {
                key: "mylist".into(),
                len: 10_000 + 2 * 50 * 16
            }
        );
        c.command = Command::Lpush;
        assert_eq!(preload(&c, 10_000).reads, preload::Reads::Nothing);
        // Writes on string keys overwrite from the first request, as reads hit.
        c.command = Command::Set;
        assert_eq!(preload(&c, 10_000).reads, preload::Reads::Strings);
        c.command = Command::Get;
        let p = preload(&c, 10_000);
        assert_eq!(p.reads, preload::Reads::Strings);
        // Keys named as the generator and valkey-benchmark name them.
        assert_eq!(
            p.spec.key_name("key", 7),
            bench_core::populate::benchmark_key(7)
        );
    }

    #[test]
    fn probe_is_bounded() {
        assert_eq!(probe_requests(&case(1)), 20_000);
        assert_eq!(probe_requests(&case(16)), 160_000);
        assert_eq!(probe_requests(&case(1000)), 500_000);
    }
}
