//! `compare --mode instructions`: instructions per request, counted by callgrind, for a
//! request stream whose shape does not depend on timing.
//!
//! Per side, a server runs under `valgrind --tool=callgrind` (one per server config and
//! round) and counts the cases in turn ([`Counter`]): FLUSHALL, the case's preload, then
//! callgrind's `zero` resets the counters (`callgrind.rs`), [`REQUESTS`] requests run, and
//! its `dump` writes what they cost. Determinism comes from: one
//! connection, batches written whole and answered before the next one
//! (`loadgen::stream`), `hz 1` and serverCron's inclusive cost subtracted from the count
//! (its calls follow the wall clock, which callgrind stretches), `activerehashing no` (serverCron's rehashing runs for a time
//! budget) and `jemalloc-bg-thread no` (no purging thread driven by time).
//!
//! Last, Valkey seeds its hash function from /dev/urandom at startup, so the buckets keys
//! land in, and a lookup's probes, differ between processes (±0.3% of the count). Where we
//! are root, the server reads a fixed `/dev/urandom` (`process::fix_urandom`) and counts
//! repeat to a few hundredths of a percent (an event-loop pass more or less); elsewhere we
//! warn. `compare --mode instructions` counts each side in [`RUNS`] rounds of processes;
//! the default mode one round, and two more for a case that moved
//! (`bench_core::compare::compare_counts` reads the rounds). (We first subtracted a short run from a long one, which let the
//! preload's seed-dependent cost leak in: A/A differed by up to 5.7%.)

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::loadgen::{engine, stream};
use bench_core::perf::PerfCase;
use bench_core::workload::WorkloadSpec;
use serde::Serialize;

use crate::case::CaseContext;
use crate::case::preload::Reads;
use crate::counts::callgrind;
use crate::counts::syscalls::{Calls, LostEvents, Tracer};
use crate::instances;
use crate::suites::perf;

/// Requests counted per run.
pub const REQUESTS: u64 = 10_000;
/// Server processes per side; the median of their counts is the side's figure.
pub const RUNS: usize = 3;
/// valkey-server under callgrind starts ~50× slower.
pub(crate) const READY_UNDER_VALGRIND: Duration = Duration::from_secs(180);

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
    /// Whether the servers read a fixed `/dev/urandom` (same hash seed every process).
    pub hash_seed_pinned: bool,
    /// System calls the server made in each process's counted window, by kind (one map
    /// per entry of `instructions`); empty where they were not counted
    /// (`counts::syscalls::available`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<Calls>,
}

impl InstructionsRecord {
    /// Adds the processes of `more` (a recount of the same case and side), the median
    /// recomputed.
    pub fn add_runs(&mut self, more: &InstructionsRecord) {
        self.instructions.extend(&more.instructions);
        self.syscalls.extend(more.syscalls.iter().cloned());
        let per_run: Vec<f64> = self.instructions.iter().map(|&i| i as f64).collect();
        let median = bench_core::stats::median(&per_run).expect("one run or more");
        self.instructions_per_request = median / self.requests as f64;
    }
}

/// A fixed "/dev/urandom" for the servers, so both sides hash with the same seed.
pub struct SeedFile {
    _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

/// Default thresholds (percent): with the seed pinned counts repeat to 0.0003%; without,
/// the seed moves a process's count by about ±0.3% (median of 3: ±0.2%).
pub const THRESHOLD_PINNED_PCT: f64 = 0.5;
pub const THRESHOLD_UNPINNED_PCT: f64 = 1.5;

impl SeedFile {
    /// The seed file, if servers can be made to read it here (root); else the warning to
    /// give.
    pub fn pinned() -> anyhow::Result<Result<SeedFile, String>> {
        let dir = instances::scratch_dir("seed")?;
        let path = dir.path().join("urandom");
        let bytes: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, bytes)?;
        if crate::process::fixed_urandom_works(&path) {
            return Ok(Ok(SeedFile { _dir: dir, path }));
        }
        Ok(Err(format!(
            "cannot pin Valkey's hash seed here (needs root for a private mount \
             namespace); counts of one build vary by about ±0.3% between processes, so the \
             default threshold is {THRESHOLD_UNPINNED_PCT}%"
        )))
    }
}

/// Fails with how to fix it when valgrind is missing; `what` needs it, `instead` does not.
pub(crate) fn check_valgrind(what: &str, instead: &str) -> anyhow::Result<()> {
    if !crate::process::runs("valgrind") {
        bail!(crate::error::UsageError(format!(
            "{what} runs the server under valgrind, which is not installed; \
             install it (apt-get install valgrind) or use {instead}"
        )));
    }
    Ok(())
}

/// The workload a perf case sends (the native engine's, seed 1), on one connection.
fn spec(case: &PerfCase, requests: u64) -> WorkloadSpec {
    engine::workload(&perf::load(case, requests))
}

/// Counts one side (`side` names it in the record) of every case: [`RUNS`] rounds, each
/// through [`Counter`]s (one server process per distinct server config, serving its cases
/// in turn), and per case the median per request; with `syscalls`, the system calls of
/// each counted window too. `progress` hears each case as its count starts (round, case).
pub fn count(
    cases: &[PerfCase],
    ctx: &CaseContext<'_>,
    side: &str,
    fixed_urandom: Option<&Path>,
    runs: usize,
    syscalls: bool,
    progress: &dyn Fn(usize, &PerfCase),
) -> anyhow::Result<Vec<InstructionsRecord>> {
    let mut counts = vec![Vec::with_capacity(runs); cases.len()];
    let mut calls: Vec<Vec<Calls>> = vec![Vec::new(); cases.len()];
    for round in 1..=runs {
        // Cases that share a server config share a server, in the suite's order.
        let mut configs: Vec<std::collections::BTreeMap<String, String>> = Vec::new();
        for case in cases {
            let config = server_config(case);
            if !configs.contains(&config) {
                configs.push(config);
            }
        }
        for config in configs {
            let mut counter: Option<Counter> = None;
            for i in count_order(cases) {
                let case = &cases[i];
                if server_config(case) != config {
                    continue;
                }
                progress(round, case);
                let counter = match &mut counter {
                    Some(c) => c,
                    None => counter.insert(Counter::start(case, ctx, fixed_urandom).with_context(
                        || {
                            format!(
                                "starting the {side}'s server under callgrind for {}",
                                case.name
                            )
                        },
                    )?),
                };
                // A window whose system-call events perf lost is counted once more (the
                // counts are exact, so a second window is as good as the first).
                let (counted, window_calls) = match counter.count(case, ctx, syscalls) {
                    Err(e) if e.downcast_ref::<LostEvents>().is_some() => {
                        eprintln!("{}: {e}; counting it again", case.name);
                        counter.count(case, ctx, syscalls)
                    }
                    other => other,
                }
                .with_context(|| format!("{} on the {side} (round {round})", case.name))?;
                counts[i].push(counted);
                calls[i].extend(window_calls);
            }
        }
    }
    let binaries = ctx.binaries;
    Ok(cases
        .iter()
        .zip(counts)
        .zip(calls)
        .map(|((case, instructions), syscalls)| {
            let per_run: Vec<f64> = instructions.iter().map(|&i| i as f64).collect();
            let median = bench_core::stats::median(&per_run).expect("runs > 0");
            InstructionsRecord {
                run_id: ctx.run_id.to_string(),
                suite: "perf",
                mode: "instructions",
                case: case.name.clone(),
                side: side.to_string(),
                timestamp: crate::rundir::timestamp(),
                valkey: binaries.info(),
                requests: REQUESTS,
                instructions,
                instructions_per_request: median / REQUESTS as f64,
                pipeline: case.pipeline,
                server_config: server_config(case),
                hash_seed_pinned: fixed_urandom.is_some(),
                syscalls,
            }
        })
        .collect())
}

fn server_config(case: &PerfCase) -> std::collections::BTreeMap<String, String> {
    let mut config = case.server_config.clone();
    config.insert("hz".into(), "1".into());
    config.insert("jemalloc-bg-thread".into(), "no".into());
    // serverCron rehashes for up to 1 ms per call: a time budget, not a count.
    config.insert("activerehashing".into(), "no".into());
    config
}

/// A server under callgrind that counts cases one after another: per case the keyspace
/// is emptied (`FLUSHALL SYNC`) and the case's preload written (unless the last case left
/// the same [`Dataset`] written), the counters zeroed, the
/// [`REQUESTS`] sent, and the dump read. Both sides count the same cases in the same
/// order, so what an earlier case left behind (allocator state, table sizes) is the same
/// on both; starting a server under valgrind costs seconds, a case's count less.
struct Counter {
    server: Box<dyn crate::case::Server>,
    scratch: tempfile::TempDir,
    vgdb_prefix: std::path::PathBuf,
    /// The string keyspace the last case left written, which the next case on the same
    /// one finds as its own preload would leave it.
    loaded: Option<Dataset>,
}

/// What a string-key case finds written: every key of its keyspace, with values of one
/// size or integers. The commands on string keys keep it as they found it (GET reads;
/// SET and MSET overwrite with values of that size; INCR keeps integers), so cases on one
/// dataset are counted in a row after one preload: under valgrind a preload of a million
/// keys costs seconds, a case's count less.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Dataset {
    keyspace: u64,
    value_bytes: u32,
    integers: bool,
}

impl Dataset {
    fn of(case: &PerfCase) -> Option<Dataset> {
        let preload = perf::preload(case, REQUESTS);
        (preload.reads == Reads::Strings).then(|| Dataset {
            keyspace: preload.spec.keyspace,
            value_bytes: preload.spec.values.max(),
            integers: preload.spec.needs_integers(),
        })
    }
}

/// The order cases are counted in: the suite's, except that cases on one [`Dataset`]
/// follow the first of them. Both sides count in this order.
fn count_order(cases: &[PerfCase]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cases.len()).collect();
    let first =
        |d: Option<Dataset>| d.and_then(|d| cases.iter().position(|c| Dataset::of(c) == Some(d)));
    order.sort_by_key(|&i| first(Dataset::of(&cases[i])).unwrap_or(i));
    order
}

impl Counter {
    /// Starts the server under callgrind with `case`'s config.
    fn start(
        case: &PerfCase,
        ctx: &CaseContext<'_>,
        fixed_urandom: Option<&Path>,
    ) -> anyhow::Result<Counter> {
        let scratch = instances::scratch_dir("callgrind")?;
        let out_file = scratch.path().join("callgrind.out");
        let vgdb_prefix = scratch.path().join("vgdb");
        let options = instances::Options {
            config: server_config(case),
            wrapper: vec![
                "valgrind".into(),
                "--tool=callgrind".into(),
                // Threads take valgrind's lock in turn by a futex, not by a byte through
                // a pipe around every blocking call: the server's own reads and writes
                // are then the only ones a system-call count sees.
                "--fair-sched=yes".into(),
                format!("--callgrind-out-file={}", out_file.display()),
                "--dump-instr=no".into(),
                "--dump-line=no".into(),
                // Start-up and each case's preload run uninstrumented (several times
                // faster); only the counted requests are.
                "--instr-atstart=no".into(),
                // vgdb finds the server through these FIFOs; in the scratch
                // directory they go away with it even though the server is killed.
                format!("--vgdb-prefix={}", vgdb_prefix.display()),
            ],
            ready_timeout: READY_UNDER_VALGRIND,
            fixed_urandom: fixed_urandom.map(Path::to_path_buf),
            // jemalloc returns freed pages on a timer (its decay), from inside malloc and
            // free: after a case's FLUSHALL that would add a time-dependent cost to the
            // next case's count. Never purging makes it a count of the requests alone.
            env: vec![(
                "JE_MALLOC_CONF".into(),
                "dirty_decay_ms:-1,muzzy_decay_ms:-1".into(),
            )],
            ..Default::default()
        };
        let server = ctx.deploy(options)?;
        Ok(Counter {
            server,
            scratch,
            vgdb_prefix,
            loaded: None,
        })
    }

    /// Empties the keyspace, preloads, zeroes the counters, sends [`REQUESTS`], dumps,
    /// and returns the dump's instruction total; with `syscalls`, also the system calls
    /// the server made while the requests ran (`counts::syscalls`).
    fn count(
        &mut self,
        case: &PerfCase,
        ctx: &CaseContext<'_>,
        syscalls: bool,
    ) -> anyhow::Result<(u64, Option<Calls>)> {
        let server = self.server.as_mut();
        let mut control = server.client()?;
        let dataset = Dataset::of(case);
        if dataset.is_none() || dataset != self.loaded {
            control
                .call_text(&["FLUSHALL", "SYNC"])
                .context("emptying the keyspace before the case")?;
            // Pops of the counted run never find the list empty. One connection: a margin
            // of 1000 elements, as in every instructions record so far.
            let mut preload = perf::preload(case, REQUESTS);
            if let Reads::List { len, .. } = &mut preload.reads {
                *len = REQUESTS + 1000;
            }
            self.loaded = None;
            server.preload(&preload)?;
            self.loaded = dataset;
        }
        // The stream's connection is open, and every closed one (the preload's, the last
        // case's) freed, before the count starts; it closes after the dump. Nothing but
        // the requests is counted.
        let mut connection =
            stream::connect(server.target().primary(), server.target().tls.as_ref())
                .context("connecting the stream")?;
        connections_settle_at(&mut control, 2)?;
        let pid = server.pid();
        let mut tracer = match syscalls {
            true => Some(
                Tracer::attach(pid, self.scratch.path())
                    .context("attaching perf to count system calls")?,
            ),
            false => None,
        };
        callgrind::monitor(
            &["instrumentation on", "zero"],
            pid,
            &self.vgdb_prefix,
            ctx.shutdown,
        )?;
        if let Some(t) = &mut tracer {
            t.enable(ctx.shutdown)?;
        }
        let outcome = stream::run_on(
            &mut connection,
            &spec(case, REQUESTS),
            REQUESTS,
            case.pipeline as usize,
        )
        .context("sending the request stream")?;
        if let Some(t) = &mut tracer {
            t.disable(ctx.shutdown)?;
            // perf writes its data out while callgrind dumps.
            t.stop();
        }
        if outcome.error_replies > 0 {
            bail!(
                "{} of {REQUESTS} requests of {} got error replies; the count would not be of the command",
                outcome.error_replies,
                case.name
            );
        }
        callgrind::monitor(
            &["dump", "instrumentation off"],
            pid,
            &self.vgdb_prefix,
            ctx.shutdown,
        )?;
        let dump = callgrind::dump_file(self.scratch.path())?;
        if let Some(keep) = std::env::var_os("VALKEY_BENCH_KEEP_CALLGRIND") {
            // For callgrind_annotate: where the instructions went.
            let keep = Path::new(&keep);
            std::fs::create_dir_all(keep)?;
            let name = format!(
                "callgrind.{}.{}.{pid}.out",
                case.name.replace('/', "_"),
                ctx.binaries.source_id.replace([':', '/'], "_"),
            );
            std::fs::copy(&dump, keep.join(name))?;
        }
        let total = callgrind::total_instructions(&dump)?;
        // The next dump is then the only one left.
        std::fs::remove_file(&dump)?;
        let calls = match tracer {
            Some(t) => Some(t.finish(ctx.shutdown)?),
            None => None,
        };
        Ok((total, calls))
    }
}

/// Waits until the server counts `n` connections, `control` one of them: it accepts new
/// ones and frees closed ones when it next polls.
fn connections_settle_at(control: &mut bench_core::client::Client, n: u64) -> anyhow::Result<()> {
    let since = std::time::Instant::now();
    loop {
        let info = bench_core::info::Info::parse(&control.call_text(&["INFO", "clients"])?);
        if info.get_u64("connected_clients") == Some(n) {
            return Ok(());
        }
        if since.elapsed() > Duration::from_secs(60) {
            bail!(
                "the server under callgrind still counts {} connection(s), not {n}, 60 s after its \
                 clients closed; is another client connected to port {}?",
                info.get("connected_clients").unwrap_or("?"),
                control.addr().port()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default suite's string-key cases on one dataset are counted in a row (one
    /// preload each), the rest in the suite's order.
    #[test]
    fn cases_on_one_dataset_are_counted_in_a_row() {
        let cases = bench_core::perf::PerfSpec::from_toml(bench_core::perf::DEFAULT_PERF)
            .unwrap()
            .expand();
        let order = count_order(&cases);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..cases.len()).collect::<Vec<_>>());
        let datasets: Vec<Option<Dataset>> =
            order.iter().map(|&i| Dataset::of(&cases[i])).collect();
        let mut runs = 0;
        for (n, d) in datasets.iter().enumerate() {
            if d.is_some() && (n == 0 || datasets[n - 1] != *d) {
                runs += 1;
            }
        }
        let distinct: std::collections::BTreeSet<_> = datasets.iter().flatten().collect();
        assert_eq!(runs, distinct.len(), "a dataset counted in two stretches");
        // 100k and 1M keys × 32 B, 1024 B and integers.
        assert_eq!(distinct.len(), 6);
        let names = |r: &[usize]| r.iter().map(|&i| cases[i].name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&order[..4]),
            [
                "PING/P1/c50/io1",
                "PING/P16/c50/io1",
                "SET/32B/P1/c50/io1/100k-keys",
                "SET/32B/P16/c50/io1/100k-keys",
            ]
        );
        assert_eq!(cases[order[4]].name, "GET/32B/P1/c50/io1/100k-keys");
    }
}
