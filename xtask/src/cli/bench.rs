//! `cargo xtask bench`: build Valkey, run a suite, write `results/<run-id>/`, print a table.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use bench_core::engine::Engine;
use bench_core::loadgen::engine::NativeEngine;
use bench_core::report::{self, SummaryHeader};
use bench_core::shutdown::Shutdown;
use bench_core::suite::{self, EngineKind, PerfSpec};
use bench_core::{mem, sync};
use clap::Args;
use serde_json::json;

use super::{SuiteArg, ValkeyArgs};
use crate::error::UsageError;
use crate::events::{Event, Sink, Sinks};
use crate::perf;
use crate::results::RunDir;
use crate::results::run_id;
use crate::suite::CaseContext;
use crate::ui::json_lines::JsonLines;
use crate::ui::terminal::Terminal;
use crate::valkey_benchmark::ValkeyBenchmark;
use crate::{host, instances, project};

#[derive(Args, Debug)]
pub struct BenchCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    /// The suite to run (default perf, or what the suite file says).
    #[arg(long, value_enum)]
    pub suite: Option<SuiteArg>,
    /// A suite definition file (TOML) replacing the built-in matrix; see bench-core/suites/.
    #[arg(long, value_name = "FILE")]
    pub suite_file: Option<PathBuf>,
    /// The short built-in matrix (under a minute once Valkey is built).
    #[arg(long, conflicts_with = "suite_file")]
    pub quick: bool,
    /// Results directory (default: results/<run-id>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The first port tried for servers; ports in use are skipped.
    #[arg(long, default_value_t = instances::Options::default().base_port)]
    pub base_port: u16,
    /// Extra server configuration for every case, name=value (repeatable).
    /// `io-threads=N` replaces the suite's io_threads list.
    #[arg(long = "server-config", value_name = "NAME=VALUE")]
    pub server_config: Vec<String>,
    /// The load generator, replacing the suite file's `engine`.
    #[arg(long, value_parser = ["native", "valkey-benchmark"])]
    pub engine: Option<String>,
    /// Print the run's summary as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the run's progress events here, one JSON object per line, flushed as
    /// they happen (run_started, case_started, record_written, case_finished, finished).
    #[arg(long, value_name = "FILE")]
    pub progress_json: Option<PathBuf>,
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

impl BenchCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        if let Some(out) = &self.out {
            crate::results::check_unused(out).map_err(UsageError)?;
        }
        let mut sinks = self.sinks()?;
        match self.which_suite()? {
            SuiteArg::Mem => return self.run_mem(&mut sinks, shutdown),
            SuiteArg::Sync => return self.run_sync(&mut sinks, shutdown),
            SuiteArg::Perf => {}
        }
        let spec = self.spec()?;
        let cases = spec.expand();
        let binaries = self.valkey.binaries(shutdown)?;
        let engine: Box<dyn Engine> = match spec.engine {
            EngineKind::Native => Box::new(NativeEngine),
            EngineKind::ValkeyBenchmark => {
                Box::new(ValkeyBenchmark::new(&binaries.benchmark, shutdown)?)
            }
        };
        let run_id = run_id("perf");
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| project::root().join("results").join(&run_id));
        let run_dir = RunDir::create(&out)?;
        let host = host::info();
        let ctx = perf::CaseContext {
            run_id: &run_id,
            binaries: &binaries,
            host: &host,
            engine: engine.as_ref(),
            base_port: self.base_port,
            shutdown,
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
                for (key, value) in [("p50_us", m.latency.p50_us), ("p99_us", m.latency.p99_us)] {
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
        sinks.emit(Event::Finished {
            run_id: run_id.clone(),
            records: records.len(),
            dir: run_dir.path().to_path_buf(),
            complete: outcome.is_ok(),
        });
        let summaries = report::summarize(&records);
        let incomplete = incomplete(&outcome, shutdown);
        let header = SummaryHeader {
            run_id: run_id.clone(),
            suite: "perf".into(),
            valkey: format!(
                "{} ({}, {:?})",
                binaries.version, binaries.source_id, binaries.build
            ),
            engine: format!("{} {}", engine.name(), engine.version()),
            host: format!(
                "{} ({} CPUs, {}, kernel {})",
                host.hostname, host.cpus, host.model, host.kernel
            ),
            incomplete,
        };
        run_dir.write_file("summary.md", &report::summary_markdown(&header, &summaries))?;
        if !records.is_empty() {
            crate::report::write_after_run(run_dir.path());
        }
        if self.json {
            let out = json!({
                "run_id": run_id,
                "dir": run_dir.path(),
                "results": run_dir.results_file(),
                "complete": outcome.is_ok(),
                "cases": summaries,
            });
            println!("{out}");
        } else {
            print!("{}", report::markdown_table(&summaries));
            eprintln!(
                "wrote {} records to {}",
                records.len(),
                run_dir.path().display()
            );
        }
        outcome
    }

    /// `--suite`, else the suite file's `suite` field, else perf.
    fn which_suite(&self) -> anyhow::Result<SuiteArg> {
        let Some(path) = &self.suite_file else {
            return Ok(self.suite.unwrap_or(SuiteArg::Perf));
        };
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading suite file {}", path.display()))?;
        let declared = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("suite").and_then(|v| v.as_str().map(String::from)));
        let from_file = match declared.as_deref() {
            Some("mem") => SuiteArg::Mem,
            Some("sync") => SuiteArg::Sync,
            _ => SuiteArg::Perf, // the perf parser reports anything else by field
        };
        match self.suite {
            Some(flag) if flag != from_file => Err(UsageError(format!(
                "--suite {flag:?} but {} says suite = {:?}; drop --suite or use a {flag:?} suite file",
                path.display(),
                declared.unwrap_or_default()
            ))
            .into()),
            _ => Ok(from_file),
        }
    }

    /// The built-in or given suite file's text, and where it came from.
    fn suite_text(
        &self,
        default: &str,
        quick: &str,
        what: &str,
    ) -> anyhow::Result<(String, String)> {
        Ok(match (&self.suite_file, self.quick) {
            (Some(path), _) => (
                fs::read_to_string(path)
                    .with_context(|| format!("reading suite file {}", path.display()))?,
                path.display().to_string(),
            ),
            (None, true) => (quick.to_string(), format!("built-in quick {what} suite")),
            (None, false) => (
                default.to_string(),
                format!("built-in default {what} suite"),
            ),
        })
    }

    /// The terminal view, and the JSON-lines stream with `--progress-json`.
    fn sinks(&self) -> anyhow::Result<Sinks> {
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Terminal::new())];
        if let Some(path) = &self.progress_json {
            let stream = JsonLines::create(path).map_err(|e| UsageError(format!("{e:#}")))?;
            sinks.push(Box::new(stream));
        }
        Ok(Sinks::new(sinks))
    }

    fn run_mem(self, sinks: &mut Sinks, shutdown: &Shutdown) -> anyhow::Result<()> {
        let (text, origin) = self.suite_text(mem::DEFAULT_MEM, mem::QUICK_MEM, "mem")?;
        let mut cases =
            mem::MemSpecFile::parse(&text).map_err(|e| UsageError(format!("{origin}: {e}")))?;
        let extra = super::parse_server_config(&self.server_config)?;
        cases
            .iter_mut()
            .for_each(|c| c.server_config.extend(extra.clone()));
        let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
        self.run_records(
            "mem",
            &names,
            sinks,
            shutdown,
            |i, ctx| crate::mem::run_case(&cases[i], ctx).map(|r| vec![r]),
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
            |records| (report::mem_table(records), report::MEM_NOTE),
            "our pipelined populator",
        )
    }

    fn run_sync(self, sinks: &mut Sinks, shutdown: &Shutdown) -> anyhow::Result<()> {
        let (text, origin) = self.suite_text(sync::DEFAULT_SYNC, sync::QUICK_SYNC, "sync")?;
        let mut cases =
            sync::SyncSpecFile::parse(&text).map_err(|e| UsageError(format!("{origin}: {e}")))?;
        let extra = super::parse_server_config(&self.server_config)?;
        cases
            .iter_mut()
            .for_each(|c| c.server_config.extend(extra.clone()));
        let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
        self.run_records(
            "sync",
            &names,
            sinks,
            shutdown,
            |i, ctx| crate::sync::run_case(&cases[i], ctx),
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
            |records| (report::sync_table(records), report::SYNC_NOTE),
            "REPLICAOF on every replica at once",
        )
    }

    /// The loop shared by the mem and sync suites: build, run each case, append its
    /// records, then write the summary and print the table (or JSON).
    #[allow(clippy::too_many_arguments)]
    fn run_records<R>(
        &self,
        suite: &str,
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
        let binaries = self.valkey.binaries(shutdown)?;
        let run_id = run_id(suite);
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| project::root().join("results").join(&run_id));
        let run_dir = RunDir::create(&out)?;
        let host = host::info();
        let info = CaseContext {
            run_id: &run_id,
            binaries: &binaries,
            host: &host,
            base_port: self.base_port,
            shutdown,
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
        sinks.emit(Event::Finished {
            run_id: run_id.clone(),
            records: records.len(),
            dir: run_dir.path().to_path_buf(),
            complete: outcome.is_ok(),
        });
        let header = SummaryHeader {
            run_id: run_id.clone(),
            suite: suite.into(),
            valkey: format!(
                "{} ({}, {:?})",
                binaries.version, binaries.source_id, binaries.build
            ),
            engine: engine.into(),
            host: format!(
                "{} ({} CPUs, {}, kernel {})",
                host.hostname, host.cpus, host.model, host.kernel
            ),
            incomplete: incomplete(&outcome, shutdown),
        };
        let (table, note) = table(&records);
        run_dir.write_file(
            "summary.md",
            &report::summary_with_table(&header, note, &table),
        )?;
        if !records.is_empty() {
            crate::report::write_after_run(run_dir.path());
        }
        if self.json {
            let out = json!({
                "run_id": run_id,
                "dir": run_dir.path(),
                "results": run_dir.results_file(),
                "complete": outcome.is_ok(),
                "records": records,
            });
            println!("{out}");
        } else {
            print!("{table}");
            eprintln!(
                "wrote {} records to {}",
                records.len(),
                run_dir.path().display()
            );
        }
        outcome
    }

    fn spec(&self) -> anyhow::Result<PerfSpec> {
        let (text, origin) = match (&self.suite_file, self.quick) {
            (Some(path), _) => (
                fs::read_to_string(path)
                    .with_context(|| format!("reading suite file {}", path.display()))?,
                path.display().to_string(),
            ),
            (None, true) => (suite::QUICK_PERF.to_string(), "built-in quick suite".into()),
            (None, false) => (
                suite::DEFAULT_PERF.to_string(),
                "built-in default suite".into(),
            ),
        };
        let mut spec =
            PerfSpec::from_toml(&text).map_err(|e| UsageError(format!("{origin}: {e}")))?;
        if let Some(name) = &self.engine {
            spec.engine = EngineKind::parse(name).expect("clap allows only known engines");
        }
        let mut extra = super::parse_server_config(&self.server_config)?;
        if let Some(threads) = extra.remove("io-threads") {
            let n: u32 = threads
                .parse()
                .ok()
                .filter(|n| (1..=128).contains(n))
                .ok_or_else(|| {
                    UsageError(format!(
                        "--server-config io-threads={threads}: use a whole number from 1 to 128"
                    ))
                })?;
            spec.io_threads = vec![n];
        }
        for (key, value) in extra {
            if suite::PERF_RESERVED.contains(&key.as_str()) {
                return Err(UsageError(format!(
                    "--server-config {key}={value}: the harness sets `{key}` itself"
                ))
                .into());
            }
            spec.server_config.insert(key, value);
        }
        Ok(spec)
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
