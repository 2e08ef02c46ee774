//! The full-sync replication suite's domain: the suite file and its cases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The default sync suite.
pub const DEFAULT_SYNC: &str = include_str!("../suites/sync-default.toml");
/// The quick sync suite.
pub const QUICK_SYNC: &str = include_str!("../suites/sync-quick.toml");

/// The sync suite file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSpecFile {
    /// `"sync"`.
    pub suite: String,
    /// Data written to the primary before the sync, in MiB (keys × value size).
    pub data_mb: Vec<u64>,
    /// Value size in bytes.
    pub value_size: u64,
    /// Replicas syncing at once.
    pub replicas: Vec<u32>,
    /// The primary's `repl-diskless-sync`: false sends an RDB file written to disk.
    pub diskless_sync: Vec<bool>,
    /// The replicas' `repl-diskless-load`: `disabled`, `swapdb` or `on-empty-db`.
    #[serde(default = "default_load")]
    pub diskless_load: Vec<String>,
    /// With a write load (the native generator, SET) on the primary during the sync.
    #[serde(default = "no")]
    pub write_load: Vec<bool>,
    /// A sync that has not finished by then fails the run.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Extra configuration for every instance.
    #[serde(default)]
    pub server_config: BTreeMap<String, String>,
    /// Where the servers run: `[hosts]` (see `SuiteHosts`).
    #[serde(default)]
    pub hosts: Option<crate::placement::SuiteHosts>,
}

fn default_load() -> Vec<String> {
    vec!["disabled".into()]
}
fn no() -> Vec<bool> {
    vec![false]
}
fn default_timeout() -> u64 {
    120
}

/// One case.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyncCase {
    /// Stable name, e.g. `64MiB/r2/diskless/load-swapdb/writes`.
    pub name: String,
    pub keys: u64,
    pub value_size: u64,
    pub replicas: u32,
    pub diskless_sync: bool,
    pub diskless_load: String,
    pub write_load: bool,
    pub timeout_seconds: u64,
    pub server_config: BTreeMap<String, String>,
}

impl SyncCase {
    pub fn data_bytes(&self) -> u64 {
        self.keys * self.value_size
    }
}

impl SyncSpecFile {
    pub fn parse(text: &str) -> Result<Vec<SyncCase>, String> {
        let file: SyncSpecFile =
            toml::from_str(text).map_err(|e| format!("not a valid sync suite file: {e}"))?;
        file.expand()
    }

    pub fn expand(&self) -> Result<Vec<SyncCase>, String> {
        let err = |field: &str, value: String, fix: &str| {
            Err(format!(
                "suite field `{field}`: invalid value {value}; {fix}"
            ))
        };
        for (key, value) in &self.server_config {
            if let Err(why) = crate::server_config::check(key, value) {
                return err(&format!("server_config.{key}"), format!("{value:?}"), &why);
            }
        }
        if self.suite != "sync" {
            return err(
                "suite",
                format!("{:?}", self.suite),
                "a sync suite file says suite = \"sync\"",
            );
        }
        if self.data_mb.is_empty() || self.data_mb.iter().any(|&m| m == 0 || m > 65_536) {
            return err(
                "data_mb",
                format!("{:?}", self.data_mb),
                "give sizes from 1 to 65536 MiB",
            );
        }
        if !(1..=64 << 20).contains(&self.value_size) {
            return err(
                "value_size",
                self.value_size.to_string(),
                "use 1 byte to 64 MiB",
            );
        }
        if self.replicas.is_empty() || self.replicas.iter().any(|&r| r == 0 || r > 16) {
            return err(
                "replicas",
                format!("{:?}", self.replicas),
                "give counts from 1 to 16",
            );
        }
        if self.diskless_sync.is_empty() {
            return err("diskless_sync", "[]".into(), "give [false], [true] or both");
        }
        let loads = ["disabled", "swapdb", "on-empty-db"];
        if self.diskless_load.is_empty()
            || self
                .diskless_load
                .iter()
                .any(|l| !loads.contains(&l.as_str()))
        {
            return err(
                "diskless_load",
                format!("{:?}", self.diskless_load),
                "use disabled, swapdb or on-empty-db",
            );
        }
        if self.write_load.is_empty() {
            return err("write_load", "[]".into(), "give [false], [true] or both");
        }
        if !(1..=3600).contains(&self.timeout_seconds) {
            return err(
                "timeout_seconds",
                self.timeout_seconds.to_string(),
                "use 1 to 3600 seconds",
            );
        }
        let mut cases = Vec::new();
        for &mb in &self.data_mb {
            let keys = (mb << 20).div_ceil(self.value_size);
            for &replicas in &self.replicas {
                for &diskless_sync in &self.diskless_sync {
                    for load in &self.diskless_load {
                        for &write_load in &self.write_load {
                            let mode = if diskless_sync { "diskless" } else { "disk" };
                            let writes = if write_load { "/writes" } else { "" };
                            cases.push(SyncCase {
                                name: format!("{mb}MiB/r{replicas}/{mode}/load-{load}{writes}"),
                                keys,
                                value_size: self.value_size,
                                replicas,
                                diskless_sync,
                                diskless_load: load.clone(),
                                write_load,
                                timeout_seconds: self.timeout_seconds,
                                server_config: self.server_config.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(cases)
    }
}

/// Whether a replica's INFO replication says the full sync is done: link up and no sync
/// in progress.
pub fn sync_done(info: &crate::info::Info) -> bool {
    info.get("master_link_status") == Some("up") && info.get("master_sync_in_progress") == Some("0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::Info;

    #[test]
    fn suites_expand_into_named_cases() {
        let cases = SyncSpecFile::parse(DEFAULT_SYNC).unwrap();
        assert_eq!(cases.len(), 2 * 2 * 2 * 2 * 2);
        let c = cases
            .iter()
            .find(|c| c.name == "64MiB/r2/diskless/load-swapdb/writes")
            .unwrap();
        assert_eq!(c.keys, 65_536);
        assert_eq!(c.data_bytes(), 64 << 20);
        assert_eq!(SyncSpecFile::parse(QUICK_SYNC).unwrap().len(), 4);
    }

    #[test]
    fn invalid_fields_are_named() {
        let check = |from: &str, to: &str, field: &str| {
            let err = SyncSpecFile::parse(&DEFAULT_SYNC.replace(from, to)).unwrap_err();
            assert!(err.contains(field), "{field}: {err}");
        };
        check("replicas = [1, 2]", "replicas = [0]", "`replicas`");
        check("\"swapdb\"]", "\"fast\"]", "`diskless_load`");
        check("data_mb = [64, 256]", "data_mb = []", "`data_mb`");
        check(
            "timeout_seconds = 120",
            "timeout_seconds = 0",
            "`timeout_seconds`",
        );
        check("write_load", "write_lod", "write_lod");
    }

    #[test]
    fn sync_is_done_only_with_the_link_up_and_nothing_in_progress() {
        let info = |link: &str, progress: &str| {
            Info::parse(&format!(
                "# Replication\r\nrole:slave\r\nmaster_link_status:{link}\r\nmaster_sync_in_progress:{progress}\r\n"
            ))
        };
        assert!(sync_done(&info("up", "0")));
        assert!(!sync_done(&info("down", "1")));
        assert!(!sync_done(&info("up", "1")));
        assert!(!sync_done(&Info::parse("# Replication\r\nrole:master\r\n")));
    }
}
