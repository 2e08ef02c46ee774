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
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{UsageError, ValkeyArgs};
use crate::perf;
use crate::results::RunDir;
use crate::valkey_benchmark::ValkeyBenchmark;
use crate::{host, instances, project};

#[derive(Args, Debug)]
pub struct BenchCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    /// The suite to run.
    #[arg(long, value_enum, default_value_t = SuiteArg::Perf)]
    pub suite: SuiteArg,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SuiteArg {
    Perf,
}

impl BenchCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
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
        let records = run_dir.read()?;
        let summaries = report::summarize(&records);
        let incomplete = match &outcome {
            Ok(()) => None,
            Err(_) if shutdown.is_triggered() => Some("interrupted".to_string()),
            Err(e) => Some(format!("failed: {e:#}")),
        };
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
            if suite::RESERVED_CONFIG.contains(&key.as_str()) {
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

/// `20261122T223000Z-perf-1a2b`: sorts by time; the suffix separates runs started in the
/// same second.
fn run_id(suite: &str) -> String {
    let now = chrono::Utc::now();
    let salt =
        (now.timestamp_subsec_nanos() ^ std::process::id().wrapping_mul(2_654_435_761)) & 0xffff;
    format!("{}-{suite}-{salt:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} repetitions [{elapsed}<{eta}] {msg}")
            .expect("the template is valid"),
    );
    bar
}
