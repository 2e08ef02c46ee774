//! Another machine, reached over ssh ([`super::ssh`]): its servers run under our agent
//! there ([`super::agent`]), which this module ships to the host's work directory with the
//! Valkey binaries ([`super::ship`]), each addressed by the hash of its content, so a
//! second run copies nothing.
//!
//! Layout on the host, under its `work_dir`:
//! `bin/<hash>/valkey-bench-agent`, `bin/<hash>/valkey-server` (with `valkey-cli` and
//! `valkey-benchmark` beside it, and `valkey-src.tar.gz` when the host builds its own,
//! into `bin/<its own key>/`: `build.rs`), `scratch/` (the servers' directories, swept by
//! the next agent when one was killed outright).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;

use super::Host;
use super::agent::{self, Facts, Request};
use super::agent_binary::{AgentBinary, PROTOCOL};
use super::file::{BuildOn, HostSpec};
use super::link::AgentLink;
use super::ship::{Wanted, local_key, ship_all};
use super::ssh::Ssh;
use crate::error::UsageError;
use crate::instances::{self, Instance};
use crate::valkey::Binaries;

/// How long a build on a host may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);

/// The agent's file name on the host.
const AGENT: &str = "valkey-bench-agent";

/// A host reached over ssh with its agent running.
#[derive(Debug)]
pub struct Remote {
    /// Closed first (`Drop`): that stops the host's servers and the agent.
    agent: Arc<AgentLink>,
    ssh: Ssh,
    facts: Facts,
    /// Its `uname -m`: another than this machine's builds Valkey there.
    arch: String,
    /// The key each build's binaries are under there, and how they got there, by the
    /// local server binary's path.
    shipped: Mutex<HashMap<PathBuf, (String, String)>>,
}

impl Remote {
    /// Connects (host key checked), checks the host can run our binaries, ships the agent
    /// if it is not there and starts it. Nothing runs on the host before this returns but
    /// the agent.
    pub fn open(
        spec: &HostSpec,
        known_hosts: &Path,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Remote> {
        let ssh = Ssh::connect(spec, known_hosts, shutdown)?;
        let name = &spec.name;
        let arch = ssh.run("uname -m", None, Duration::from_secs(30))?;
        let program = match &spec.agent {
            Some(path) => AgentBinary::named(path).map_err(|why| {
                UsageError(format!(
                    "host {name:?}: agent {why}: fix `agent` in the hosts file"
                ))
            })?,
            None => AgentBinary::this()?,
        };
        program.check(name, arch.trim()).map_err(UsageError)?;
        let work = spec.work_dir.display().to_string();
        let listed = ssh
            .run(
                &format!(
                    "umask 077 && mkdir -p {work}/bin {work}/scratch && test -w {work}/bin && \
                     test -w {work}/scratch && id -u && stat -c '%u %a %n' {work} {work}/bin {work}/scratch"
                ),
                None,
                Duration::from_secs(30),
            )
            .map_err(|e| {
                UsageError(format!(
                    "host {name:?}: its work_dir {work} cannot be made or written ({e:#}): give a \
                     directory its user may write in the hosts file"
                ))
            })?;
        if let Err(why) = private(&listed) {
            return Err(UsageError(format!(
                "host {name:?}: {why}: another user could replace the programs we run there; \
                 give a work_dir of the user's own in the hosts file"
            ))
            .into());
        }
        let exe = program.path;
        let key = local_key(&exe)?;
        ship_all(
            &ssh,
            &[Wanted {
                local: &exe,
                key: &key,
                name: AGENT,
                own: key.clone(),
            }],
        )?;
        let mut cmd = ssh.command(&format!(
            "exec {work}/bin/{key}/{AGENT} agent --work-dir {work} --lease-ms {}",
            agent::LEASE.as_millis()
        ));
        cmd.env_remove("RUST_BACKTRACE");
        let agent = AgentLink::start(cmd, name)?;
        let facts = agent.facts().with_context(|| {
            format!(
                "starting the agent on {name:?}{}",
                match &spec.agent {
                    Some(path) => format!(
                        " ({} may be another version of valkey-bench: build it from this commit)",
                        path.display()
                    ),
                    None => String::new(),
                }
            )
        })?;
        if facts.protocol != PROTOCOL {
            return Err(UsageError(format!(
                "host {name:?}: its agent {} speaks agent protocol {} and this program {PROTOCOL}: \
                 build it from this commit",
                exe.display(),
                facts.protocol
            ))
            .into());
        }
        let machine = facts.machine();
        for (field, list) in [
            ("server_cpus", &spec.server_cpus),
            ("client_cpus", &spec.client_cpus),
        ] {
            let Some(list) = list else { continue };
            let absent: Vec<String> = list
                .ids()
                .filter(|c| !machine.allowed.contains(c))
                .map(|c| c.to_string())
                .collect();
            if !absent.is_empty() || list.0.is_empty() {
                return Err(UsageError(format!(
                    "host {name:?}: {field} {list}: CPU {} is not there (it has {}); pick from those",
                    absent.join(", "),
                    bench_core::placement::CpuList(machine.allowed.clone())
                ))
                .into());
            }
        }
        Ok(Remote {
            agent,
            ssh,
            facts,
            arch: arch.trim().to_string(),
            shipped: Mutex::new(HashMap::new()),
        })
    }

    /// The name in the hosts file.
    pub fn name(&self) -> &str {
        self.ssh.name()
    }

    /// This host as a client host: its agent runs load there, on its `client_cpus`.
    pub fn client_host(&self) -> super::clients::ClientHost {
        super::clients::ClientHost::Remote {
            name: self.ssh.name().to_string(),
            link: self.agent.clone(),
            cpus: self
                .ssh
                .spec()
                .client_cpus
                .as_ref()
                .map(|l| l.ids().collect())
                .unwrap_or_default(),
        }
    }

    /// The key `binaries` are under on the host, and how they got there (`shipped`,
    /// `built on the host (...)`), shipping or building them first if this run has not
    /// (the hosts file's `build`: [`BuildOn`]).
    fn binaries_there(
        &self,
        binaries: &Binaries,
        shutdown: &Shutdown,
    ) -> anyhow::Result<(String, String)> {
        let mut shipped = self.shipped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(there) = shipped.get(&binaries.server) {
            return Ok(there.clone());
        }
        let key = local_key(&binaries.server)?;
        let name = self.ssh.name();
        let foreign = self.arch != super::agent_binary::this_arch();
        let there = match self.ssh.spec().build {
            BuildOn::Host => self.build_there(binaries, &key, shutdown)?,
            BuildOn::Ship if foreign => {
                return Err(UsageError(format!(
                    "host {name:?} is {} and the Valkey built here is {}: let it build its own \
                     from the same source, build = \"auto\" or \"host\" in its hosts-file entry",
                    self.arch,
                    super::agent_binary::this_arch()
                ))
                .into());
            }
            BuildOn::Auto if foreign => {
                eprintln!(
                    "host {name}: it is {}, so it builds Valkey from the same source",
                    self.arch
                );
                self.build_there(binaries, &key, shutdown)?
            }
            mode => {
                self.ship_binaries(binaries, &key)?;
                match self.runs_there(&key)? {
                    Ok(()) => (key.clone(), "shipped".to_string()),
                    Err(why) if mode == BuildOn::Ship => {
                        return Err(UsageError(format!(
                            "host {name:?} cannot run the Valkey build shipped there ({why}); \
                             install what it lacks there, or let it build its own from the \
                             same source: build = \"auto\" in its hosts-file entry"
                        ))
                        .into());
                    }
                    Err(why) => {
                        eprintln!(
                            "host {name}: the Valkey build shipped there cannot run there \
                             ({why}); building it there from the same source"
                        );
                        self.build_there(binaries, &key, shutdown)?
                    }
                }
            }
        };
        shipped.insert(binaries.server.clone(), there.clone());
        Ok(there)
    }

    /// Copies the server (and the tools beside it) under `key`.
    fn ship_binaries(&self, binaries: &Binaries, key: &str) -> anyhow::Result<()> {
        let tools: Vec<(std::path::PathBuf, &str)> = ["valkey-cli", "valkey-benchmark"]
            .into_iter()
            .map(|tool| (binaries.server.with_file_name(tool), tool))
            .filter(|(path, _)| path.is_file())
            .collect();
        let mut wanted = vec![Wanted {
            local: &binaries.server,
            key,
            name: "valkey-server",
            own: key.to_string(),
        }];
        for (path, tool) in &tools {
            wanted.push(Wanted {
                local: path,
                key,
                name: tool,
                own: local_key(path)?,
            });
        }
        ship_all(&self.ssh, &wanted)
    }

    /// Whether the server under `key` runs there (`--version`): `Ok(Err)` has what the
    /// dynamic loader said there (a missing library, a C library too old); anything else
    /// that fails (the connection, a timeout) is an error, not a reason to build.
    fn runs_there(&self, key: &str) -> anyhow::Result<Result<(), String>> {
        let dir = agent::bin_dir(&self.ssh.spec().work_dir, key);
        let Err(e) = self.ssh.run(
            &format!("{}/valkey-server --version", dir.display()),
            None,
            Duration::from_secs(60),
        ) else {
            return Ok(Ok(()));
        };
        let text = format!("{e:#}");
        match loader_error(&text) {
            Some(said) => Ok(Err(said)),
            None => Err(e.context(format!(
                "running valkey-server --version on host {:?}",
                self.ssh.name()
            ))),
        }
    }

    /// Has the agent build `binaries`' source there (once: a build already there is
    /// reused), under a key of its own; returns it and how it was built.
    fn build_there(
        &self,
        binaries: &Binaries,
        key: &str,
        shutdown: &Shutdown,
    ) -> anyhow::Result<(String, String)> {
        let name = self.ssh.name();
        let archive = binaries
            .source_archive
            .as_deref()
            .filter(|a| a.is_file())
            .with_context(|| {
                format!(
                    "building Valkey on host {name:?}: the source of {} was not kept",
                    binaries.server.display()
                )
            })?;
        if shutdown.is_triggered() {
            bail!("interrupted");
        }
        ship_all(
            &self.ssh,
            &[Wanted {
                local: archive,
                key,
                name: agent::SOURCE,
                own: local_key(archive)?,
            }],
        )?;
        let into = agent::built_key(key);
        eprintln!(
            "host {name}: building Valkey {} there from its source, unless built there before \
             (a build takes minutes)",
            binaries.version
        );
        let reply = self.agent.call(
            &Request::Build {
                key: key.to_string(),
                into: into.clone(),
                options: binaries.build.clone(),
            },
            BUILD_TIMEOUT,
        )?;
        let built: agent::Built =
            serde_json::from_value(reply).context("the agent's account of its build")?;
        eprintln!(
            "host {name}: {} ({})",
            if built.reused {
                "built there before"
            } else {
                "built there"
            },
            built.compiler
        );
        Ok((into, format!("built on the host ({})", built.compiler)))
    }
}

/// Whether `id -u` then `stat -c '%u %a %n'` lines say every directory is the user's
/// and written by no one else.
fn private(listed: &str) -> Result<(), String> {
    let mut lines = listed.lines();
    let uid = lines.next().unwrap_or("").trim();
    for line in lines {
        let mut words = line.splitn(3, ' ');
        let (owner, mode, path) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or(""),
            words.next().unwrap_or("?"),
        );
        if owner != uid {
            return Err(format!(
                "{path} belongs to uid {owner}, not to the login's uid {uid}"
            ));
        }
        let bits = u32::from_str_radix(mode, 8).map_err(|_| format!("{path}: mode {mode:?}"))?;
        if bits & 0o022 != 0 {
            return Err(format!("{path} is writable by others (mode {mode})"));
        }
    }
    Ok(())
}

/// The dynamic loader's complaint in what a failed run printed, if that is why it failed.
fn loader_error(said: &str) -> Option<String> {
    const SIGNS: [&str; 4] = [
        "error while loading shared libraries",
        "cannot open shared object file",
        "version `GLIBC",
        "not found (required by",
    ];
    said.lines()
        .find(|l| SIGNS.iter().any(|s| l.contains(s)))
        .map(|l| l.trim().to_string())
}

impl Drop for Remote {
    /// The agent's channel closes before the ssh master goes: the agent stops its servers
    /// and exits on its own (the master's end would do it too, less politely).
    fn drop(&mut self) {
        self.agent.close();
    }
}

impl Host for Remote {
    fn name(&self) -> String {
        self.ssh.name().to_string()
    }

    fn info(&self) -> HostInfo {
        self.facts.info.clone()
    }

    fn machine(&self) -> bench_core::placement::Machine {
        self.facts.machine()
    }

    fn address(&self) -> std::net::IpAddr {
        self.ssh.spec().address
    }

    fn is_local(&self) -> bool {
        false
    }

    fn perf_event(&self, _shutdown: &Shutdown) -> anyhow::Result<&'static str> {
        self.agent.perf_event()
    }

    fn start_servers(
        &self,
        binaries: &Binaries,
        count: usize,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Vec<Instance>> {
        if !options.wrapper.is_empty() || options.fixed_urandom.is_some() {
            bail!(
                "valgrind or a counter around servers on host {:?}: only servers on this machine \
                 can run under them (perf records anywhere)",
                self.ssh.name()
            );
        }
        if shutdown.is_triggered() {
            bail!("interrupted");
        }
        let pinned = bench_core::placement::SERVER_SETTINGS
            .iter()
            .find(|k| options.config.contains_key(**k));
        if let Some(setting) = pinned {
            return Err(UsageError(format!(
                "{setting} (from --server-cpus or a suite file's server_cpus) with servers on host \
                 {:?}: those CPUs are this machine's; pin servers on a host with `server_cpus` \
                 in its hosts-file entry",
                self.ssh.name()
            ))
            .into());
        }
        let (key, how) = self.binaries_there(binaries, shutdown)?;
        let mut options = instances::Options {
            bind: self.address(),
            ..options.clone()
        };
        if let Some(cpus) = &self.ssh.spec().server_cpus {
            for setting in bench_core::placement::SERVER_SETTINGS {
                options.config.insert(setting.into(), cpus.to_string());
            }
        }
        self.agent.start_servers(&key, &how, count, &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_loaders_complaints_make_a_host_build_its_own() {
        let said = "on host \"h1\": `/w/bin/k/valkey-server --version` failed (exit status: 127): \
                    /w/bin/k/valkey-server: error while loading shared libraries: libssl.so.3: \
                    cannot open shared object file: No such file or directory";
        assert!(loader_error(said).unwrap().contains("libssl.so.3"));
        let old_libc = "valkey-server: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' \
                        not found (required by valkey-server)";
        assert!(loader_error(old_libc).is_some());
        for other in [
            "ssh: connect to host 198.18.0.2 port 22: Connection refused",
            "`valkey-server --version` timed out after 60s",
            "",
        ] {
            assert_eq!(loader_error(other), None, "{other}");
        }
    }

    #[test]
    fn a_work_dir_must_be_the_users_own_and_closed_to_others() {
        assert_eq!(private("1000\n1000 700 /w\n1000 755 /w/bin\n"), Ok(()));
        assert!(
            private("1000\n0 700 /w\n")
                .unwrap_err()
                .contains("/w belongs to uid 0")
        );
        assert!(
            private("1000\n1000 777 /w\n")
                .unwrap_err()
                .contains("writable by others")
        );
        assert!(
            private("1000\n1000 1775 /w\n")
                .unwrap_err()
                .contains("(mode 1775)")
        );
    }
}
