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

    /// The hosts `names` (a `--server-hosts` value, `flag` names it) names, each able to
    /// take `role`; `local` is this machine (`None`). A number `N` instead of names asks
    /// for any N hosts: the first N in the file that may take `role`, are not disabled and
    /// are not in `taken` (the servers' hosts, when picking clients).
    pub fn pick(
        &self,
        names: &str,
        flag: &str,
        role: Role,
        taken: &[HostSpec],
    ) -> Result<Vec<Option<HostSpec>>, UsageError> {
        if let Some(count) = parse_count(names) {
            let count = count.map_err(|why| UsageError(format!("{flag} {names}: {why}")))?;
            let able: Vec<&HostSpec> = self
                .hosts
                .iter()
                .filter(|h| !h.disabled && h.able(role) && !taken.contains(h))
                .collect();
            if able.len() < count {
                let listed: Vec<&str> = able.iter().map(|h| h.name.as_str()).collect();
                return Err(UsageError(format!(
                    "{flag} {count}: the hosts file has {} host(s) with the role {:?}{} ({}); \
                     ask for fewer, or add hosts",
                    able.len(),
                    role.name(),
                    if taken.is_empty() {
                        ""
                    } else {
                        " besides the hosts of the other role"
                    },
                    if listed.is_empty() {
                        "none".to_string()
                    } else {
                        listed.join(", ")
                    }
                )));
            }
            return Ok(able.into_iter().take(count).cloned().map(Some).collect());
        }
        let mut picked = Vec::new();
        let mut seen = Vec::new();
        for name in names.split(',').map(str::trim) {
            if seen.contains(&name) {
                return Err(UsageError(format!(
                    "{flag}: {name:?} is named twice; name each host once"
                )));
            }
            seen.push(name);
            if name == LOCAL {
                picked.push(None);
                continue;
            }
            let Some(host) = self.hosts.iter().find(|h| h.name == name) else {
                let known: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
                return Err(UsageError(format!(
                    "{flag}: no host {name:?} in the hosts file (it has: {}; `local` is this machine)",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if host.disabled {
                return Err(UsageError(format!(
                    "{flag}: host {name:?} is disabled in the hosts file"
                )));
            }
            if !host.able(role) {
                return Err(UsageError(format!(
                    "{flag}: host {name:?} does not have the role {:?} in the hosts file",
                    role.name()
                )));
            }
            picked.push(Some(host.clone()));
        }
        // Load from here and from other hosts together is fine: it goes to the servers'
        // addresses, which every client host reaches.
        if role == Role::Server && picked.len() > 1 && picked.contains(&None) {
            return Err(UsageError(format!(
                "{flag} {names}: `local` and other hosts together: servers here listen on \
                 127.0.0.1, which the other hosts cannot reach; give this machine an entry with \
                 its address on their network"
            )));
        }
        Ok(picked)
    }
}

impl HostSpec {
    /// Whether its roles include `role`.
    pub fn able(&self, role: Role) -> bool {
        match role {
            Role::Server => self.server,
            Role::Client => self.client,
        }
    }
}

/// What a host does in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

/// `Some` when `names` is a number (a count of hosts): `Ok(n)` for 1 to 64.
fn parse_count(names: &str) -> Option<Result<usize, String>> {
    let text = names.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match text.parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err("give a count of hosts from 1 to 64, or their names".into()),
    })
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

    #[test]
    fn picking_names_the_missing_disabled_and_unfit() {
        let file = parse(
            "[[host]]\nname = \"a\"\naddress = \"198.18.0.2\"\nroles = [\"client\"]\n\
             [[host]]\nname = \"b\"\naddress = \"198.18.0.3\"\ndisabled = true\n\
             [[host]]\nname = \"c\"\naddress = \"198.18.0.4\"\n",
        )
        .unwrap();
        let picked = file.pick("c", "--server-hosts", Role::Server, &[]).unwrap();
        assert_eq!(picked[0].as_ref().unwrap().name, "c");
        assert!(
            file.pick("local", "--server-hosts", Role::Server, &[])
                .unwrap()[0]
                .is_none()
        );
        for (names, why) in [
            ("a", "does not have the role \"server\""),
            ("b", "disabled"),
            ("z", "no host \"z\" in the hosts file (it has: a, b, c"),
            ("c,c", "named twice"),
            ("c,local", "`local` and other hosts together"),
        ] {
            let err = file
                .pick(names, "--server-hosts", Role::Server, &[])
                .unwrap_err();
            assert!(err.0.contains(why), "{names}: {err}");
        }
    }

    #[test]
    fn a_count_picks_the_first_able_hosts_and_clients_never_take_a_server_host() {
        let file = parse(
            "[[host]]\nname = \"a\"\naddress = \"198.18.0.2\"\n\
             [[host]]\nname = \"b\"\naddress = \"198.18.0.3\"\ndisabled = true\n\
             [[host]]\nname = \"c\"\naddress = \"198.18.0.4\"\nroles = [\"client\"]\n\
             [[host]]\nname = \"d\"\naddress = \"198.18.0.5\"\n",
        )
        .unwrap();
        let names = |picked: Vec<Option<HostSpec>>| -> Vec<String> {
            picked.into_iter().map(|h| h.unwrap().name).collect()
        };
        let servers = file.pick("2", "--server-hosts", Role::Server, &[]).unwrap();
        assert_eq!(names(servers.clone()), ["a", "d"]);
        let taken: Vec<HostSpec> = servers.into_iter().flatten().collect();
        let clients = file
            .pick("1", "--client-hosts", Role::Client, &taken)
            .unwrap();
        assert_eq!(names(clients), ["c"]);
        let err = file
            .pick("2", "--client-hosts", Role::Client, &taken)
            .unwrap_err();
        assert!(
            err.0.contains(
                "1 host(s) with the role \"client\" besides the hosts of the other role (c)"
            ),
            "{err}"
        );
        let err = file
            .pick("3", "--server-hosts", Role::Server, &[])
            .unwrap_err();
        assert!(
            err.0.contains("2 host(s) with the role \"server\" (a, d)"),
            "{err}"
        );
        for bad in ["0", "65", "99999999999999999999999"] {
            let err = file
                .pick(bad, "--server-hosts", Role::Server, &[])
                .unwrap_err();
            assert!(err.0.contains("from 1 to 64"), "{bad}: {err}");
        }
    }
}
