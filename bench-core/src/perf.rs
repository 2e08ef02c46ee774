//! Suite definitions: the file format, its validation, and expansion into cases.
//!
//! A suite file is TOML. Unknown fields are rejected, and every invalid value gets an error
//! that names the field, the value and the fix. The built-in suites are files too
//! (`bench-core/suites/*.toml`), embedded at compile time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::placement::{CpuList, Placement};
use crate::topology::TopologySpec;
use crate::transport::TlsMode;
use serde::{Deserialize, Serialize};

use crate::command::Command;

/// The default suite of `cargo xtask bench`.
pub const DEFAULT_PERF: &str = include_str!("../suites/perf-default.toml");
/// The suite of `cargo xtask bench --quick`.
pub const QUICK_PERF: &str = include_str!("../suites/perf-quick.toml");

/// Settings the perf suite fixes as measurement conditions (no persistence, I/O threads
/// from the matrix), besides the ones no suite may set (`server_config::RESERVED`).
pub const PERF_RESERVED: [&str; 7] = [
    "save",
    "appendonly",
    "io-threads",
    "server-cpulist",
    "bio-cpulist",
    "aof-rewrite-cpulist",
    "bgsave-cpulist",
];

/// The perf suite file, as written. See `perf-default.toml` for an example.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerfSpecFile {
    /// Which suite this file defines. Only `"perf"` exists so far.
    pub suite: String,
    /// The load generator: `"native"` (default) or `"valkey-benchmark"`.
    #[serde(default = "default_engine")]
    pub engine: String,
    /// Commands to measure, case-insensitive (`"GET"`, `"set"`, ...).
    pub commands: Vec<String>,
    /// Value sizes in bytes, for commands that carry a value.
    pub value_sizes: Vec<u64>,
    /// Pipeline depths: requests each connection has in flight.
    pub pipelines: Vec<u32>,
    /// Client connections.
    pub clients: Vec<u32>,
    /// The server's `io-threads` (1 means the main thread only). Default `[1]`.
    #[serde(default = "default_io_threads")]
    pub io_threads: Vec<u32>,
    /// Working sets: distinct keys the load draws from uniformly (valkey-benchmark `-r`).
    /// Commands on string keys (SET, GET, INCR, MSET) run once per keyspace, every key
    /// written before the run; SADD, HSET and ZADD draw members of their one collection
    /// from the first.
    #[serde(default)]
    pub keyspaces: Vec<u64>,
    /// The old single-keyspace field, refused with its replacement.
    #[serde(default)]
    pub keyspace: Option<u64>,
    /// Measured repetitions per case, each on a fresh server.
    pub repetitions: u32,
    /// Load run before each measured repetition and discarded, in seconds.
    pub warmup_seconds: f64,
    /// Target length of each measured repetition, in seconds.
    pub measure_seconds: f64,
    /// valkey-benchmark `--threads`. Default 1.
    #[serde(default = "default_client_threads")]
    pub client_threads: u32,
    /// Extra server configuration (`"maxmemory-policy" = "allkeys-lru"`).
    #[serde(default)]
    pub server_config: BTreeMap<String, String>,
    /// How each case's servers are arranged: `"standalone"` (default), `"replicas:N"`,
    /// `"cluster:SxR"`. `--topology` replaces it.
    #[serde(default)]
    pub topology: Option<String>,
    /// CPUs the server runs on (`"0"`, `"0-1"`); `--server-cpus` replaces it.
    #[serde(default)]
    pub server_cpus: Option<String>,
    /// CPUs the load generator's threads run on; `--client-cpus` replaces it.
    #[serde(default)]
    pub client_cpus: Option<String>,
    /// Where the servers and the load run: `[hosts]` (see `SuiteHosts`).
    #[serde(default)]
    pub hosts: Option<crate::placement::SuiteHosts>,
}

fn default_engine() -> String {
    "native".to_string()
}
fn default_io_threads() -> Vec<u32> {
    vec![1]
}
fn default_client_threads() -> u32 {
    1
}

/// A validated perf suite.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerfSpec {
    pub engine: EngineKind,
    pub commands: Vec<Command>,
    pub value_sizes: Vec<u64>,
    pub pipelines: Vec<u32>,
    pub clients: Vec<u32>,
    pub io_threads: Vec<u32>,
    pub keyspaces: Vec<u64>,
    pub repetitions: u32,
    pub warmup_seconds: f64,
    pub measure_seconds: f64,
    pub client_threads: u32,
    pub server_config: BTreeMap<String, String>,
    pub topology: TopologySpec,
    pub placement: Placement,
    /// TLS only (`--tls`; not a suite file field: it needs a TLS build).
    pub tls: Option<TlsMode>,
}

/// Lists that replace a perf suite's own (`--commands`, `--value-sizes`, `--pipelines`,
/// `--clients`, `--io-threads`); each already checked against the suite file's limits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matrix {
    pub commands: Option<Vec<Command>>,
    pub value_sizes: Option<Vec<u64>>,
    pub pipelines: Option<Vec<u32>>,
    pub clients: Option<Vec<u32>>,
    pub io_threads: Option<Vec<u32>>,
    pub keyspaces: Option<Vec<u64>>,
}

impl Matrix {
    /// The flags given, by name (for "applies to the perf suite only" errors).
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--commands", self.commands.is_some()),
            ("--value-sizes", self.value_sizes.is_some()),
            ("--pipelines", self.pipelines.is_some()),
            ("--clients", self.clients.is_some()),
            ("--io-threads", self.io_threads.is_some()),
            ("--keyspaces", self.keyspaces.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }

    /// The spec with these lists in place of its own.
    pub fn apply(&self, spec: &mut PerfSpec) {
        if let Some(v) = &self.commands {
            spec.commands = v.clone();
        }
        if let Some(v) = &self.value_sizes {
            spec.value_sizes = v.clone();
        }
        if let Some(v) = &self.pipelines {
            spec.pipelines = v.clone();
        }
        if let Some(v) = &self.clients {
            spec.clients = v.clone();
        }
        if let Some(v) = &self.io_threads {
            spec.io_threads = v.clone();
        }
        if let Some(v) = &self.keyspaces {
            spec.keyspaces = v.clone();
        }
    }
}

/// The limits a suite file's lists are checked against, for flags that replace them:
/// (smallest, largest).
pub const VALUE_SIZE_LIMITS: (u64, u64) = (1, 1 << 20);
pub const PIPELINE_LIMITS: (u64, u64) = (1, 10_000);
pub const CLIENT_LIMITS: (u64, u64) = (1, 10_000);
pub const IO_THREAD_LIMITS: (u64, u64) = (1, 128);
pub const KEYSPACE_LIMITS: (u64, u64) = (1, 100_000_000);
/// The most cases one perf matrix may expand to: each list is capped, but their product is
/// what a run (or a queued task) would hold in memory and run.
pub const MAX_CASES: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    Native,
    ValkeyBenchmark,
}

impl EngineKind {
    pub fn parse(name: &str) -> Option<EngineKind> {
        match name {
            "native" => Some(EngineKind::Native),
            "valkey-benchmark" => Some(EngineKind::ValkeyBenchmark),
            _ => None,
        }
    }
}

/// One cell of the matrix: every knob fixed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerfCase {
    /// Stable name, e.g. `GET/32B/P16/c50/io1/100k-keys`.
    pub name: String,
    pub command: Command,
    /// `None` for commands that carry no value.
    pub value_size: Option<u64>,
    pub pipeline: u32,
    pub clients: u32,
    pub io_threads: u32,
    pub keyspace: u64,
    pub repetitions: u32,
    pub warmup_seconds: f64,
    pub measure_seconds: f64,
    pub client_threads: u32,
    /// Extra server configuration, `io-threads` included when above 1.
    pub server_config: BTreeMap<String, String>,
    /// Where the case runs; outside standalone its name ends with it (`/cluster:3x1`).
    pub topology: TopologySpec,
    /// The CPUs server and client are pinned to, if any.
    pub placement: Placement,
    /// TLS only; the name then ends with `/tls` (or `/tls-auth`).
    pub tls: Option<TlsMode>,
}

/// An invalid suite: which field, which value, and how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    pub field: String,
    pub value: String,
    pub fix: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "suite field `{}`: invalid value {}; {}",
            self.field, self.value, self.fix
        )
    }
}

impl std::error::Error for SpecError {}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid suite file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Spec(#[from] SpecError),
}

impl PerfSpec {
    /// Parses and validates a suite file's text.
    pub fn from_toml(text: &str) -> Result<PerfSpec, LoadError> {
        let file: PerfSpecFile = toml::from_str(text)?;
        Ok(file.validate()?)
    }

    /// How many cases [`expand`](Self::expand) makes, counted without making them.
    pub fn case_count(&self) -> u64 {
        let product = |lists: &[usize]| lists.iter().map(|&n| n as u64).product::<u64>();
        let rest = product(&[
            self.pipelines.len(),
            self.clients.len(),
            self.io_threads.len(),
        ]);
        self.commands
            .iter()
            .map(|c| {
                let sizes = if c.uses_value_size() {
                    self.value_sizes.len()
                } else {
                    1
                };
                let keyspaces = if c.keys_from_keyspace() {
                    self.keyspaces.len()
                } else {
                    1
                };
                product(&[sizes, keyspaces]).saturating_mul(rest)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Refuses a matrix of more than [`MAX_CASES`] cases, naming its lists' lengths.
    pub fn check_size(&self) -> Result<(), SpecError> {
        let n = self.case_count();
        if n <= MAX_CASES {
            return Ok(());
        }
        Err(error(
            "matrix",
            format!("{n} cases"),
            &format!(
                "a matrix may hold at most {MAX_CASES} cases; its lists have {} commands, {} \
                 value sizes, {} keyspaces, {} pipelines, {} client counts, {} io-threads: \
                 shorten some, or split the campaign",
                self.commands.len(),
                self.value_sizes.len(),
                self.keyspaces.len(),
                self.pipelines.len(),
                self.clients.len(),
                self.io_threads.len()
            ),
        ))
    }

    /// Every case of the matrix, in a stable order. Commands that carry no value are not
    /// multiplied by value sizes; only commands on string keys are multiplied by keyspaces
    /// (the others take the first). A command that uses the keyspace names it
    /// (`GET/32B/P16/c50/io1/1M-keys`).
    pub fn expand(&self) -> Vec<PerfCase> {
        let mut cases = Vec::new();
        for &command in &self.commands {
            let sizes: Vec<Option<u64>> = if command.uses_value_size() {
                self.value_sizes.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            let keyspaces = if command.keys_from_keyspace() {
                &self.keyspaces[..]
            } else {
                &self.keyspaces[..1]
            };
            for &value_size in &sizes {
                for &keyspace in keyspaces {
                    for &pipeline in &self.pipelines {
                        for &clients in &self.clients {
                            for &io_threads in &self.io_threads {
                                cases.push(self.case(
                                    command, value_size, keyspace, pipeline, clients, io_threads,
                                ));
                            }
                        }
                    }
                }
            }
        }
        cases
    }

    fn case(
        &self,
        command: Command,
        value_size: Option<u64>,
        keyspace: u64,
        pipeline: u32,
        clients: u32,
        io_threads: u32,
    ) -> PerfCase {
        let size = value_size.map(|s| format!("/{s}B")).unwrap_or_default();
        let keys = match command.uses_keyspace() {
            true => format!("/{}-keys", short_count(keyspace)),
            false => String::new(),
        };
        let mut server_config = self.server_config.clone();
        if io_threads > 1 {
            server_config.insert("io-threads".into(), io_threads.to_string());
        }
        let mut place = match self.topology {
            TopologySpec::Standalone => String::new(),
            t => format!("/{t}"),
        };
        place.push_str(self.tls.map_or("", TlsMode::suffix));
        PerfCase {
            name: format!("{command}{size}/P{pipeline}/c{clients}/io{io_threads}{keys}{place}"),
            topology: self.topology,
            placement: self.placement.clone(),
            tls: self.tls,
            command,
            value_size,
            pipeline,
            clients,
            io_threads,
            keyspace,
            repetitions: self.repetitions,
            warmup_seconds: self.warmup_seconds,
            measure_seconds: self.measure_seconds,
            client_threads: self.client_threads,
            server_config,
        }
    }
}

/// A count as a case name writes it: `1M`, `100k`, or the digits when neither divides it.
pub fn short_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

impl PerfSpecFile {
    pub fn validate(self) -> Result<PerfSpec, SpecError> {
        if self.suite != "perf" {
            return Err(error(
                "suite",
                format!("{:?}", self.suite),
                "only \"perf\" suite files exist so far",
            ));
        }
        let engine = EngineKind::parse(&self.engine).ok_or_else(|| {
            error(
                "engine",
                format!("{:?}", self.engine),
                "use \"native\" or \"valkey-benchmark\"",
            )
        })?;
        non_empty("commands", &self.commands)?;
        let mut commands = Vec::new();
        for name in &self.commands {
            let command = name
                .parse::<Command>()
                .map_err(|why| error("commands", format!("{name:?}"), &why))?;
            commands.push(command);
        }
        distinct("commands", &commands)?;
        let limit = |(low, high): (u64, u64)| (low as u32, high as u32);
        let (low, high) = VALUE_SIZE_LIMITS;
        list_in_range("value_sizes", &self.value_sizes, low, high, "bytes")?;
        let (low, high) = limit(PIPELINE_LIMITS);
        list_in_range(
            "pipelines",
            &self.pipelines,
            low,
            high,
            "requests in flight",
        )?;
        let (low, high) = limit(CLIENT_LIMITS);
        list_in_range("clients", &self.clients, low, high, "connections")?;
        let (low, high) = limit(IO_THREAD_LIMITS);
        list_in_range("io_threads", &self.io_threads, low, high, "threads")?;
        if let Some(n) = self.keyspace {
            return Err(error(
                "keyspace",
                n.to_string(),
                &format!("the field is now a list of working sets: write `keyspaces = [{n}]`"),
            ));
        }
        let (low, high) = KEYSPACE_LIMITS;
        list_in_range("keyspaces", &self.keyspaces, low, high, "keys")?;
        in_range("repetitions", self.repetitions, 1, 1000, "repetitions")?;
        in_range("client_threads", self.client_threads, 1, 64, "threads")?;
        seconds_in_range("warmup_seconds", self.warmup_seconds, 0.0, 600.0)?;
        seconds_in_range("measure_seconds", self.measure_seconds, 0.05, 3600.0)?;
        for (key, value) in &self.server_config {
            let field = format!("server_config.{key}");
            crate::server_config::check(key, value)
                .map_err(|why| error(&field, format!("{value:?}"), &why))?;
            if PERF_RESERVED.contains(&key.as_str()) {
                return Err(error(
                    &field,
                    format!("{value:?}"),
                    "the perf suite sets this one itself (io-threads: use the `io_threads` field)",
                ));
            }
        }
        let topology = match &self.topology {
            None => TopologySpec::Standalone,
            Some(t) => t
                .parse()
                .map_err(|why: String| error("topology", format!("{t:?}"), &why))?,
        };
        let cpus = |field: &str, v: &Option<String>| {
            v.as_ref()
                .map(|t| {
                    CpuList::parse(t, field).map_err(|why| error(field, format!("{t:?}"), &why))
                })
                .transpose()
        };
        let placement = Placement {
            server_cpus: cpus("server_cpus", &self.server_cpus)?,
            client_cpus: cpus("client_cpus", &self.client_cpus)?,
        };
        let spec = PerfSpec {
            placement,
            topology,
            tls: None,
            engine,
            commands,
            value_sizes: self.value_sizes,
            pipelines: self.pipelines,
            clients: self.clients,
            io_threads: self.io_threads,
            keyspaces: self.keyspaces,
            repetitions: self.repetitions,
            warmup_seconds: self.warmup_seconds,
            measure_seconds: self.measure_seconds,
            client_threads: self.client_threads,
            server_config: self.server_config,
        };
        spec.check_size()?;
        Ok(spec)
    }
}

fn error(field: &str, value: String, fix: &str) -> SpecError {
    SpecError {
        field: field.to_string(),
        value,
        fix: fix.to_string(),
    }
}

fn non_empty<T>(field: &str, list: &[T]) -> Result<(), SpecError> {
    if list.is_empty() {
        return Err(error(field, "[]".into(), "give at least one value"));
    }
    Ok(())
}

fn distinct<T: Ord + fmt::Debug>(field: &str, list: &[T]) -> Result<(), SpecError> {
    let mut seen = BTreeSet::new();
    for item in list {
        if !seen.insert(item) {
            return Err(error(field, format!("{item:?}"), "list each value once"));
        }
    }
    Ok(())
}

fn in_range<T>(field: &str, value: T, min: T, max: T, unit: &str) -> Result<(), SpecError>
where
    T: PartialOrd + fmt::Display + Copy,
{
    if value < min || value > max {
        return Err(error(
            field,
            value.to_string(),
            &format!("use a whole number from {min} to {max} ({unit})"),
        ));
    }
    Ok(())
}

fn list_in_range<T>(field: &str, list: &[T], min: T, max: T, unit: &str) -> Result<(), SpecError>
where
    T: PartialOrd + Ord + fmt::Display + fmt::Debug + Copy,
{
    non_empty(field, list)?;
    for &value in list {
        in_range(field, value, min, max, unit)?;
    }
    distinct(field, list)
}

fn seconds_in_range(field: &str, value: f64, min: f64, max: f64) -> Result<(), SpecError> {
    if !(value.is_finite() && value >= min && value <= max) {
        return Err(error(
            field,
            value.to_string(),
            &format!("use a number of seconds from {min} to {max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(replace: &str, with: &str) -> Result<PerfSpec, LoadError> {
        let line = DEFAULT_PERF
            .lines()
            .find(|l| l.starts_with(replace))
            .unwrap_or_else(|| panic!("no line starts with {replace}"));
        PerfSpec::from_toml(&DEFAULT_PERF.replace(line, with))
    }

    fn check_error(replace: &str, with: &str, field: &str, value: &str) {
        match spec_with(replace, with) {
            Err(LoadError::Spec(e)) => {
                assert_eq!(e.field, field);
                assert_eq!(e.value, value);
                let text = e.to_string();
                assert!(text.contains(field) && text.contains(value), "{text}");
            }
            other => panic!("expected a spec error for {field}, got {other:?}"),
        }
    }

    #[test]
    fn built_in_suites_parse() {
        let default = PerfSpec::from_toml(DEFAULT_PERF).unwrap();
        let quick = PerfSpec::from_toml(QUICK_PERF).unwrap();
        assert_eq!(default.commands.len(), 10);
        assert!(quick.repetitions <= default.repetitions);
    }

    #[test]
    fn expansion_multiplies_only_value_carrying_commands_by_size() {
        let spec = spec_with("commands", "commands = [\"PING\", \"GET\"]").unwrap();
        let spec = PerfSpec {
            keyspaces: vec![100_000],
            ..spec
        };
        let cases = spec.expand();
        // PING: 1 size-less variant; GET: 2 sizes; each × 2 pipelines × 1 client count.
        assert_eq!(cases.len(), (1 + 2) * 2);
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "PING/P1/c50/io1",
                "PING/P16/c50/io1",
                "GET/32B/P1/c50/io1/100k-keys",
                "GET/32B/P16/c50/io1/100k-keys",
                "GET/1024B/P1/c50/io1/100k-keys",
                "GET/1024B/P16/c50/io1/100k-keys",
            ]
        );
        assert_eq!(cases[0].value_size, None);
        assert_eq!(cases[5].value_size, Some(1024));
    }

    #[test]
    fn only_commands_on_string_keys_run_once_per_keyspace() {
        let spec = spec_with("commands", "commands = [\"GET\", \"SADD\", \"LPUSH\"]").unwrap();
        let spec = PerfSpec {
            keyspaces: vec![1000, 2_000_000],
            value_sizes: vec![32],
            pipelines: vec![1],
            ..spec
        };
        let names: Vec<_> = spec
            .expand()
            .into_iter()
            .map(|c| (c.name, c.keyspace))
            .collect();
        let expected = [
            ("GET/32B/P1/c50/io1/1k-keys", 1000),
            ("GET/32B/P1/c50/io1/2M-keys", 2_000_000),
            // SADD draws its members from the first keyspace, and says so; LPUSH ignores it.
            ("SADD/P1/c50/io1/1k-keys", 1000),
            ("LPUSH/32B/P1/c50/io1", 1000),
        ];
        let expected: Vec<_> = expected.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        assert_eq!(names, expected);
        assert_eq!(short_count(1_500_000), "1500k");
        assert_eq!(short_count(12_345), "12345");
    }

    #[test]
    fn the_default_suite_has_a_working_set_beyond_the_last_level_cache() {
        let spec = PerfSpec::from_toml(DEFAULT_PERF).unwrap();
        assert_eq!(spec.keyspaces, [100_000, 1_000_000]);
        let big: Vec<_> = spec
            .expand()
            .into_iter()
            .filter(|c| c.keyspace == 1_000_000)
            .collect();
        assert!(
            big.iter()
                .all(|c| c.command.keys_from_keyspace() && c.name.ends_with("/1M-keys"))
        );
        assert_eq!(
            big.len(),
            (2 + 2 + 1 + 2) * 2,
            "SET, GET, INCR, MSET × sizes × pipelines"
        );
    }

    /// Each list is capped, and so is their product: 1000 sizes × 1000 pipelines would be
    /// a million cases held in memory.
    #[test]
    fn a_matrix_is_capped_in_cases_not_only_in_each_list() {
        let default = PerfSpec::from_toml(DEFAULT_PERF).unwrap();
        assert_eq!(default.case_count(), default.expand().len() as u64);
        let sizes: Vec<String> = (1..=1000).map(|n| n.to_string()).collect();
        let pipelines = format!("pipelines = [{}]", sizes.join(", "));
        let text = DEFAULT_PERF
            .replace(
                "value_sizes = [32, 1024]",
                &format!("value_sizes = [{}]", sizes.join(", ")),
            )
            .replace("pipelines = [1, 16]", &pipelines);
        match PerfSpec::from_toml(&text) {
            Err(LoadError::Spec(e)) => {
                assert_eq!(e.field, "matrix");
                assert!(e.fix.contains("1000 value sizes"), "{e}");
            }
            other => panic!("a 6-million-case matrix was accepted: {other:?}"),
        }
        let mut wide = default.clone();
        wide.pipelines = (1..=1000).collect();
        assert!(wide.check_size().is_err());
    }

    #[test]
    fn io_threads_become_server_config() {
        let spec = spec_with("io_threads", "io_threads = [1, 4]").unwrap();
        let cases = spec.expand();
        let four: Vec<_> = cases.iter().filter(|c| c.io_threads == 4).collect();
        assert!(!four.is_empty());
        assert!(four.iter().all(|c| c.server_config["io-threads"] == "4"));
        assert!(
            cases
                .iter()
                .filter(|c| c.io_threads == 1)
                .all(|c| c.server_config.is_empty())
        );
    }

    #[test]
    fn invalid_values_name_field_and_value() {
        check_error("pipelines", "pipelines = [1, 0]", "pipelines", "0");
        check_error("clients", "clients = []", "clients", "[]");
        check_error("commands", "commands = [\"GTE\"]", "commands", "\"GTE\"");
        check_error(
            "commands",
            "commands = [\"GET\", \"get\"]",
            "commands",
            "Get",
        );
        check_error("keyspaces", "keyspaces = [0]", "keyspaces", "0");
        check_error("keyspaces", "keyspace = 5000", "keyspace", "5000");
        check_error(
            "measure_seconds",
            "measure_seconds = -1.0",
            "measure_seconds",
            "-1",
        );
        check_error("engine", "engine = \"memtier\"", "engine", "\"memtier\"");
        check_error(
            "measure_seconds",
            "measure_seconds = 1.0\n[server_config]\nport = \"1\"",
            "server_config.port",
            "\"1\"",
        );
    }

    #[test]
    fn unknown_and_mistyped_fields_are_rejected_by_name() {
        let err = spec_with("pipelines", "pipline = [1]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pipline"), "{err}");
        let err = spec_with("keyspaces", "keyspaces = \"many\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keyspaces"), "{err}");
    }
}
