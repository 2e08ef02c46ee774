//! The hosts file (TOML): the machines a run may use, how to reach them over ssh, and what
//! each may do. Read and checked before anything starts: a bad field is named with its
//! value and the fix (exit 2).
//!
//! ```toml
//! known_hosts = "~/.ssh/known_hosts"   # the default; host keys are always checked
//!
//! [[host]]
//! name = "server-a"                    # how flags and records name it
//! address = "198.18.0.2"               # ssh connects here; servers listen here
//! user = "bench"                       # default: the user running xtask
//! port = 22
//! identity = "~/.ssh/bench_ed25519"    # default: ssh's own choice (agent, config)
//! work_dir = "/var/tmp/valkey-bench-bench"   # binaries and servers' directories; the
//!                                            # default is /var/tmp/valkey-bench-<user>
//! roles = ["server", "client"]         # the default: both
//! server_cpus = "0-3"                  # pin servers here on that host
//! client_cpus = "4-7"
//! build = "auto"                       # ship our build, or build from its source there
//!                                      # when it cannot run there; "ship"; "host"
//! agent = "bin/xtask-aarch64"          # the agent for a host of another architecture:
//!                                      # xtask built for it from this commit
//! disabled = false
//! ```
//!
//! Paths are relative to the file's directory; `~/` is the user's home. Every value that
//! reaches a remote command (the work directory) is limited to characters no shell
//! interprets, so nothing in the file can become a command there.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use bench_core::placement::CpuList;
use serde::Deserialize;

use crate::error::UsageError;

/// The environment variable naming the hosts file when `--hosts` does not.
pub const HOSTS_ENV: &str = "VALKEY_BENCH_HOSTS";

/// The name that always means this machine (`--server-hosts local`).
pub const LOCAL: &str = "local";

/// The default work directory on a host: this, then `-<user>`.
pub const DEFAULT_WORK_DIR: &str = "/var/tmp/valkey-bench";

/// A checked hosts file.
#[derive(Clone, Debug, PartialEq)]
pub struct HostsFile {
    /// Where host keys are checked against.
    pub known_hosts: PathBuf,
    pub hosts: Vec<HostSpec>,
}

/// One host, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSpec {
    pub name: String,
    pub address: IpAddr,
    pub user: String,
    pub port: u16,
    pub identity: Option<PathBuf>,
    pub work_dir: PathBuf,
    pub server: bool,
    pub client: bool,
    pub server_cpus: Option<CpuList>,
    pub client_cpus: Option<CpuList>,
    pub build: BuildOn,
    /// The xtask to run there as the agent (default: this program).
    pub agent: Option<PathBuf>,
    pub disabled: bool,
}

/// Where a host's Valkey binaries come from: ours, copied there, and built there from the
/// same source when ours cannot run there (`Auto`); ours or nothing (`Ship`); built
/// there (`Host`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BuildOn {
    #[default]
    Auto,
    Ship,
    Host,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    known_hosts: Option<String>,
    #[serde(default)]
    host: Vec<RawHost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    address: String,
    user: Option<String>,
    port: Option<u16>,
    identity: Option<String>,
    work_dir: Option<String>,
    roles: Option<Vec<String>>,
    server_cpus: Option<String>,
    client_cpus: Option<String>,
    build: Option<String>,
    agent: Option<String>,
    #[serde(default)]
    disabled: bool,
}

impl HostsFile {
    /// Reads and checks `path`. A host without `user` is the user running xtask (`USER`).
    pub fn read(path: &Path) -> Result<HostsFile, UsageError> {
        let text = crate::untrusted::read_small_text(path)
            .map_err(|e| UsageError(format!("--hosts {}: {e:#}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        HostsFile::parse(
            &text,
            base,
            &home(),
            &std::env::var("USER").unwrap_or_default(),
        )
        .and_then(|file| {
            // An agent that cannot run anywhere is a mistake in the file: say so now.
            for h in file.hosts.iter().filter(|h| !h.disabled) {
                if let Some(agent) = &h.agent {
                    crate::host::agent_binary::AgentBinary::named(agent)
                        .map_err(|why| format!("host {:?}: agent {why}", h.name))?;
                }
            }
            Ok(file)
        })
        .map_err(|why| UsageError(format!("hosts file {}: {why}", path.display())))
    }

    /// Checks `text`; relative paths are under `base`, `~/` under `home`, and a host
    /// without `user` gets `user`.
    pub fn parse(text: &str, base: &Path, home: &Path, user: &str) -> Result<HostsFile, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
        // ssh expands `%x` and `${X}` in these paths and splits them at spaces and commas:
        // none of those may be in them.
        let path = |field: &str, value: &str| -> Result<PathBuf, String> {
            if value.is_empty() {
                return Err(format!("{field} is empty: give a path"));
            }
            let path = match value.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => base.join(value),
            };
            let text = path.to_str().unwrap_or("\u{0}");
            if text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "%$\"'\\,=#".contains(c))
            {
                return Err(format!(
                    "{field} {value:?} (as {text:?}): a path without spaces, quotes, '%', '$', \
                     ',', '=' or '#' (ssh would read them)"
                ));
            }
            Ok(path)
        };
        let known_hosts = match &raw.known_hosts {
            Some(v) => path("known_hosts", v)?,
            None => home.join(".ssh").join("known_hosts"),
        };
        let mut hosts: Vec<HostSpec> = Vec::new();
        for (i, h) in raw.host.into_iter().enumerate() {
            let at = format!("host {} ({:?})", i + 1, h.name);
            if !valid_name(&h.name) {
                return Err(format!(
                    "host {}: name {:?}: use letters, digits, '-' and '_' (up to 32), not {LOCAL:?} \
                     and not a number alone (a number asks for a count of hosts)",
                    i + 1,
                    h.name
                ));
            }
            if hosts.iter().any(|o| o.name == h.name) {
                return Err(format!(
                    "{at}: the name is used twice; give each host its own"
                ));
            }
            let address: IpAddr = h.address.parse().map_err(|_| {
                format!(
                    "{at}: address {:?}: give the IP address its servers listen on, e.g. 198.18.0.2",
                    h.address
                )
            })?;
            if address.is_unspecified() || address.is_multicast() {
                return Err(format!(
                    "{at}: address {address}: give the host's own address"
                ));
            }
            let user = match h.user {
                Some(user) => user,
                None if valid_user(user) => user.to_string(),
                None => {
                    return Err(format!(
                        "{at}: no `user`, and the USER environment variable gives none ({user:?}): \
                         name the ssh user"
                    ));
                }
            };
            if !valid_user(&user) {
                return Err(format!(
                    "{at}: user {user:?}: use letters, digits, '.', '-' and '_', not starting with '-'"
                ));
            }
            if h.port == Some(0) {
                return Err(format!("{at}: port 0: give the ssh port, e.g. 22"));
            }
            let work_dir = match &h.work_dir {
                Some(dir) => PathBuf::from(dir),
                None => PathBuf::from(format!("{DEFAULT_WORK_DIR}-{user}")),
            };
            if let Err(why) = check_work_dir(&work_dir) {
                return Err(format!("{at}: work_dir {:?}: {why}", work_dir.display()));
            }
            let (mut server, mut client) = (true, true);
            if let Some(roles) = &h.roles {
                if roles.is_empty() {
                    return Err(format!(
                        "{at}: roles is empty: give \"server\", \"client\" or both"
                    ));
                }
                (server, client) = (false, false);
                for role in roles {
                    match role.as_str() {
                        "server" => server = true,
                        "client" => client = true,
                        other => {
                            return Err(format!(
                                "{at}: role {other:?}: expected \"server\" or \"client\""
                            ));
                        }
                    }
                }
            }
            let cpus = |field: &str, v: &Option<String>| {
                v.as_deref()
                    .map(|t| CpuList::parse(t, field).map_err(|why| format!("{at}: {why}")))
                    .transpose()
            };
            let build = match h.build.as_deref() {
                None | Some("auto") => BuildOn::Auto,
                Some("ship") => BuildOn::Ship,
                Some("host") => BuildOn::Host,
                Some(other) => {
                    return Err(format!(
                        "{at}: build {other:?}: expected \"auto\" (the default), \"ship\" or \"host\""
                    ));
                }
            };
            hosts.push(HostSpec {
                build,
                server_cpus: cpus("server_cpus", &h.server_cpus)?,
                client_cpus: cpus("client_cpus", &h.client_cpus)?,
                identity: h
                    .identity
                    .as_deref()
                    .map(|v| path("identity", v))
                    .transpose()
                    .map_err(|why| format!("{at}: {why}"))?,
                agent: (h.agent.as_deref().map(|v| path("agent", v)).transpose())
                    .map_err(|why| format!("{at}: {why}"))?,
                name: h.name,
                address,
                user,
                port: h.port.unwrap_or(22),
                work_dir,
                server,
                client,
                disabled: h.disabled,
            });
        }
        Ok(HostsFile { known_hosts, hosts })
    }
}

/// A name is not a number: a number asks for a count of hosts.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name != LOCAL
        && !name.bytes().all(|b| b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 32
        && !user.starts_with('-')
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A work directory goes into remote commands: absolute, made of characters no shell
/// interprets, no `..`.
pub fn check_work_dir(dir: &Path) -> Result<(), String> {
    let text = dir.to_str().unwrap_or("");
    if !text.starts_with('/') || text == "/" {
        return Err("give an absolute directory below /, e.g. /var/tmp/valkey-bench".into());
    }
    if text.len() > 200 {
        return Err("too long (over 200 characters)".into());
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    {
        return Err("use letters, digits, '/', '.', '-' and '_' only".into());
    }
    if dir
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
        || text.contains("/./")
        || text.ends_with("/.")
    {
        return Err("no '.' or '..' parts".into());
    }
    Ok(())
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostsFile, String> {
        HostsFile::parse(text, Path::new("/etc/bench"), Path::new("/home/me"), "me")
    }

    #[test]
    fn a_full_host_is_read_with_its_defaults() {
        let file = parse(
            r#"
            [[host]]
            name = "a"
            address = "198.18.0.2"
            identity = "keys/id"
            server_cpus = "0-1"

            [[host]]
            name = "b"
            address = "198.18.0.3"
            user = "bench"
            port = 2222
            roles = ["client"]
            work_dir = "/srv/vb"
            disabled = true
            "#,
        )
        .unwrap();
        assert_eq!(file.known_hosts, Path::new("/home/me/.ssh/known_hosts"));
        let a = &file.hosts[0];
        assert_eq!(a.user, "me");
        assert_eq!(a.port, 22);
        assert_eq!(a.identity.as_deref(), Some(Path::new("/etc/bench/keys/id")));
        assert_eq!(a.work_dir, Path::new("/var/tmp/valkey-bench-me"));
        assert!(a.server && a.client);
        assert_eq!(a.server_cpus.as_ref().unwrap().0.len(), 2);
        let b = &file.hosts[1];
        assert_eq!((b.user.as_str(), b.port), ("bench", 2222));
        assert!(!b.server && b.client && b.disabled);
    }

    #[test]
    fn each_bad_field_is_named_with_its_value() {
        let host =
            |extra: &str| format!("[[host]]\nname = \"a\"\naddress = \"198.18.0.2\"\n{extra}");
        let cases = [
            (host("work_dir = \"/tmp/$(reboot)\""), "work_dir"),
            (host("work_dir = \"relative\""), "absolute"),
            (host("work_dir = \"/a/../b\""), "'..'"),
            (host("user = \"-oProxyCommand=x\""), "user"),
            (host("roles = [\"admin\"]"), "role \"admin\""),
            (host("roles = []"), "roles is empty"),
            (host("port = 0"), "port 0"),
            (host("server_cpus = \"x\""), "server_cpus"),
            (host("colour = 1"), "colour"),
            (host("identity = \"keys/a b\""), "identity \"keys/a b\""),
            (host("identity = \"%d/key\""), "'%'"),
            (
                "[[host]]\nname = \"a\"\naddress = \"server.example\"\n".into(),
                "address \"server.example\"",
            ),
            (
                "[[host]]\nname = \"a b\"\naddress = \"198.18.0.2\"\n".into(),
                "name \"a b\"",
            ),
            (
                "[[host]]\nname = \"local\"\naddress = \"198.18.0.2\"\n".into(),
                "name \"local\"",
            ),
            (host("") + &host(""), "used twice"),
            (host("build = \"there\""), "build \"there\""),
            (
                "[[host]]\nname = \"2\"\naddress = \"198.18.0.2\"\n".into(),
                "not a number alone",
            ),
            (
                "[[host]]\nname = \"a\"\naddress = \"0.0.0.0\"\n".into(),
                "own address",
            ),
        ];
        for (text, named) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(named), "{text:?}: {err}");
        }
    }
}
