//! One host's ssh connection: the system OpenSSH client, one master connection per host
//! (ControlMaster) that every later command and the agent's channel ride on, batch mode
//! (never a prompt) and host keys always checked against one known_hosts file
//! (`StrictHostKeyChecking yes`: an unknown or changed key is refused, never added).
//!
//! The master is our child like any other (`process`): it ends with the run, and with it
//! every command riding on it. Remote commands are built here from values limited to
//! characters no shell interprets (`file::check_work_dir`, hex keys), so nothing read
//! from a file or a flag can become a command on the host.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench_core::shutdown::Shutdown;

use super::file::HostSpec;
use crate::error::UsageError;
use crate::process::{self, Guarded};

/// How long connecting (and logging in) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A live master connection to one host.
#[derive(Debug)]
pub struct Ssh {
    spec: HostSpec,
    known_hosts: PathBuf,
    /// The master; dropped (killed) before its socket's directory.
    master: std::sync::Mutex<Guarded>,
    /// Holds the control socket and the master's stderr.
    dir: tempfile::TempDir,
}

impl Ssh {
    /// Connects and logs in, checking the host key. Every failure names the host and says
    /// what to do (exit 2).
    pub fn connect(
        spec: &HostSpec,
        known_hosts: &Path,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Ssh> {
        let name = &spec.name;
        if !known_hosts.is_file() {
            return Err(UsageError(format!(
                "host {name:?}: the known_hosts file {} does not exist. Host keys are always \
                 checked: add the host's key after checking its fingerprint (ssh-keyscan -p {} \
                 {} >> {}), or name another file with `known_hosts` in the hosts file",
                known_hosts.display(),
                spec.port,
                spec.address,
                known_hosts.display()
            ))
            .into());
        }
        if let Some(identity) = &spec.identity
            && crate::untrusted::open_regular(identity).is_err()
        {
            return Err(UsageError(format!(
                "host {name:?}: identity {} cannot be read: give the path of a private key",
                identity.display()
            ))
            .into());
        }
        // Short: a unix socket's path has a limit of about 100 bytes.
        let dir = tempfile::Builder::new()
            .prefix("vb-ssh-")
            .tempdir()
            .context("creating a directory for the ssh control socket")?;
        let stderr_path = dir.path().join("master.err");
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut cmd = process::command("ssh");
        cmd.args(["-M", "-N", "-o", "ControlPersist=no"])
            .args(options(spec, known_hosts, &dir.path().join(CONTROL)))
            .arg(spec.address.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let ssh = Ssh {
            spec: spec.clone(),
            known_hosts: known_hosts.to_path_buf(),
            master: std::sync::Mutex::new(Guarded::spawn(cmd, format!("ssh to {name}"))?),
            dir,
        };
        let started = Instant::now();
        loop {
            if shutdown.is_triggered() {
                anyhow::bail!("interrupted");
            }
            if ssh.exited()? {
                let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(ssh.refused(&said, shutdown).into());
            }
            if ssh.control_check() {
                return Ok(ssh);
            }
            if started.elapsed() > CONNECT_TIMEOUT {
                return Err(UsageError(format!(
                    "host {name:?} ({}) did not answer ssh within {CONNECT_TIMEOUT:?}: is it \
                     up and reachable?",
                    std::net::SocketAddr::new(spec.address, spec.port)
                ))
                .into());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The host's name in the hosts file.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &HostSpec {
        &self.spec
    }

    /// Whether the master connection ended.
    fn exited(&self) -> anyhow::Result<bool> {
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        Ok(master.try_wait()?.is_some())
    }

    /// The options of a command riding on the master: never a master itself (a user's
    /// `ControlMaster auto` with `ControlPersist` would leave one running in the
    /// background, outside our process group).
    fn options(&self) -> Vec<OsString> {
        let mut o = options(
            &self.spec,
            &self.known_hosts,
            &self.dir.path().join(CONTROL),
        );
        o.extend(["-o".into(), "ControlMaster=no".into()]);
        o.extend(["-o".into(), "ControlPersist=no".into()]);
        o
    }

    fn destination(&self) -> String {
        self.spec.address.to_string()
    }

    fn control_check(&self) -> bool {
        let mut cmd = process::command("ssh");
        cmd.args(self.options())
            .args(["-O", "check"])
            .arg(self.destination());
        process::output(cmd, "ssh -O check", &Shutdown::new(), Some(CONNECT_TIMEOUT))
            .is_ok_and(|o| o.status.success())
    }

    /// A command that runs `remote` on the host over the master connection. `remote`
    /// reaches the host's shell: build it from checked values only.
    pub fn command(&self, remote: &str) -> Command {
        let mut cmd = process::command("ssh");
        cmd.args(self.options())
            .arg(self.destination())
            .arg("--")
            .arg(remote);
        cmd
    }

    /// Runs `remote` to its end, with `input` as its stdin; its stdout, or an error with
    /// what it printed.
    pub fn run(
        &self,
        remote: &str,
        input: Option<&Path>,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let mut cmd = self.command(remote);
        if let Some(path) = input {
            cmd.stdin(
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
            );
        }
        let out = process::output(
            cmd,
            &format!("ssh to {}", self.spec.name),
            &Shutdown::new(),
            Some(timeout),
        )?;
        if !out.status.success() {
            anyhow::bail!(
                "on host {:?}: `{remote}` failed ({}): {}",
                self.spec.name,
                out.status,
                process::tail(&out.stderr, 5)
            );
        }
        Ok(out.stdout)
    }

    /// Why the master ended, said for the user.
    fn refused(&self, said: &str, shutdown: &Shutdown) -> UsageError {
        let s = &self.spec;
        let name = &s.name;
        let at = std::net::SocketAddr::new(s.address, s.port).to_string();
        let known = self.known_hosts.display();
        let said_tail = process::tail(said.trim(), 4);
        UsageError(match classify(said) {
            Refusal::ChangedKey(fingerprint) => format!(
                "host {name:?} ({at}): its host key CHANGED (it now presents {}); nothing was \
                 started. If the host was reinstalled, check the new key with its owner and \
                 replace its line in {known}; otherwise someone may be in the way",
                fingerprint.unwrap_or_else(|| "a key ssh did not name".into())
            ),
            Refusal::UnknownKey => format!(
                "host {name:?} ({at}): its host key is not in {known} (it presents {}); \
                 nothing was started. Check the fingerprint with the host's owner, then add \
                 it: ssh-keyscan -p {} {} >> {known}",
                fingerprint_of(s, shutdown).unwrap_or_else(|| "a key we could not read".into()),
                s.port,
                s.address
            ),
            Refusal::Login => format!(
                "host {name:?} ({at}): the login as {:?} was refused ({said_tail}): check `user` \
                 and `identity` in the hosts file (ssh runs in batch mode: no password prompt)",
                s.user
            ),
            Refusal::Unreachable => {
                format!("host {name:?} ({at}) cannot be reached over ssh: {said_tail}")
            }
            Refusal::Other => format!("host {name:?} ({at}): ssh failed: {said_tail}"),
        })
    }
}

/// The control socket's name in the connection's directory.
const CONTROL: &str = "control";

/// The options every ssh of ours passes: the user's own configuration still applies (a
/// jump host, ciphers), but these win (ssh takes the first value it reads, and the command
/// line comes first).
fn options(spec: &HostSpec, known_hosts: &Path, control: &Path) -> Vec<OsString> {
    let mut o: Vec<OsString> = Vec::new();
    let mut opt = |k: &str, v: &dyn AsRef<std::ffi::OsStr>| {
        o.push("-o".into());
        let mut s = OsString::from(format!("{k}="));
        s.push(v.as_ref());
        o.push(s);
    };
    opt("BatchMode", &"yes");
    opt("StrictHostKeyChecking", &"yes");
    opt("UserKnownHostsFile", &known_hosts);
    opt("GlobalKnownHostsFile", &"/dev/null");
    opt("UpdateHostKeys", &"no");
    opt("ConnectTimeout", &"10");
    opt("ServerAliveInterval", &"2");
    opt("ServerAliveCountMax", &"3");
    opt("ControlPath", &control);
    opt("RequestTTY", &"no");
    opt("ForwardAgent", &"no");
    opt("ForwardX11", &"no");
    opt("ClearAllForwardings", &"yes");
    if let Some(identity) = &spec.identity {
        opt("IdentitiesOnly", &"yes");
        opt("IdentityFile", identity);
    }
    o.extend(["-p".into(), spec.port.to_string().into()]);
    o.extend(["-l".into(), spec.user.clone().into()]);
    o
}

/// Why ssh gave up, read from what it printed.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// With the fingerprint the host now presents, when ssh printed it.
    ChangedKey(Option<String>),
    UnknownKey,
    Login,
    Unreachable,
    Other,
}

fn classify(said: &str) -> Refusal {
    if said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        let fingerprint = said
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(|w| w.trim_end_matches('.').to_string());
        return Refusal::ChangedKey(fingerprint);
    }
    if said.contains("host key is known for")
        || said.contains("Host key verification failed")
        || said.contains("No matching host key")
    {
        return Refusal::UnknownKey;
    }
    if said.contains("Permission denied") || said.contains("Too many authentication failures") {
        return Refusal::Login;
    }
    if [
        "Connection refused",
        "timed out",
        "No route to host",
        "Network is unreachable",
        "Could not resolve",
    ]
    .iter()
    .any(|m| said.contains(m))
    {
        return Refusal::Unreachable;
    }
    Refusal::Other
}

/// The fingerprints of the keys the host presents (`ssh-keyscan`, then `ssh-keygen -l`),
/// for a message: what the user compares with the host owner's.
fn fingerprint_of(spec: &HostSpec, shutdown: &Shutdown) -> Option<String> {
    let mut scan = process::command("ssh-keyscan");
    scan.args([
        "-T",
        "5",
        "-p",
        &spec.port.to_string(),
        &spec.address.to_string(),
    ]);
    let keys =
        process::output(scan, "ssh-keyscan", shutdown, Some(Duration::from_secs(10))).ok()?;
    if keys.stdout.trim().is_empty() {
        return None;
    }
    let file = tempfile::NamedTempFile::new().ok()?;
    std::fs::write(file.path(), &keys.stdout).ok()?;
    let mut keygen = process::command("ssh-keygen");
    keygen.arg("-l").arg("-f").arg(file.path());
    let listed = process::output(
        keygen,
        "ssh-keygen",
        shutdown,
        Some(Duration::from_secs(10)),
    )
    .ok()?;
    let prints: Vec<String> = listed
        .stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let print = words.nth(1)?;
            let kind = l.rsplit(' ').next().unwrap_or("");
            Some(format!("{print} {kind}"))
        })
        .collect();
    (!prints.is_empty()).then(|| prints.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_ssh_printed_says_why_it_gave_up() {
        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            The fingerprint for the ED25519 key sent by the remote host is\n\
            SHA256:abcDEF123.\nPlease contact your system administrator.\n\
            Host key verification failed.\n";
        assert_eq!(
            classify(changed),
            Refusal::ChangedKey(Some("SHA256:abcDEF123".into()))
        );
        assert_eq!(
            classify(
                "No ED25519 host key is known for [198.18.0.2]:22 and you have requested strict checking.\nHost key verification failed.\n"
            ),
            Refusal::UnknownKey
        );
        assert_eq!(
            classify("bench@198.18.0.2: Permission denied (publickey)."),
            Refusal::Login
        );
        assert_eq!(
            classify("ssh: connect to host 198.18.0.9 port 22: Connection refused"),
            Refusal::Unreachable
        );
        assert_eq!(classify("something else"), Refusal::Other);
    }
}
