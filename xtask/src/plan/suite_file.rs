//! A run's plan from a suite: which suite (`--suite`, else the suite file's `suite` field,
//! else perf), its cases from the given file or the built-in matrix (default or
//! `--quick`), with `--server-config` and `--engine` applied and checked. Errors name the
//! file (or the built-in suite) and the field, and exit 2 before anything starts.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use bench_core::mem::{self, MemCase};
use bench_core::perf::{self, EngineKind, Matrix, PerfSpec};
use bench_core::placement::{Placement, SuiteHosts};
use bench_core::sync::{self, SyncCase};
use bench_core::topology::TopologySpec;
use bench_core::transport::TlsMode;
use serde::Deserialize;

use crate::error::UsageError;
use crate::suites::SuiteKind;

/// What `bench` runs: one suite's cases, every knob fixed.
#[derive(Debug)]
pub enum Plan {
    Perf(Box<PerfSpec>),
    Mem(Vec<MemCase>),
    Sync(Vec<SyncCase>),
}

/// Where a run's cases come from, as the flags gave it.
#[derive(Clone, Debug, Default)]
pub struct SuiteChoice {
    /// `--suite`.
    pub suite: Option<SuiteKind>,
    /// `--suite-file`.
    pub file: Option<PathBuf>,
    /// `--quick`: the built-in short matrix.
    pub quick: bool,
    /// `--engine` (perf).
    pub engine: Option<String>,
    /// `--server-config`, parsed and checked.
    pub server_config: BTreeMap<String, String>,
    /// `--topology`, replacing the suite file's.
    pub topology: Option<TopologySpec>,
    /// `--server-cpus`, `--client-cpus`, replacing the suite file's.
    pub placement: Placement,
    /// `--tls` (with `--tls-auth-clients`): every case's servers speak TLS only.
    pub tls: Option<TlsMode>,
    /// `--commands`, `--value-sizes`, `--pipelines`, `--clients`, `--io-threads`,
    /// `--keyspaces`: the perf matrix's lists, replacing the suite's.
    pub matrix: Matrix,
}

impl Plan {
    /// Where its cases run.
    pub fn topology(&self) -> TopologySpec {
        match self {
            Plan::Perf(spec) => spec.topology,
            Plan::Mem(cases) => cases.first().map_or_else(Default::default, |c| c.topology),
            Plan::Sync(_) => TopologySpec::Standalone,
        }
    }
}

impl SuiteChoice {
    /// The plan, or an error naming what to fix.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let suite = self.which_suite()?;
        if let Some(flag) = self
            .matrix
            .given()
            .first()
            .filter(|_| suite != SuiteKind::Perf)
        {
            return Err(UsageError(format!(
                "{flag} replaces a list of the perf suite's matrix; the {suite:?} suite has its \
                 own cases: drop {flag} or run --suite perf"
            ))
            .into());
        }
        if self.placement.is_pinned() && suite != SuiteKind::Perf {
            return Err(UsageError(format!(
                "--server-cpus / --client-cpus pin the perf suite's servers and generator; the \
                 {suite:?} suite does not take them yet"
            ))
            .into());
        }
        match (self.topology, suite) {
            (Some(t), SuiteKind::Sync) if t != TopologySpec::Standalone => {
                return Err(UsageError(format!(
                    "--topology {t}: the sync suite runs its own replication group; drop \
                     --topology"
                ))
                .into());
            }
            // A primary with replicas keeps every write in its replication backlog too,
            // inside used_memory: it would be counted as the items' memory.
            (Some(t), SuiteKind::Mem) if t.replicas() > 0 => {
                return Err(UsageError(format!(
                    "--topology {t}: the mem suite measures a standalone server or a \
                     cluster's primaries without replicas (a primary's replication backlog \
                     would count as item memory); use standalone or cluster:Sx0"
                ))
                .into());
            }
            _ => {}
        }
        Ok(match suite {
            SuiteKind::Sync if self.tls.is_some() => {
                return Err(UsageError(
                    "--tls: the sync suite measures replication over plain TCP; drop --tls".into(),
                )
                .into());
            }
            SuiteKind::Perf => Plan::Perf(Box::new(self.perf()?)),
            SuiteKind::Mem => {
                let (text, origin) = self.text(mem::DEFAULT_MEM, mem::QUICK_MEM, "mem suite")?;
                let mut cases = mem::MemSpecFile::parse(&text)
                    .map_err(|e| UsageError(format!("{origin}: {e}")))?;
                for c in &mut cases {
                    c.server_config.extend(self.server_config.clone());
                    if let Some(t) = self.topology.filter(|t| t.is_cluster()) {
                        c.topology = t;
                        c.name = format!("{}/{t}", c.name);
                    }
                    if let Some(mode) = self.tls {
                        c.tls = Some(mode);
                        c.name.push_str(mode.suffix());
                    }
                }
                Plan::Mem(cases)
            }
            SuiteKind::Sync => {
                let (text, origin) =
                    self.text(sync::DEFAULT_SYNC, sync::QUICK_SYNC, "sync suite")?;
                let mut cases = sync::SyncSpecFile::parse(&text)
                    .map_err(|e| UsageError(format!("{origin}: {e}")))?;
                for c in &mut cases {
                    c.server_config.extend(self.server_config.clone());
                }
                Plan::Sync(cases)
            }
        })
    }

    /// `--suite`, else the suite file's `suite` field, else perf.
    fn which_suite(&self) -> anyhow::Result<SuiteKind> {
        let Some(path) = &self.file else {
            return Ok(self.suite.unwrap_or(SuiteKind::Perf));
        };
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading suite file {}", path.display()))?;
        let declared = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("suite").and_then(|v| v.as_str().map(String::from)));
        let from_file = match declared.as_deref() {
            Some("mem") => SuiteKind::Mem,
            Some("sync") => SuiteKind::Sync,
            _ => SuiteKind::Perf, // the perf parser reports anything else by field
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

    /// The suite file's `[hosts]` table, if it has one, with the file's path (its `file`
    /// is relative to the suite file's directory). The table's shape was checked by the
    /// suite's own parser; this reads it for the hosts choice.
    pub fn hosts(&self) -> anyhow::Result<Option<(SuiteHosts, PathBuf)>> {
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading suite file {}", path.display()))?;
        let table = toml::from_str::<toml::Table>(&text)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        let Some(hosts) = table.get("hosts") else {
            return Ok(None);
        };
        let hosts = SuiteHosts::deserialize(hosts.clone())
            .map_err(|e| UsageError(format!("{}: [hosts]: {e}", path.display())))?;
        Ok(Some((hosts, path.clone())))
    }

    /// The given suite file's text or the built-in one's, and how errors name it.
    fn text(&self, default: &str, quick: &str, what: &str) -> anyhow::Result<(String, String)> {
        Ok(match (&self.file, self.quick) {
            (Some(path), _) => (
                fs::read_to_string(path)
                    .with_context(|| format!("reading suite file {}", path.display()))?,
                path.display().to_string(),
            ),
            (None, true) => (quick.to_string(), format!("built-in quick {what}")),
            (None, false) => (default.to_string(), format!("built-in default {what}")),
        })
    }

    /// The perf spec: the suite, `--engine`, and `--server-config` (`io-threads=N`
    /// replaces the matrix's list; the settings the suite fixes are refused).
    fn perf(&self) -> anyhow::Result<PerfSpec> {
        let (text, origin) = self.text(perf::DEFAULT_PERF, perf::QUICK_PERF, "suite")?;
        let mut spec =
            PerfSpec::from_toml(&text).map_err(|e| UsageError(format!("{origin}: {e}")))?;
        if let Some(name) = &self.engine {
            spec.engine = EngineKind::parse(name).ok_or_else(|| {
                UsageError(format!("--engine {name}: use native or valkey-benchmark"))
            })?;
        }
        if let Some(t) = self.topology {
            spec.topology = t;
        }
        spec.tls = self.tls;
        let (placement, warnings) = super::placement(&spec.placement, &self.placement)?;
        if placement.client_cpus.is_some() && spec.engine == EngineKind::ValkeyBenchmark {
            return Err(UsageError(
                "--client-cpus pins the native generator's threads; valkey-benchmark is not \
                 pinned: drop --client-cpus or use --engine native"
                    .into(),
            )
            .into());
        }
        for w in warnings {
            eprintln!("warning: {w}");
        }
        spec.placement = placement;
        self.matrix.apply(&mut spec);
        spec.check_size()
            .map_err(|e| UsageError(format!("{origin} with the flags: {e}")))?;
        let mut extra = self.server_config.clone();
        if let (Some(threads), Some(_)) = (extra.get("io-threads"), &self.matrix.io_threads) {
            return Err(UsageError(format!(
                "--server-config io-threads={threads} and --io-threads both set the servers' \
                 io-threads; keep one"
            ))
            .into());
        }
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
            if perf::PERF_RESERVED.contains(&key.as_str()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(e: anyhow::Error) -> String {
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
        e.to_string()
    }

    #[test]
    fn the_suite_comes_from_the_flag_then_the_file_then_perf() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.toml");
        fs::write(&file, mem::QUICK_MEM).unwrap();
        let quick = SuiteChoice {
            quick: true,
            ..Default::default()
        };
        assert!(matches!(quick.plan().unwrap(), Plan::Perf(_)));
        let from_file = SuiteChoice {
            file: Some(file.clone()),
            ..Default::default()
        };
        assert!(matches!(from_file.plan().unwrap(), Plan::Mem(_)));
        let clash = SuiteChoice {
            suite: Some(SuiteKind::Sync),
            file: Some(file),
            ..Default::default()
        };
        let e = usage(clash.plan().unwrap_err());
        assert!(
            e.contains("--suite Sync") && e.contains("suite = \"mem\""),
            "{e}"
        );
    }

    #[test]
    fn server_config_reaches_every_case_or_is_refused() {
        let with = |pairs: &[(&str, &str)], suite| SuiteChoice {
            suite: Some(suite),
            quick: true,
            server_config: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let Plan::Perf(spec) = with(&[("io-threads", "2"), ("hz", "50")], SuiteKind::Perf)
            .plan()
            .unwrap()
        else {
            panic!("perf")
        };
        assert_eq!(spec.io_threads, [2]);
        assert_eq!(spec.server_config["hz"], "50");
        let e = usage(
            with(&[("save", "60 1")], SuiteKind::Perf)
                .plan()
                .unwrap_err(),
        );
        assert!(e.contains("the harness sets `save`"), "{e}");
        let e = usage(
            with(&[("io-threads", "0")], SuiteKind::Perf)
                .plan()
                .unwrap_err(),
        );
        assert!(e.contains("1 to 128"), "{e}");
        let Plan::Sync(cases) = with(&[("hz", "50")], SuiteKind::Sync).plan().unwrap() else {
            panic!("sync")
        };
        assert!(cases.iter().all(|c| c.server_config["hz"] == "50"));
    }
}
