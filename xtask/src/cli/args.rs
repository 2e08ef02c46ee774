//! The flag groups several subcommands share: which Valkey to build, which workload to
//! run, which suite, a compare SPEC, and `--server-config`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bench_core::command::Command;
use bench_core::distribution::ValueSize;
use bench_core::perf::{self, Matrix};
use bench_core::placement::{CpuList, Placement};
use bench_core::ranges::{self, Unit};
use bench_core::result::{BuildOptions, Malloc};
use bench_core::shutdown::Shutdown;
use bench_core::topology::{ReadFrom, TopologySpec};
use bench_core::transport::TlsMode;
use bench_core::workload::{self, WorkloadSpec};
use clap::{Args, ValueEnum};

use crate::error::UsageError;
use crate::suites::SuiteKind;
use crate::valkey::{Binaries, BuildRequest, SourceRequest};

/// The longest duration a flag may ask for: 7 days. Far beyond any benchmark, and far
/// below where `Instant + Duration` overflows.
pub const MAX_SECONDS: f64 = 7.0 * 86_400.0;

/// Which Valkey to build and how. Shared by every subcommand that needs binaries.
#[derive(Args, Clone, Debug, Default)]
pub struct ValkeyArgs {
    /// A Valkey source tree to build instead of the pinned version.
    #[arg(long, env = "VALKEY_SRC", value_name = "DIR")]
    pub valkey_src: Option<PathBuf>,
    /// A Valkey release tarball to build (offline machines); its sha256 is the source id.
    #[arg(long, value_name = "FILE")]
    pub valkey_tarball: Option<PathBuf>,
    /// With a git source tree: build this commit (through a scratch git worktree).
    #[arg(long = "ref", value_name = "REV")]
    pub git_ref: Option<String>,
    /// A pinned version from valkey/source.toml (default: its `default`).
    #[arg(long, value_name = "VERSION")]
    pub valkey_version: Option<String>,
    /// Build with TLS support (BUILD_TLS=yes; needs libssl-dev) and start the servers with
    /// a TLS port only, certificates made for each deployment; every connection of ours
    /// speaks TLS.
    #[arg(long)]
    pub tls: bool,
    /// The allocator Valkey is built with.
    #[arg(long, value_enum, default_value_t = MallocArg::Jemalloc)]
    pub malloc: MallocArg,
    /// Extra C compiler flags, appended to Valkey's own.
    #[arg(long, default_value = "", value_name = "FLAGS")]
    pub cflags: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum MallocArg {
    #[default]
    Jemalloc,
    Libc,
}

impl ValkeyArgs {
    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            tls: self.tls,
            malloc: match self.malloc {
                MallocArg::Jemalloc => Malloc::Jemalloc,
                MallocArg::Libc => Malloc::Libc,
            },
            cflags: self.cflags.trim().to_string(),
        }
    }

    /// The build these flags ask for.
    pub fn request(&self) -> BuildRequest {
        BuildRequest {
            source: SourceRequest {
                valkey_src: self.valkey_src.clone(),
                valkey_tarball: self.valkey_tarball.clone(),
                git_ref: self.git_ref.clone(),
                valkey_version: self.valkey_version.clone(),
            },
            options: self.options(),
        }
    }

    /// Resolves the source and returns its binaries, building them if they are not cached.
    pub fn binaries(&self, shutdown: &Shutdown) -> anyhow::Result<Binaries> {
        self.request().binaries(shutdown)
    }
}

/// Parses repeated `--server-config name=value` flags.
pub fn parse_server_config(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut config = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!(UsageError(format!(
                "--server-config {pair:?}: expected name=value, e.g. io-threads=4"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if let Err(why) = bench_core::server_config::check(key, value) {
            bail!(UsageError(format!("--server-config {pair:?}: {why}")));
        }
        config.insert(key.to_string(), value.to_string());
    }
    Ok(config)
}

/// How a case's servers are arranged. Shared by bench, compare, flamegraph and start.
#[derive(Args, Clone, Debug, Default)]
pub struct TopologyArgs {
    /// standalone, replicas:N (a primary with N replicas, in sync before measuring; load on
    /// the primary) or cluster:SxR (S shards of a primary and R replicas, e.g. cluster:3x1).
    /// Replaces a suite file's `topology`.
    #[arg(long, value_name = "TOPOLOGY")]
    pub topology: Option<String>,
    /// On a cluster with replicas: `replicas` sends read-only commands to the slot's
    /// replicas (after READONLY), writes to the primaries. Default primaries.
    #[arg(long, value_name = "primaries|replicas")]
    pub read_from: Option<String>,
    /// With --tls: the servers require a client certificate (`tls-auth-clients yes`);
    /// ours present one signed by the run's CA.
    #[arg(long, requires = "tls")]
    pub tls_auth_clients: bool,
}

impl TopologyArgs {
    /// How the servers speak TLS, given whether `--tls` is set.
    pub fn tls(&self, tls: bool) -> Option<TlsMode> {
        tls.then_some(TlsMode {
            auth_clients: self.tls_auth_clients,
        })
    }

    /// `--topology`, checked.
    pub fn spec(&self) -> Result<Option<TopologySpec>, UsageError> {
        self.topology
            .as_deref()
            .map(|t| {
                t.parse()
                    .map_err(|why| UsageError(format!("--topology: {why}")))
            })
            .transpose()
    }

    /// `--read-from`, checked against the topology it applies to.
    pub fn read_from(&self, topology: TopologySpec) -> Result<ReadFrom, UsageError> {
        let Some(text) = &self.read_from else {
            return Ok(ReadFrom::Primaries);
        };
        let read_from: ReadFrom = text
            .parse()
            .map_err(|why| UsageError(format!("--read-from: {why}")))?;
        if read_from == ReadFrom::Replicas
            && !matches!(topology, TopologySpec::Cluster { replicas, .. } if replicas > 0)
        {
            return Err(UsageError(format!(
                "--read-from replicas needs a cluster with replicas, e.g. --topology cluster:3x1 \
                 (the topology is {topology})"
            )));
        }
        Ok(read_from)
    }
}

/// Which hosts the servers run on. Shared by the commands that start servers.
#[derive(Args, Clone, Debug, Default)]
pub struct HostsArgs {
    /// The hosts file (TOML: each host's name, address, ssh user, port, identity, work
    /// directory, roles); default $VALKEY_BENCH_HOSTS. See docs/hosts.md.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<std::path::PathBuf>,
    /// Run the servers on these hosts of the hosts file (`local` is this machine); a
    /// topology spreads over them, e.g. cluster:3x1 over three hosts puts each replica on
    /// another host than its primary. Default: this machine.
    #[arg(long, value_name = "A[,B,...]")]
    pub server_hosts: Option<String>,
    /// Run the native load generator on these hosts of the hosts file (`local` is this
    /// machine), the connections divided among them and their measurements merged into
    /// one (every percentile of all their requests). Needs --server-hosts. Perf suite only.
    #[arg(long, value_name = "X[,Y,...]", requires = "server_hosts")]
    pub client_hosts: Option<String>,
}

impl HostsArgs {
    /// The choice, with the environment's hosts file when no flag names one; checked.
    pub fn choice(&self) -> Result<crate::host::choice::HostsChoice, UsageError> {
        self.choice_with(None)
    }

    /// What a queued task runs with under these, a runner's flags: the runner's hosts
    /// file and placement, where the task's counts (`--server-hosts 2`: tasks ask for
    /// counts, never names) take the first hosts of the runner's lists, or any hosts of
    /// its file when the runner named none. `clients: false` for a command whose load runs
    /// on the runner's machine (flamegraph): the runner's client hosts are not given it.
    pub fn for_task(&self, task: &HostsArgs, clients: bool) -> Result<HostsArgs, UsageError> {
        let take = |asked: &Option<String>,
                    runner: &Option<String>,
                    flag: &str|
         -> Result<Option<String>, UsageError> {
            let Some(asked) = asked else {
                return Ok(runner.clone());
            };
            let count: usize = asked.trim().parse().map_err(|_| {
                UsageError(format!(
                    "{flag} {asked}: a task asks for a count of hosts, e.g. {flag} 2"
                ))
            })?;
            match runner.as_deref() {
                // No runner's placement: the task's count picks from the file.
                None => Ok(Some(count.to_string())),
                // A runner's count: at most that many.
                Some(list) if list.trim().parse::<usize>().is_ok() => {
                    let most: usize = list.trim().parse().unwrap_or(0);
                    if count > most {
                        return Err(UsageError(format!(
                            "{flag} {count}: this runner has {most} such host(s) ({flag} {most})"
                        )));
                    }
                    Ok(Some(count.to_string()))
                }
                Some(list) => {
                    let names: Vec<&str> = list.split(',').map(str::trim).collect();
                    if names.len() < count {
                        return Err(UsageError(format!(
                            "{flag} {count}: this runner has {} such host(s) ({list})",
                            names.len()
                        )));
                    }
                    Ok(Some(names[..count].join(",")))
                }
            }
        };
        Ok(HostsArgs {
            hosts: self.hosts.clone(),
            server_hosts: take(&task.server_hosts, &self.server_hosts, "--server-hosts")?,
            client_hosts: if clients {
                take(&task.client_hosts, &self.client_hosts, "--client-hosts")?
            } else {
                task.client_hosts.clone()
            },
        })
    }

    /// [`HostsArgs::choice`] over a suite file's `[hosts]` (the flags win, then the suite
    /// file, then the environment).
    pub fn choice_with(
        &self,
        suite: Option<&(bench_core::placement::SuiteHosts, std::path::PathBuf)>,
    ) -> Result<crate::host::choice::HostsChoice, UsageError> {
        let mut choice = crate::host::choice::HostsChoice {
            file: self.hosts.clone(),
            server_hosts: self.server_hosts.clone(),
            client_hosts: self.client_hosts.clone(),
            load_only: false,
        };
        if let Some((hosts, path)) = suite {
            choice = choice.with_suite(hosts, path)?;
        }
        let choice = choice.with_env();
        choice.check()?;
        Ok(choice)
    }
}

/// Which CPUs the server and the load generator run on. Shared by bench and compare.
#[derive(Args, Clone, Debug, Default)]
pub struct PlacementArgs {
    /// Pin each server (main, I/O and background threads) to these CPUs, e.g. 0 or 0-1
    /// (Valkey's server-cpulist, bio-cpulist, aof-rewrite-cpulist, bgsave-cpulist).
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<String>,
    /// Pin the native load generator's threads to these CPUs, e.g. 1.
    #[arg(long, value_name = "LIST")]
    pub client_cpus: Option<String>,
}

impl PlacementArgs {
    /// The lists given, parsed (each `None` when its flag is absent).
    pub fn parse(&self) -> Result<Placement, UsageError> {
        let list = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| CpuList::parse(t, flag).map_err(UsageError))
                .transpose()
        };
        Ok(Placement {
            server_cpus: list("--server-cpus", &self.server_cpus)?,
            client_cpus: list("--client-cpus", &self.client_cpus)?,
        })
    }
}

/// The perf matrix's lists, replacing the suite's own: `--value-sizes 16,64,1K`,
/// `--pipelines 1..64x2` (1, 2, 4, ... 64). Shared by bench and compare; `queue add`
/// makes one task per combination of them.
#[derive(Args, Clone, Debug, Default)]
pub struct MatrixArgs {
    /// Commands, comma-separated (GET,SET,...), replacing the suite's.
    #[arg(long, value_name = "LIST", value_parser = parse_commands)]
    pub commands: Option<Commands>,
    /// Value sizes in bytes: a list or ranges, binary units (16,64,1K; 1K..16Kx2).
    #[arg(long, value_name = "SIZES", value_parser = list_parser(Unit::Bytes, perf::VALUE_SIZE_LIMITS))]
    pub value_sizes: Option<Values>,
    /// Requests in flight per connection: a list or ranges (1,16; 1..64x2).
    #[arg(long, value_name = "LIST", value_parser = list_parser(Unit::Count, perf::PIPELINE_LIMITS))]
    pub pipelines: Option<Values>,
    /// Connections: a list or ranges (50; 10..100+30).
    #[arg(long, value_name = "LIST", value_parser = list_parser(Unit::Count, perf::CLIENT_LIMITS))]
    pub clients: Option<Values>,
    /// The servers' io-threads: a list or ranges (1,2,4).
    #[arg(long, value_name = "LIST", value_parser = list_parser(Unit::Count, perf::IO_THREAD_LIMITS))]
    pub io_threads: Option<Values>,
    /// Working sets, in keys: a list or ranges, K = 1000, M = 10⁶ (100K,1M). SET, GET,
    /// INCR and MSET run on each.
    #[arg(long, value_name = "LIST", value_parser = list_parser(Unit::Count, perf::KEYSPACE_LIMITS))]
    pub keyspaces: Option<Values>,
}

/// A parsed list of numbers (one clap value, not repeated flags).
#[derive(Clone, Debug, PartialEq)]
pub struct Values(pub Vec<u64>);

/// A parsed list of commands.
#[derive(Clone, Debug, PartialEq)]
pub struct Commands(pub Vec<Command>);

/// The flags `queue add` expands into one task per value (`MatrixArgs::values_of`).
pub const MATRIX_FLAGS: [&str; 6] = [
    "--commands",
    "--value-sizes",
    "--pipelines",
    "--clients",
    "--io-threads",
    "--keyspaces",
];

fn list_parser(
    unit: Unit,
    (low, high): (u64, u64),
) -> impl Fn(&str) -> Result<Values, String> + Clone + Send + Sync + 'static {
    move |text| ranges::parse_list(text, unit, low, high).map(Values)
}

fn parse_commands(text: &str) -> Result<Commands, String> {
    let mut commands = Vec::new();
    for name in text.split(',').map(str::trim) {
        let command: Command = name.parse()?;
        if commands.contains(&command) {
            return Err(format!("{name} appears twice"));
        }
        commands.push(command);
    }
    Ok(Commands(commands))
}

impl MatrixArgs {
    /// The lists, as the suite takes them.
    pub fn matrix(&self) -> Matrix {
        let u32s = |v: &Option<Values>| v.as_ref().map(|v| v.0.iter().map(|&n| n as u32).collect());
        Matrix {
            commands: self.commands.as_ref().map(|c| c.0.clone()),
            value_sizes: self.value_sizes.as_ref().map(|v| v.0.clone()),
            pipelines: u32s(&self.pipelines),
            clients: u32s(&self.clients),
            io_threads: u32s(&self.io_threads),
            keyspaces: self.keyspaces.as_ref().map(|v| v.0.clone()),
        }
    }

    /// A flag's values as single command-line values, for `queue add`'s expansion; `None`
    /// when the flag was not given.
    pub fn values_of(&self, flag: &str) -> Option<Vec<String>> {
        let numbers =
            |v: &Option<Values>| v.as_ref().map(|v| v.0.iter().map(u64::to_string).collect());
        match flag {
            "--commands" => self
                .commands
                .as_ref()
                .map(|c| c.0.iter().map(|c| c.to_string()).collect()),
            "--value-sizes" => numbers(&self.value_sizes),
            "--pipelines" => numbers(&self.pipelines),
            "--clients" => numbers(&self.clients),
            "--io-threads" => numbers(&self.io_threads),
            "--keyspaces" => numbers(&self.keyspaces),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SuiteArg {
    Perf,
    Mem,
    Sync,
}

impl From<SuiteArg> for SuiteKind {
    fn from(s: SuiteArg) -> SuiteKind {
        match s {
            SuiteArg::Perf => SuiteKind::Perf,
            SuiteArg::Mem => SuiteKind::Mem,
            SuiteArg::Sync => SuiteKind::Sync,
        }
    }
}

/// The workload flags `loadgen` and `flamegraph` share.
#[derive(Args, Debug)]
pub struct WorkloadArgs {
    /// A preset (basic_rw, high_throughput, list_operations, set_operations,
    /// sorted_set_operations, hash_operations, pipeline) or a workload file (TOML).
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "command")]
    pub workload: Option<String>,
    /// One command (GET, SET, HSET, ...) or a template ("SET {key} {value} EX 60").
    #[arg(long)]
    pub command: Option<String>,
    /// Distinct keys (overrides the workload's).
    #[arg(long)]
    pub keyspace: Option<u64>,
    /// Value size in bytes (overrides the workload's).
    #[arg(long, value_name = "BYTES")]
    pub value_size: Option<u32>,
    /// Connections, 1 to 10000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: u32,
    /// Requests in flight per connection, 1 to 10000 (default: the preset's, else 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pipeline: Option<u32>,
}

impl WorkloadArgs {
    /// The workload with the flags' overrides (and `seed`), checked, and the pipeline
    /// depth to use.
    pub fn resolve(&self, seed: Option<u64>) -> anyhow::Result<(WorkloadSpec, u32)> {
        let usage = |e: workload::WorkloadError| UsageError(e.to_string());
        let (mut spec, preset_pipeline) =
            resolve_workload(self.workload.as_deref(), self.command.as_deref())?;
        if let Some(k) = self.keyspace {
            spec.keyspace = k;
        }
        if let Some(b) = self.value_size {
            spec.values = ValueSize::Fixed { bytes: b };
        }
        if let Some(seed) = seed {
            spec.seed = seed;
        }
        spec.compile().map_err(usage)?;
        Ok((spec, self.pipeline.unwrap_or(preset_pipeline)))
    }
}

/// The workload a `--workload NAME|FILE` or `--command CMD` flag names (default
/// `basic_rw`), and its default pipeline depth. Errors are usage errors naming the flag.
pub fn resolve_workload(
    name_or_file: Option<&str>,
    command: Option<&str>,
) -> anyhow::Result<(WorkloadSpec, u32)> {
    let usage = |e: workload::WorkloadError| UsageError(e.to_string());
    let resolved = match (name_or_file, command) {
        (Some(name), _) if workload::preset_names().contains(&name) => {
            WorkloadSpec::preset(name).map_err(usage)?
        }
        (Some(file), _) => {
            let path = Path::new(file);
            if !path.is_file() {
                bail!(UsageError(format!(
                    "--workload {file:?}: neither a preset ({}) nor a file",
                    workload::preset_names().join(", ")
                )));
            }
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {file}"))?;
            let spec =
                WorkloadSpec::from_toml(&text).map_err(|e| UsageError(format!("{file}: {e}")))?;
            (spec, 1)
        }
        (None, Some(command)) => (WorkloadSpec::single(command, 100_000, 32), 1),
        (None, None) => WorkloadSpec::preset("basic_rw").map_err(usage)?,
    };
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tasks_counts_take_the_first_of_the_runners_hosts() {
        let hosts = |file: bool, servers: Option<&str>, clients: Option<&str>| HostsArgs {
            hosts: file.then(|| "/lab/hosts.toml".into()),
            server_hosts: servers.map(String::from),
            client_hosts: clients.map(String::from),
        };
        let runner = hosts(true, Some("a, b,c"), Some("x"));
        // Nothing asked: the runner's own choice.
        let given = runner.for_task(&HostsArgs::default(), true).unwrap();
        assert_eq!(given.hosts, runner.hosts);
        assert_eq!(given.server_hosts.as_deref(), Some("a, b,c"));
        assert_eq!(given.client_hosts.as_deref(), Some("x"));
        // Counts: the first of the runner's lists.
        let given = runner
            .for_task(&hosts(false, Some("2"), Some("1")), true)
            .unwrap();
        assert_eq!(given.server_hosts.as_deref(), Some("a,b"));
        assert_eq!(given.client_hosts.as_deref(), Some("x"));
        let err = runner
            .for_task(&hosts(false, Some("4"), None), true)
            .unwrap_err();
        assert!(
            err.0
                .contains("--server-hosts 4: this runner has 3 such host(s) (a, b,c)"),
            "{err}"
        );
        // A runner that named none: the count picks from its file.
        let given = hosts(true, None, None)
            .for_task(&hosts(false, Some("2"), Some("1")), true)
            .unwrap();
        assert_eq!(given.server_hosts.as_deref(), Some("2"));
        assert_eq!(given.client_hosts.as_deref(), Some("1"));
        // A command whose load runs here gets no client hosts from the runner.
        let given = runner.for_task(&HostsArgs::default(), false).unwrap();
        assert_eq!(given.client_hosts, None);
        // Names never reach a runner (the queue refuses them); if they did, refused.
        let err = runner
            .for_task(&hosts(false, Some("h9"), None), true)
            .unwrap_err();
        assert!(err.0.contains("a count of hosts"), "{err}");
        // A runner's count caps the task's.
        let counted = hosts(true, Some("2"), None);
        assert_eq!(
            counted
                .for_task(&hosts(false, Some("2"), None), true)
                .unwrap()
                .server_hosts
                .as_deref(),
            Some("2")
        );
        let err = counted
            .for_task(&hosts(false, Some("3"), None), true)
            .unwrap_err();
        assert!(err.0.contains("this runner has 2 such host(s)"), "{err}");
    }

    #[test]
    fn server_config_pairs() {
        let c = parse_server_config(&["io-threads=4".into(), "save=900 1".into()]).unwrap();
        assert_eq!(c["io-threads"], "4");
        assert_eq!(c["save"], "900 1");
        let err = parse_server_config(&["io-threads".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("name=value"), "{err}");
        let err = parse_server_config(&["IO=4".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"IO\""), "{err}");
        for (pair, why) in [
            ("BIND=0.0.0.0", "lowercase"),
            ("pidfile=/etc/passwd", "set by the harness"),
            ("maxclients=--bind 0.0.0.0", "starts with '-'"),
        ] {
            let err = parse_server_config(&[pair.into()]).unwrap_err();
            assert!(err.is::<UsageError>(), "{pair}");
            assert!(err.to_string().contains(why), "{pair}: {err}");
        }
    }
}
