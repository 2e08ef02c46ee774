//! Which hosts a run's servers go on: `--hosts FILE` (or `VALKEY_BENCH_HOSTS`) and
//! `--server-hosts A,B`, checked before anything starts ([`HostsChoice::check`]), then
//! connected once for the run ([`HostsChoice::connect`]).

use std::path::PathBuf;

use bench_core::shutdown::Shutdown;

use super::file::{HOSTS_ENV, HostSpec, HostsFile, Role};
use super::remote::Remote;
use super::{Host, ServerHosts, local::Local};
use crate::error::UsageError;

/// The flags (or suite-file fields) that place servers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostsChoice {
    /// The hosts file: `--hosts`, else `VALKEY_BENCH_HOSTS`.
    pub file: Option<PathBuf>,
    /// `--server-hosts`: names from the file, `local` for this machine. Default: this
    /// machine alone.
    pub server_hosts: Option<String>,
}

/// A checked choice: the hosts file and the server hosts it names (`None`: this machine).
#[derive(Clone, Debug)]
pub struct Checked {
    pub known_hosts: PathBuf,
    pub servers: Vec<Option<HostSpec>>,
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

    /// Reads the file and picks the hosts, connecting to nothing.
    pub fn check(&self) -> Result<Checked, UsageError> {
        let Some(names) = &self.server_hosts else {
            if let Some(file) = &self.file {
                HostsFile::read(file)?;
            }
            return Ok(Checked {
                known_hosts: PathBuf::new(),
                servers: vec![None],
            });
        };
        let Some(path) = &self.file else {
            if names.split(',').all(|n| n.trim() == super::file::LOCAL) {
                return Ok(Checked {
                    known_hosts: PathBuf::new(),
                    servers: vec![None],
                });
            }
            return Err(UsageError(format!(
                "--server-hosts {names}: no hosts file; name one with --hosts FILE or \
                 {HOSTS_ENV} (docs/hosts.md shows one)"
            )));
        };
        let file = HostsFile::read(path)?;
        Ok(Checked {
            servers: file.pick(names, "--server-hosts", Role::Server)?,
            known_hosts: file.known_hosts,
        })
    }

    /// Whether every server runs on this machine.
    pub fn is_local(&self) -> bool {
        self.server_hosts
            .as_deref()
            .is_none_or(|names| names.split(',').all(|n| n.trim() == super::file::LOCAL))
    }

    /// Connects to every server host (host keys checked, agents started), in order. When
    /// one fails, the ones already reached are closed (their agents stop) before the error
    /// returns.
    pub fn connect(&self, shutdown: &Shutdown) -> anyhow::Result<ServerHosts> {
        let checked = self.check()?;
        let mut hosts: Vec<Box<dyn Host>> = Vec::new();
        for spec in &checked.servers {
            match spec {
                None => hosts.push(Box::new(Local)),
                Some(spec) => {
                    let remote = Remote::open(spec, &checked.known_hosts, shutdown)?;
                    let facts = remote.info();
                    eprintln!(
                        "host {} ({}): {}, {} CPUs, {:.1} GiB, kernel {}; its servers run under our agent there",
                        spec.name,
                        spec.address,
                        facts.model,
                        facts.cpus,
                        facts.memory_bytes as f64 / (1u64 << 30) as f64,
                        facts.kernel
                    );
                    hosts.push(Box::new(remote));
                }
            }
        }
        Ok(ServerHosts::new(hosts))
    }
}
