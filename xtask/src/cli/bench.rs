//! `cargo xtask bench`: build Valkey, run a suite, write `results/<run-id>/`, print a table.

use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use bench_core::shutdown::Shutdown;
use bench_core::suite::{self, EngineKind, PerfSpec};
use bench_core::{mem, sync};
use clap::Args;

use super::{SuiteArg, ValkeyArgs};
use crate::error::UsageError;
use crate::events::{Sink, Sinks};
use crate::instances;
use crate::ui::json_lines::JsonLines;
use crate::ui::terminal::Terminal;

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

impl BenchCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        if let Some(out) = &self.out {
            crate::rundir::check_unused(out).map_err(UsageError)?;
        }
        // Every flag and the suite file are checked before the progress file is created.
        match self.which_suite()? {
            SuiteArg::Mem => self.run_mem(shutdown),
            SuiteArg::Sync => self.run_sync(shutdown),
            SuiteArg::Perf => {
                let spec = self.spec()?;
                let mut sinks = self.sinks()?;
                self.runner().perf(spec, &mut sinks, shutdown)
            }
        }
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

    fn runner(&self) -> crate::runner::Run {
        crate::runner::Run {
            build: self.valkey.request(),
            out: self.out.clone(),
            base_port: self.base_port,
            json: self.json,
        }
    }

    /// The terminal view, and the JSON-lines stream with `--progress-json`.
    fn sinks(&self) -> anyhow::Result<Sinks> {
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Terminal::new())];
        if let Some(path) = &self.progress_json {
            if let Some(out) = &self.out {
                let results = out.join("results.jsonl");
                // The same file, however it is spelled (the directory may not exist yet).
                let dir = |p: &std::path::Path| p.parent().and_then(|d| d.canonicalize().ok());
                let same_dir = dir(path).is_some() && dir(path) == dir(&results);
                if path == &results || (same_dir && path.file_name() == results.file_name()) {
                    return Err(UsageError(format!(
                        "--progress-json {}: that is the run's results file; give another path",
                        path.display()
                    ))
                    .into());
                }
            }
            let stream = JsonLines::create(path).map_err(|e| UsageError(format!("{e:#}")))?;
            sinks.push(Box::new(stream));
        }
        Ok(Sinks::new(sinks))
    }

    fn run_mem(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let (text, origin) = self.suite_text(mem::DEFAULT_MEM, mem::QUICK_MEM, "mem")?;
        let mut cases =
            mem::MemSpecFile::parse(&text).map_err(|e| UsageError(format!("{origin}: {e}")))?;
        let extra = super::parse_server_config(&self.server_config)?;
        cases
            .iter_mut()
            .for_each(|c| c.server_config.extend(extra.clone()));
        let mut sinks = self.sinks()?;
        self.runner().mem(cases, &mut sinks, shutdown)
    }

    fn run_sync(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let (text, origin) = self.suite_text(sync::DEFAULT_SYNC, sync::QUICK_SYNC, "sync")?;
        let mut cases =
            sync::SyncSpecFile::parse(&text).map_err(|e| UsageError(format!("{origin}: {e}")))?;
        let extra = super::parse_server_config(&self.server_config)?;
        cases
            .iter_mut()
            .for_each(|c| c.server_config.extend(extra.clone()));
        let mut sinks = self.sinks()?;
        self.runner().sync(cases, &mut sinks, shutdown)
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
