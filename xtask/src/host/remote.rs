//! Another machine, reached over ssh ([`super::ssh`]): its servers run under our agent
//! there ([`super::agent`]), which this module ships to the host's work directory with the
//! Valkey binaries, each addressed by the hash of its content, so a second run copies
//! nothing.
//!
//! Layout on the host, under its `work_dir`:
//! `bin/<hash>/valkey-bench-agent`, `bin/<hash>/valkey-server` (with `valkey-cli` and
//! `valkey-benchmark` beside it), `scratch/` (the servers' directories, swept by the next
//! agent when one was killed outright).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;
use sha2::{Digest, Sha256};

use super::Host;
use super::agent::{self, Facts};
use super::file::HostSpec;
use super::link::AgentLink;
use super::ssh::Ssh;
use crate::error::UsageError;
use crate::instances::{self, Instance};

/// How long one remote command (a copy included) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// The agent's file name on the host.
const AGENT: &str = "valkey-bench-agent";

/// A host reached over ssh with its agent running.
#[derive(Debug)]
pub struct Remote {
    /// Dropped first: closing it stops the host's servers.
    agent: Arc<AgentLink>,
    ssh: Ssh,
    facts: Facts,
    /// The build key of each server binary shipped, by its local path.
    shipped: Mutex<HashMap<PathBuf, String>>,
    /// What shipping cost so far: bytes copied and files found already there.
    traffic: Mutex<Traffic>,
}

/// What shipping binaries to a host cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub files_copied: u32,
    pub bytes_copied: u64,
    pub files_present: u32,
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
        let here = std::env::consts::ARCH;
        if arch.trim() != here {
            return Err(UsageError(format!(
                "host {name:?} is {} and this machine {here}: shipping a source tarball to build \
                 there is not supported yet; run xtask on a machine of the same architecture",
                arch.trim()
            ))
            .into());
        }
        let work = spec.work_dir.display().to_string();
        ssh.run(
            &format!(
                "mkdir -p {work}/bin {work}/scratch && test -w {work}/bin && test -w {work}/scratch"
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
        let mut traffic = Traffic::default();
        let exe = std::env::current_exe().context("finding this program to ship as the agent")?;
        let key = content_key(&exe)?;
        ship(&ssh, &exe, &key, AGENT, &mut traffic)?;
        let mut cmd = ssh.command(&format!(
            "exec {work}/bin/{key}/{AGENT} agent --work-dir {work} --lease-ms {}",
            agent::LEASE.as_millis()
        ));
        cmd.env_remove("RUST_BACKTRACE");
        let agent = AgentLink::start(cmd, name)?;
        let facts = agent
            .facts()
            .with_context(|| format!("starting the agent on {name:?}"))?;
        Ok(Remote {
            agent,
            ssh,
            facts,
            shipped: Mutex::new(HashMap::new()),
            traffic: Mutex::new(traffic),
        })
    }

    /// What shipping cost so far.
    pub fn traffic(&self) -> Traffic {
        *self.traffic.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key `server` is shipped under, shipping it (and the tools beside it) first if
    /// this run has not.
    fn server_key(&self, server: &Path) -> anyhow::Result<String> {
        let mut shipped = self.shipped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = shipped.get(server) {
            return Ok(key.clone());
        }
        let key = content_key(server)?;
        let mut traffic = self.traffic.lock().unwrap_or_else(|e| e.into_inner());
        ship(&self.ssh, server, &key, "valkey-server", &mut traffic)?;
        for tool in ["valkey-cli", "valkey-benchmark"] {
            let path = server.with_file_name(tool);
            if path.is_file() {
                ship(&self.ssh, &path, &key, tool, &mut traffic)?;
            }
        }
        shipped.insert(server.to_path_buf(), key.clone());
        Ok(key)
    }
}

/// Copies `local` to `<work>/bin/<key>/<name>` on the host unless it is there (written
/// under a temporary name and renamed, so a file there is whole).
fn ship(
    ssh: &Ssh,
    local: &Path,
    key: &str,
    name: &str,
    traffic: &mut Traffic,
) -> anyhow::Result<()> {
    debug_assert!(agent::valid_key(key));
    let dir = format!("{}/bin/{key}", ssh.spec().work_dir.display());
    let present = ssh.run(
        &format!("if [ -x {dir}/{name} ]; then echo present; fi"),
        None,
        Duration::from_secs(30),
    )?;
    if present.trim() == "present" {
        eprintln!(
            "host {}: {name} {key} is there already (0 bytes copied)",
            ssh.name()
        );
        traffic.files_present += 1;
        return Ok(());
    }
    let size = std::fs::metadata(local)?.len();
    eprintln!(
        "host {}: copying {name} ({:.1} MB, content {key})",
        ssh.name(),
        size as f64 / 1e6
    );
    let temp = format!("{dir}/.{name}.{}.tmp", std::process::id());
    ssh.run(
        &format!("mkdir -p {dir} && cat > {temp} && chmod 755 {temp} && mv -f {temp} {dir}/{name}"),
        Some(local),
        COMMAND_TIMEOUT,
    )
    .with_context(|| format!("copying {} to host {:?}", local.display(), ssh.name()))?;
    traffic.files_copied += 1;
    traffic.bytes_copied += size;
    Ok(())
}

/// The first 16 hex digits of the SHA-256 of a file's content: what names it on a host.
pub fn content_key(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
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

    fn start_servers(
        &self,
        server: &Path,
        count: usize,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Vec<Instance>> {
        if options.tls.is_some() {
            return Err(UsageError(format!(
                "--tls with servers on host {:?}: TLS on remote hosts is not supported yet",
                self.ssh.name()
            ))
            .into());
        }
        if !options.wrapper.is_empty() || options.fixed_urandom.is_some() {
            bail!(
                "a profiler or counter around servers on host {:?}: only servers on this machine \
                 can be profiled or counted",
                self.ssh.name()
            );
        }
        if shutdown.is_triggered() {
            bail!("interrupted");
        }
        let key = self.server_key(server)?;
        let options = instances::Options {
            bind: self.address(),
            ..options.clone()
        };
        self.agent.start_servers(&key, count, &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_key_is_its_contents_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"valkey").unwrap();
        std::fs::write(&b, b"valkey").unwrap();
        let key = content_key(&a).unwrap();
        assert_eq!(key.len(), 16);
        assert!(agent::valid_key(&key));
        assert_eq!(key, content_key(&b).unwrap());
        std::fs::write(&b, b"valkey2").unwrap();
        assert_ne!(key, content_key(&b).unwrap());
    }
}
