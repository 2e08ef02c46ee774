//! Which hosts a run uses: `--hosts FILE` (or `VALKEY_BENCH_HOSTS`), `--server-hosts A,B`
//! and `--client-hosts X,Y`, checked before anything starts ([`HostsChoice::check`]), then
//! connected once for the run ([`HostsChoice::connect`]): one connection and one agent per
//! host, whatever roles it plays.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bench_core::placement::SuiteHosts;
use bench_core::shutdown::Shutdown;

use super::clients::{ClientHost, ClientHosts};
use super::file::{HOSTS_ENV, HostSpec, HostsFile, LOCAL};
use super::pick::Role;
use super::remote::Remote;
use super::{Host, ServerHosts, local::Local};
use crate::error::UsageError;

/// The flags that place servers and load.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostsChoice {
    /// The hosts file: `--hosts`, else `VALKEY_BENCH_HOSTS`.
    pub file: Option<PathBuf>,
    /// `--server-hosts`: names from the file, `local` for this machine. Default: this
    /// machine alone.
    pub server_hosts: Option<String>,
    /// `--client-hosts`: where the load generator runs. Default: this machine, in process.
    pub client_hosts: Option<String>,
    /// The load goes to a server that is not ours (`loadgen`): no servers are placed, so
    /// client hosts need no server host.
    pub load_only: bool,
}

/// A checked choice: the hosts file and the hosts it names (`None`: this machine).
#[derive(Clone, Debug)]
pub struct Checked {
    pub known_hosts: PathBuf,
    pub servers: Vec<Option<HostSpec>>,
    /// `None`: the load runs in this process, as without hosts.
    pub clients: Option<Vec<Option<HostSpec>>>,
}

/// A run's connected hosts.
#[derive(Debug)]
pub struct Hosts {
    pub servers: ServerHosts,
    pub clients: Option<ClientHosts>,
    /// Every host reached, kept connected for the run (a client host's agent lives as
    /// long as its connection); closed last.
    _remotes: Vec<Arc<Remote>>,
}

impl Hosts {
    /// Where the servers and the load run, for messages and the lab's status: empty when
    /// all on this machine.
    pub fn describe(&self) -> String {
        let servers: Vec<String> = self.servers.iter().map(|h| h.name()).collect();
        let mut parts = Vec::new();
        if !self.servers.all_local() {
            parts.push(format!("servers on {}", servers.join(", ")));
        }
        if let Some(clients) = &self.clients {
            parts.push(format!("load from {}", clients.names().join(", ")));
        }
        parts.join("; ")
    }
}

impl HostsChoice {
    /// The file from the environment when no flag named one.
    pub fn with_env(mut self) -> HostsChoice {
        if self.file.is_none() {
            self.file = std::env::var_os(HOSTS_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
        }
        self
    }

    /// A suite file's `[hosts]` under the flags: each flag given replaces its field. The
    /// hosts file is named relative to the suite file's directory, and stays inside it.
    pub fn with_suite(
        mut self,
        suite: &SuiteHosts,
        suite_file: &Path,
    ) -> Result<HostsChoice, UsageError> {
        if self.file.is_none()
            && let Some(file) = &suite.file
        {
            let relative = Path::new(file);
            let inside = !file.is_empty()
                && relative
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return Err(UsageError(format!(
                    "{}: [hosts] file {file:?}: give a path inside the suite file's directory \
                     (relative, no `..`), or use --hosts FILE",
                    suite_file.display()
                )));
            }
            let dir = suite_file.parent().unwrap_or(Path::new(""));
            self.file = Some(dir.join(relative));
        }
        let names = |list: &[String], field: &str| -> Result<Option<String>, UsageError> {
            if list.iter().any(|n| n.is_empty() || n.contains(',')) {
                return Err(UsageError(format!(
                    "{}: [hosts] {field} {list:?}: give each host's name from the hosts file",
                    suite_file.display()
                )));
            }
            Ok((!list.is_empty()).then(|| list.join(",")))
        };
        if self.server_hosts.is_none() {
            self.server_hosts = names(&suite.servers, "servers")?;
        }
        if self.client_hosts.is_none() {
            self.client_hosts = names(&suite.clients, "clients")?;
        }
        if self.client_hosts.is_some() && self.server_hosts.is_none() {
            return Err(UsageError(format!(
                "{}: [hosts] clients without servers: the load runs on other hosts only with \
                 the servers on hosts too; add `servers`",
                suite_file.display()
            )));
        }
        Ok(self)
    }

    /// Reads the file and picks the hosts, connecting to nothing.
    pub fn check(&self) -> Result<Checked, UsageError> {
        let file = match &self.file {
            Some(path) => Some(HostsFile::read(path)?),
            None => None,
        };
        let pick = |names: &str, flag: &str, role: Role, taken: &[HostSpec]| match &file {
            Some(file) => file.pick(names, flag, role, taken),
            None if names.split(',').all(|n| n.trim() == LOCAL) => Ok(vec![None]),
            None => Err(UsageError(format!(
                "{flag} {names}: no hosts file; name one with --hosts FILE or {HOSTS_ENV} \
                 (docs/hosts.md shows one)"
            ))),
        };
        // A count of hosts never takes a host the other role named: servers and load
        // apart. Named hosts are picked first.
        let is_count = |v: &Option<String>| {
            v.as_deref().is_some_and(|t| {
                !t.trim().is_empty() && t.trim().bytes().all(|b| b.is_ascii_digit())
            })
        };
        let specs = |picked: &[Option<HostSpec>]| -> Vec<HostSpec> {
            picked.iter().flatten().cloned().collect()
        };
        let named_clients = match &self.client_hosts {
            Some(names) if !is_count(&self.client_hosts) => {
                Some(pick(names, "--client-hosts", Role::Client, &[])?)
            }
            _ => None,
        };
        let servers = match &self.server_hosts {
            Some(names) => pick(
                names,
                "--server-hosts",
                Role::Server,
                &specs(named_clients.as_deref().unwrap_or_default()),
            )?,
            None => vec![None],
        };
        let clients = match (&self.client_hosts, named_clients) {
            (_, Some(named)) => Some(named),
            (Some(count), None) => Some(pick(
                count,
                "--client-hosts",
                Role::Client,
                &specs(&servers),
            )?),
            (None, None) => None,
        };
        if let Some(clients) = &clients
            && clients.iter().any(Option::is_some)
            && servers.contains(&None)
            && !self.load_only
        {
            return Err(UsageError(
                "--client-hosts with servers on this machine: they listen on 127.0.0.1, which \
                 other hosts cannot reach; put the servers on a host too (--server-hosts)"
                    .into(),
            ));
        }
        Ok(Checked {
            known_hosts: file.map(|f| f.known_hosts).unwrap_or_default(),
            servers,
            clients,
        })
    }

    /// Whether every server runs on this machine.
    pub fn is_local(&self) -> bool {
        self.server_hosts
            .as_deref()
            .is_none_or(|names| names.split(',').all(|n| n.trim() == LOCAL))
    }

    /// Connects to every host named (host keys checked, agents started), each once, in
    /// order. When one fails, the ones already reached are closed (their agents stop)
    /// before the error returns.
    pub fn connect(&self, shutdown: &Shutdown) -> anyhow::Result<Hosts> {
        let checked = self.check()?;
        let mut opened: Vec<Arc<Remote>> = Vec::new();
        let mut open = |spec: &HostSpec| -> anyhow::Result<Arc<Remote>> {
            if let Some(remote) = opened.iter().find(|r| r.name() == spec.name) {
                return Ok(remote.clone());
            }
            let remote = Arc::new(Remote::open(spec, &checked.known_hosts, shutdown)?);
            let facts = remote.info();
            eprintln!(
                "host {} ({}): {}, {} CPUs, {:.1} GiB, kernel {}; our agent runs there",
                spec.name,
                spec.address,
                facts.model,
                facts.cpus,
                facts.memory_bytes as f64 / (1u64 << 30) as f64,
                facts.kernel
            );
            opened.push(remote.clone());
            Ok(remote)
        };
        let mut servers: Vec<Arc<dyn Host>> = Vec::new();
        for spec in &checked.servers {
            match spec {
                None => servers.push(Arc::new(Local)),
                Some(spec) => servers.push(open(spec)?),
            }
        }
        let clients = match &checked.clients {
            None => None,
            Some(specs) => {
                let mut hosts = Vec::new();
                for spec in specs {
                    hosts.push(match spec {
                        None => ClientHost::Local,
                        Some(spec) => open(spec)?.client_host(),
                    });
                }
                Some(ClientHosts { hosts })
            }
        };
        Ok(Hosts {
            servers: ServerHosts::new(servers),
            clients,
            _remotes: opened,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(file: Option<&str>, servers: &[&str], clients: &[&str]) -> SuiteHosts {
        SuiteHosts {
            file: file.map(String::from),
            servers: servers.iter().map(|s| s.to_string()).collect(),
            clients: clients.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_suite_files_hosts_fill_what_the_flags_left_out() {
        let at = Path::new("/lab/suites/perf.toml");
        let chosen = HostsChoice::default()
            .with_suite(&suite(Some("net/hosts.toml"), &["a", "b"], &["c"]), at)
            .unwrap();
        assert_eq!(
            chosen.file,
            Some(PathBuf::from("/lab/suites/net/hosts.toml"))
        );
        assert_eq!(chosen.server_hosts.as_deref(), Some("a,b"));
        assert_eq!(chosen.client_hosts.as_deref(), Some("c"));
        // Each flag replaces its field.
        let flags = HostsChoice {
            file: Some("/etc/mine.toml".into()),
            server_hosts: Some("z".into()),
            ..Default::default()
        };
        let chosen = flags
            .with_suite(&suite(Some("hosts.toml"), &["a"], &["c"]), at)
            .unwrap();
        assert_eq!(chosen.file, Some(PathBuf::from("/etc/mine.toml")));
        assert_eq!(chosen.server_hosts.as_deref(), Some("z"));
        assert_eq!(chosen.client_hosts.as_deref(), Some("c"));
    }

    #[test]
    fn a_suite_files_hosts_stay_inside_its_directory_and_name_hosts() {
        let at = Path::new("/lab/perf.toml");
        for (bad, why) in [
            (
                suite(Some("../hosts.toml"), &[], &[]),
                "inside the suite file's directory",
            ),
            (
                suite(Some("/etc/hosts.toml"), &[], &[]),
                "inside the suite file's directory",
            ),
            (
                suite(Some(""), &[], &[]),
                "inside the suite file's directory",
            ),
            (suite(None, &["a,b"], &[]), "[hosts] servers"),
            (suite(None, &[""], &[]), "[hosts] servers"),
            (suite(None, &[], &["c"]), "clients without servers"),
        ] {
            let err = HostsChoice::default().with_suite(&bad, at).unwrap_err();
            assert!(err.0.contains(why), "{bad:?}: {err}");
            assert!(err.0.contains("/lab/perf.toml"), "{err}");
        }
    }

    #[test]
    fn counts_keep_servers_and_load_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts.toml");
        let mut text = String::new();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            text.push_str(&format!(
                "[[host]]\nname = \"{name}\"\naddress = \"198.18.0.{}\"\nuser = \"u\"\n",
                i + 2
            ));
        }
        std::fs::write(&file, text).unwrap();
        let choose = |servers: &str, clients: &str| {
            let checked = HostsChoice {
                file: Some(file.clone()),
                server_hosts: Some(servers.into()),
                client_hosts: Some(clients.into()),
                load_only: false,
            }
            .check()
            .unwrap();
            let names = |v: &[Option<HostSpec>]| -> Vec<String> {
                v.iter().flatten().map(|h| h.name.clone()).collect()
            };
            (
                names(&checked.servers),
                names(checked.clients.as_deref().unwrap()),
            )
        };
        // A count of servers skips the named client host; a count of clients skips the
        // servers; names are taken as given.
        assert_eq!(
            choose("2", "a"),
            (vec!["b".into(), "c".into()], vec!["a".into()])
        );
        assert_eq!(
            choose("a,b", "1"),
            (vec!["a".into(), "b".into()], vec!["c".into()])
        );
        assert_eq!(
            choose("2", "1"),
            (vec!["a".into(), "b".into()], vec!["c".into()])
        );
        assert_eq!(choose("a", "a"), (vec!["a".into()], vec!["a".into()]));
    }
}
