//! Picking a run's hosts from the hosts file: by name (`--server-hosts a,b`), or by count
//! (`--server-hosts 3`: the first three able hosts, never one the other role took).

use super::file::{HostSpec, HostsFile, LOCAL};
use crate::error::UsageError;

impl HostsFile {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<HostsFile, String> {
        HostsFile::parse(text, Path::new("/etc/bench"), Path::new("/home/me"), "me")
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
