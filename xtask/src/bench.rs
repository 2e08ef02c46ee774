//! `bench`: executes a suite's cases on a build, appends each record to the run
//! directory as it is measured, emits the run's events (`events`), and writes the summary,
//! the report and the table (or JSON) at the end. `bench` hands it checked cases; it
//! prints no progress itself (the sinks do).

use std::collections::BTreeMap;
use std::path::PathBuf;

use bench_core::engine::Engine;
use bench_core::loadgen::engine::NativeEngine;
use bench_core::mem::MemCase;
use bench_core::perf::{EngineKind, PerfSpec};
use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;
use bench_core::sync::SyncCase;
use bench_core::tables::{self, SummaryHeader};
use bench_core::topology::{ReadFrom, TopologySpec};
use bench_core::transport::TlsMode;
use serde_json::json;

use crate::case::{CaseContext, Deploy};
use crate::events::{Event, Sinks};
use crate::host;
use crate::host::choice::HostsChoice;
use crate::plan::suite_file::Plan;
use crate::rundir::{RunDir, new_run, run_id};
use crate::suites::perf;
use crate::topology;
use crate::valkey::{Binaries, BuildRequest};
use crate::valkey_benchmark::ValkeyBenchmark;

/// A run of one suite: which build, where results go, where ports start, the output form.
pub struct Bench {
    pub build: BuildRequest,
    /// Results directory (default: results/<run-id>).
    pub out: Option<PathBuf>,
    pub base_port: u16,
    /// Print the summary as JSON on stdout instead of a table.
    pub json: bool,
    /// Where a cluster's reads go (`--read-from`).
    pub read_from: ReadFrom,
    /// The servers speak TLS only (`--tls`).
    pub tls: Option<TlsMode>,
    /// Where the servers run (`--hosts`, `--server-hosts`).
    pub hosts: HostsChoice,
}

/// Records know their case name and repetition (for progress events).
pub trait HasCase {
    fn case(&self) -> &str;
    fn repetition(&self) -> u32;
}

impl<P, M> HasCase for bench_core::result::Record<P, M> {
    fn case(&self) -> &str {
        &self.case
    }

    fn repetition(&self) -> u32 {
        self.repetition
    }
}

impl Bench {
    /// Runs a plan: its suite's cases, records as they are measured, the ending.
    pub fn execute(
        &self,
        plan: Plan,
        sinks: &mut Sinks,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        match plan {
            Plan::Perf(spec) => self.perf(*spec, sinks, shutdown),
            Plan::Mem(cases) => self.mem(cases, sinks, shutdown),
            Plan::Sync(cases) => self.sync(cases, sinks, shutdown),
        }
    }

    /// Runs the perf suite's cases, a record per measured repetition. The event stream
    /// always ends with `finished`, whatever happens (a failed build included).
    fn perf(&self, spec: PerfSpec, sinks: &mut Sinks, shutdown: &Shutdown) -> anyhow::Result<()> {
        let result = self.perf_run(spec, sinks, shutdown);
        finish(sinks, &result);
        result
    }

    /// Runs the perf suite's cases, a record per measured repetition.
    fn perf_run(
        &self,
        spec: PerfSpec,
        sinks: &mut Sinks,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let cases = spec.expand();
        // The hosts first: a refused host key stops the run before a build.
        let hosts = self.hosts.connect(shutdown)?;
        let binaries = self.build.binaries(shutdown)?;
        let valkey_benchmark;
        let engine: &dyn Engine = match (&hosts.clients, spec.engine) {
            (Some(clients), _) => clients,
            (None, EngineKind::Native) => &NativeEngine,
            (None, EngineKind::ValkeyBenchmark) => {
                valkey_benchmark = ValkeyBenchmark::new(&binaries.benchmark, shutdown)?;
                &valkey_benchmark
            }
        };
        let run_id = run_id("perf");
        let run_dir = RunDir::create(&new_run(&run_id, self.out.as_deref())?)?;
        let host = host::info();
        let topology = topology::from_spec(spec.topology, self.read_from);
        let servers = Deploy {
            topology: topology.as_ref(),
            hosts: &hosts.servers,
        };
        let ctx = CaseContext {
            run_id: &run_id,
            binaries: &binaries,
            host: &host,
            hosts: &hosts.servers,
            engine,
            base_port: self.base_port,
            shutdown,
            servers: &servers,
            tls: self.tls,
        };
        let total: u64 = cases.iter().map(|c| u64::from(c.repetitions)).sum();
        sinks.emit(Event::RunStarted {
            run_id: run_id.clone(),
            suite: "perf".into(),
            cases: cases.len(),
            repetitions: Some(spec.repetitions),
            expected_records: total,
            valkey_version: binaries.version.clone(),
            source_id: binaries.source_id.clone(),
            engine: format!("{} {}", engine.name(), engine.version()),
            results: run_dir.results_file(),
            hosts: hosts.describe(),
        });
        let mut done = 0u64;
        let mut outcome = Ok(());
        for (i, case) in cases.iter().enumerate() {
            sinks.emit(Event::CaseStarted {
                case: case.name.clone(),
                index: i + 1,
                cases: cases.len(),
            });
            let result = perf::run_case(case, &ctx, &mut |record| {
                run_dir.append(&record)?;
                done += 1;
                let m = &record.metrics;
                let mut figures = BTreeMap::from([("ops_per_sec".to_string(), m.ops_per_sec)]);
                for (key, value) in [
                    ("p50_us", m.latency.p50_us),
                    ("p99_us", m.latency.p99_us),
                    ("server_cpu_us_per_request", m.server_cpu_us_per_request),
                ] {
                    if let Some(v) = value {
                        figures.insert(key.to_string(), v);
                    }
                }
                sinks.emit(Event::RecordWritten {
                    case: record.case.clone(),
                    index: i + 1,
                    cases: cases.len(),
                    repetition: record.repetition,
                    done,
                    line: format!("{:.0} ops/s", m.ops_per_sec),
                    figures,
                });
                let errors: u64 = m.series.iter().map(|s| s.errors).sum();
                sinks.emit(Event::Requests {
                    command: record.params.command.clone(),
                    requests: m.requests,
                    errors,
                    histogram: m.histogram.clone(),
                    seconds: m
                        .series
                        .iter()
                        .map(|s| [s.ops, s.p50_us, s.p99_us])
                        .collect(),
                });
                Ok(())
            });
            if let Err(e) = result {
                outcome = Err(e);
                break;
            }
            sinks.emit(Event::CaseFinished {
                case: case.name.clone(),
                index: i + 1,
            });
        }
        let records: Vec<bench_core::result::ResultRecord> = run_dir.read()?;
        let summaries = tables::summarize(&records);
        let mut header = summary_header(
            &run_id,
            "perf",
            &binaries,
            &host,
            &format!("{} {}", engine.name(), engine.version()),
            incomplete(&outcome, shutdown),
        );
        header.warnings = bench_core::report_page::weak_run(&records, &summaries);
        for w in &header.warnings {
            sinks.emit(Event::Warning {
                message: w.replace("**", ""),
            });
        }
        let ending = Ending {
            run_id: &run_id,
            run_dir: &run_dir,
            records: records.len(),
            summary: tables::summary_markdown(&header, &summaries),
            json: ("cases", serde_json::to_value(&summaries)?),
            table: tables::markdown_table(&summaries),
        };
        self.conclude(sinks, ending, outcome)
    }

    /// Runs the mem suite's cases, a record each.
    fn mem(
        &self,
        cases: Vec<MemCase>,
        sinks: &mut Sinks,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
        let topology = cases.first().map_or_else(Default::default, |c| c.topology);
        let result = self.records_run(
            "mem",
            topology,
            &names,
            sinks,
            shutdown,
            |i, ctx| crate::suites::mem::run_case(&cases[i], ctx).map(|r| vec![r]),
            |r: &bench_core::result::MemRecord| {
                let line = format!(
                    "{:.1} bytes/item ({:.0}% efficient, {})",
                    r.metrics.bytes_per_item,
                    100.0 * r.metrics.efficiency,
                    r.metrics.encoding
                );
                let figures = BTreeMap::from([
                    ("bytes_per_item".to_string(), r.metrics.bytes_per_item),
                    ("efficiency".to_string(), r.metrics.efficiency),
                ]);
                (line, figures)
            },
            |records| (tables::mem_table(records), tables::MEM_NOTE),
            "our pipelined populator",
        );
        finish(sinks, &result);
        result
    }

    /// Runs the sync suite's cases, a record per replica.
    fn sync(
        &self,
        cases: Vec<SyncCase>,
        sinks: &mut Sinks,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
        let result = self.records_run(
            "sync",
            TopologySpec::Standalone,
            &names,
            sinks,
            shutdown,
            |i, ctx| crate::suites::sync::run_case(&cases[i], ctx),
            |r: &bench_core::result::SyncRecord| {
                let line = format!(
                    "replica {}: {:.3} s, {:.0} MB/s",
                    r.params.replica,
                    r.metrics.sync_secs,
                    r.metrics.throughput_bytes_per_sec / 1e6
                );
                let figures = BTreeMap::from([
                    ("sync_secs".to_string(), r.metrics.sync_secs),
                    (
                        "throughput_bytes_per_sec".to_string(),
                        r.metrics.throughput_bytes_per_sec,
                    ),
                ]);
                (line, figures)
            },
            |records| (tables::sync_table(records), tables::SYNC_NOTE),
            "REPLICAOF on every replica at once",
        );
        finish(sinks, &result);
        result
    }

    /// The loop shared by the mem and sync suites: build, run each case, append its
    /// records, then write the summary and print the table (or JSON).
    #[allow(clippy::too_many_arguments)]
    fn records_run<R>(
        &self,
        suite: &str,
        topology: TopologySpec,
        cases: &[String],
        sinks: &mut Sinks,
        shutdown: &Shutdown,
        run_case: impl Fn(usize, &CaseContext<'_>) -> anyhow::Result<Vec<R>>,
        line: impl Fn(&R) -> (String, BTreeMap<String, f64>),
        table: impl Fn(&[R]) -> (String, &'static str),
        engine: &str,
    ) -> anyhow::Result<()>
    where
        R: serde::Serialize + serde::de::DeserializeOwned + HasCase,
    {
        let hosts = self.hosts.connect(shutdown)?;
        let binaries = self.build.binaries(shutdown)?;
        let run_id = run_id(suite);
        let run_dir = RunDir::create(&new_run(&run_id, self.out.as_deref())?)?;
        let host = host::info();
        let topology = topology::from_spec(topology, ReadFrom::Primaries);
        let servers = Deploy {
            topology: topology.as_ref(),
            hosts: &hosts.servers,
        };
        let info = CaseContext {
            run_id: &run_id,
            binaries: &binaries,
            host: &host,
            hosts: &hosts.servers,
            engine: &NativeEngine,
            base_port: self.base_port,
            shutdown,
            servers: &servers,
            tls: self.tls,
        };
        sinks.emit(Event::RunStarted {
            run_id: run_id.clone(),
            suite: suite.into(),
            cases: cases.len(),
            repetitions: None,
            expected_records: 0,
            valkey_version: binaries.version.clone(),
            source_id: binaries.source_id.clone(),
            engine: engine.into(),
            results: run_dir.results_file(),
            hosts: hosts.describe(),
        });
        let mut done = 0u64;
        let mut outcome = Ok(());
        for (i, name) in cases.iter().enumerate() {
            sinks.emit(Event::CaseStarted {
                case: name.clone(),
                index: i + 1,
                cases: cases.len(),
            });
            let result = run_case(i, &info).and_then(|records| {
                for r in &records {
                    run_dir.append_serialized(r)?;
                    done += 1;
                    let (line, figures) = line(r);
                    sinks.emit(Event::RecordWritten {
                        case: r.case().to_string(),
                        index: i + 1,
                        cases: cases.len(),
                        repetition: r.repetition(),
                        done,
                        line,
                        figures,
                    });
                }
                Ok(())
            });
            if let Err(e) = result {
                outcome = Err(e);
                break;
            }
            sinks.emit(Event::CaseFinished {
                case: name.clone(),
                index: i + 1,
            });
        }
        let records: Vec<R> = run_dir.read()?;
        let header = summary_header(
            &run_id,
            suite,
            &binaries,
            &host,
            engine,
            incomplete(&outcome, shutdown),
        );
        let (table, note) = table(&records);
        let ending = Ending {
            run_id: &run_id,
            run_dir: &run_dir,
            records: records.len(),
            summary: tables::summary_with_table(&header, note, &table),
            json: ("records", serde_json::to_value(&records)?),
            table,
        };
        self.conclude(sinks, ending, outcome)
    }

    /// The end of every run: `summary.md`, the report, the `finished` event (after both,
    /// so a follower finds them), then the table or the JSON summary on stdout.
    fn conclude(
        &self,
        sinks: &mut Sinks,
        ending: Ending<'_>,
        outcome: anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let run_dir = ending.run_dir;
        run_dir.write_file("summary.md", &ending.summary)?;
        if ending.records > 0 {
            crate::publish::write_after_run(run_dir.path());
        }
        sinks.emit(Event::Finished {
            run_id: Some(ending.run_id.to_string()),
            records: ending.records,
            dir: Some(run_dir.path().to_path_buf()),
            complete: outcome.is_ok(),
            error: outcome.as_ref().err().map(|e| format!("{e:#}")),
        });
        if self.json {
            let (key, value) = ending.json;
            let mut out = json!({
                "run_id": ending.run_id,
                "dir": run_dir.path(),
                "results": run_dir.results_file(),
                "complete": outcome.is_ok(),
            });
            out[key] = value;
            println!("{out}");
        } else {
            print!("{}", ending.table);
            eprintln!(
                "wrote {} records to {}",
                ending.records,
                run_dir.path().display()
            );
        }
        outcome
    }
}

/// What a finished run writes and prints.
struct Ending<'a> {
    run_id: &'a str,
    run_dir: &'a RunDir,
    records: usize,
    /// `summary.md`.
    summary: String,
    /// The `--json` summary's payload: its key and value (`cases` or `records`).
    json: (&'static str, serde_json::Value),
    /// The table printed on stdout.
    table: String,
}

/// The header of a run's `summary.md`.
fn summary_header(
    run_id: &str,
    suite: &str,
    binaries: &Binaries,
    host: &HostInfo,
    engine: &str,
    incomplete: Option<String>,
) -> SummaryHeader {
    SummaryHeader {
        run_id: run_id.to_string(),
        suite: suite.into(),
        valkey: format!(
            "{} ({}; {})",
            binaries.version, binaries.source_id, binaries.build
        ),
        engine: engine.into(),
        host: format!(
            "{} ({} CPUs, {}, {:.1} GiB, kernel {})",
            host.hostname,
            host.cpus,
            host.model,
            host.memory_bytes as f64 / (1u64 << 30) as f64,
            host.kernel
        ),
        incomplete,
        warnings: Vec::new(),
        command: Some(crate::rundir::command_line()),
    }
}

/// Ends the event stream of a run that failed before it could say `finished` itself.
fn finish(sinks: &mut Sinks, result: &anyhow::Result<()>) {
    if !sinks.finished() {
        sinks.emit(Event::Finished {
            run_id: None,
            records: 0,
            dir: None,
            complete: false,
            error: result.as_ref().err().map(|e| format!("{e:#}")),
        });
    }
}

/// Why a run's summary is marked incomplete, if it is.
fn incomplete(outcome: &anyhow::Result<()>, shutdown: &Shutdown) -> Option<String> {
    match outcome {
        Ok(()) => None,
        Err(_) if shutdown.is_triggered() => Some("interrupted".to_string()),
        Err(e) => Some(format!("failed: {e:#}")),
    }
}
