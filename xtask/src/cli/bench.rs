//! `cargo xtask bench`: build Valkey, run a suite, write `results/<run-id>/`, print a table.

use std::fs;
use std::io::IsTerminal;
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

use super::{SuiteArg, ValkeyArgs, progress_bar};
use crate::error::UsageError;
use crate::perf;
use crate::results::RunDir;
use crate::results::run_id;
use crate::suite::CaseContext;
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
}

/// Records know their case name (for progress lines).
pub trait HasCase {
    fn case(&self) -> &str;
}

impl<P, M> HasCase for bench_core::result::Record<P, M> {
    fn case(&self) -> &str {
        &self.case
    }
}

impl BenchCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        if let Some(out) = &self.out {
            crate::results::check_unused(out).map_err(UsageError)?;
        }
        match self.which_suite()? {
            SuiteArg::Mem => return self.run_mem(shutdown),
            SuiteArg::Sync => return self.run_sync(shutdown),
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
        eprintln!(
            "run {run_id}: {} cases × {} repetitions on Valkey {} ({}), engine {} {}",
            cases.len(),
            spec.repetitions,
            binaries.version,
            binaries.source_id,
            engine.name(),
            engine.version(),
        );
        eprintln!("results: {}", run_dir.results_file().display());
        let bar = progress_bar(total);
        let interactive = std::io::stderr().is_terminal();
        let mut done = 0u64;
        let mut outcome = Ok(());
        for case in &cases {
            bar.set_message(case.name.clone());
            let result = perf::run_case(case, &ctx, &mut |record| {
                done += 1;
                bar.inc(1);
                if !interactive {
                    eprintln!(
                        "[{done}/{total}] {} rep {}: {:.0} ops/s",
                        record.case, record.repetition, record.metrics.ops_per_sec
                    );
                }
                run_dir.append(&record)
            });
            if let Err(e) = result {
                outcome = Err(e);
                break;
            }
        }
        bar.finish_and_clear();
        let records: Vec<bench_core::result::ResultRecord> = run_dir.read()?;
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

    fn run_mem(self, shutdown: &Shutdown) -> anyhow::Result<()> {
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
            shutdown,
            |i, ctx| crate::mem::run_case(&cases[i], ctx).map(|r| vec![r]),
            |r: &bench_core::result::MemRecord| {
                format!(
                    "{:.1} bytes/item ({:.0}% efficient, {})",
                    r.metrics.bytes_per_item,
                    100.0 * r.metrics.efficiency,
                    r.metrics.encoding
                )
            },
            |records| (report::mem_table(records), report::MEM_NOTE),
            "our pipelined populator",
        )
    }

    fn run_sync(self, shutdown: &Shutdown) -> anyhow::Result<()> {
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
            shutdown,
            |i, ctx| crate::sync::run_case(&cases[i], ctx),
            |r: &bench_core::result::SyncRecord| {
                format!(
                    "replica {}: {:.3} s, {:.0} MB/s",
                    r.params.replica,
                    r.metrics.sync_secs,
                    r.metrics.throughput_bytes_per_sec / 1e6
                )
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
        shutdown: &Shutdown,
        run_case: impl Fn(usize, &CaseContext<'_>) -> anyhow::Result<Vec<R>>,
        line: impl Fn(&R) -> String,
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
        eprintln!(
            "run {run_id}: {} {suite} cases on Valkey {} ({})\nresults: {}",
            cases.len(),
            binaries.version,
            binaries.source_id,
            run_dir.results_file().display()
        );
        let bar = progress_bar(cases.len() as u64);
        let interactive = std::io::stderr().is_terminal();
        let mut outcome = Ok(());
        for (i, name) in cases.iter().enumerate() {
            bar.set_message(name.clone());
            let result = run_case(i, &info).and_then(|records| {
                for r in &records {
                    run_dir.append_serialized(r)?;
                    if !interactive {
                        eprintln!("[{}/{}] {}: {}", i + 1, cases.len(), r.case(), line(r));
                    }
                }
                Ok(())
            });
            bar.inc(1);
            if let Err(e) = result {
                outcome = Err(e);
                break;
            }
        }
        bar.finish_and_clear();
        let records: Vec<R> = run_dir.read()?;
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
