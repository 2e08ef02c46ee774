//! CPU placement: which CPUs the server and the load generator may run on
//! (`--server-cpus 0 --client-cpus 1`). Lists use the kernel's syntax (`0-3,6`); they
//! are checked against the CPUs this process may use (an absent CPU is refused), against
//! each other (a CPU in both is refused), and against the machine's cores (SMT siblings
//! split between client and server are a warning: they share a core's execution units).

use std::collections::BTreeSet;
use std::fmt;

/// The most CPUs a list may name (a sanity bound, far above this machine).
const MAX_CPU: usize = 4095;

/// A set of CPU ids, written back in canonical form (`0-2,5`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuList(pub BTreeSet<usize>);

impl CpuList {
    /// Parses `0`, `0,2`, `0-3,6`. `what` names the flag or field in errors.
    pub fn parse(text: &str, what: &str) -> Result<CpuList, String> {
        let bad = |why: &str| format!("{what} {text:?}: {why}; give CPU ids like 0, 0,2 or 0-3,6");
        let mut cpus = BTreeSet::new();
        for part in text.split(',') {
            let part = part.trim();
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let number = |t: &str| {
                t.parse::<usize>()
                    .ok()
                    .filter(|&n| n <= MAX_CPU)
                    .ok_or_else(|| bad(&format!("{t:?} is not a CPU id")))
            };
            let (first, last) = (number(first)?, number(last)?);
            if first > last {
                return Err(bad(&format!("the range {first}-{last} runs backwards")));
            }
            cpus.extend(first..=last);
        }
        Ok(CpuList(cpus))
    }

    pub fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<usize> = self.ids().collect();
        let mut i = 0;
        let mut first = true;
        while i < ids.len() {
            let mut j = i;
            while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if j == i {
                write!(f, "{}", ids[i])?;
            } else {
                write!(f, "{}-{}", ids[i], ids[j])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl serde::Serialize for CpuList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CpuList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CpuList, D::Error> {
        let text = String::deserialize(d)?;
        CpuList::parse(&text, "cpu list").map_err(serde::de::Error::custom)
    }
}

/// Where a case's processes run; `None` is unpinned (the scheduler's choice).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// The server's main thread, I/O threads and background threads (`server-cpulist`,
    /// `bio-cpulist`, `aof-rewrite-cpulist`, `bgsave-cpulist`).
    pub server_cpus: Option<CpuList>,
    /// The load generator's worker threads.
    pub client_cpus: Option<CpuList>,
}

/// What the machine offers: the CPUs this process may run on, and per CPU the CPUs of its
/// core (SMT siblings, itself included).
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub allowed: BTreeSet<usize>,
    pub core_of: Vec<(usize, BTreeSet<usize>)>,
}

impl Placement {
    /// Servers on the last CPU this process may use, the generator on the first
    /// (unpinned on one CPU): what a client measuring its own cost, or a server's latency,
    /// needs on a small machine.
    pub fn apart(machine: &Machine) -> Placement {
        let (Some(&first), Some(&last)) = (machine.allowed.first(), machine.allowed.last()) else {
            return Placement::default();
        };
        if first == last {
            return Placement::default();
        }
        let one = |cpu| Some(CpuList([cpu].into_iter().collect()));
        Placement {
            server_cpus: one(last),
            client_cpus: one(first),
        }
    }

    /// Whether either side is pinned.
    pub fn is_pinned(&self) -> bool {
        self.server_cpus.is_some() || self.client_cpus.is_some()
    }

    /// Refuses CPUs the machine does not give us and CPUs named on both sides; returns
    /// warnings (client and server on one core).
    pub fn check(&self, machine: &Machine) -> Result<Vec<String>, String> {
        for (flag, list) in [
            ("--server-cpus", &self.server_cpus),
            ("--client-cpus", &self.client_cpus),
        ] {
            let Some(list) = list else { continue };
            if list.0.is_empty() {
                return Err(format!("{flag}: name at least one CPU"));
            }
            let absent: Vec<String> = list
                .ids()
                .filter(|c| !machine.allowed.contains(c))
                .map(|c| c.to_string())
                .collect();
            if !absent.is_empty() {
                return Err(format!(
                    "{flag} {list}: CPU {} is not available to this process (available: {}); \
                     pick from those",
                    absent.join(", "),
                    CpuList(machine.allowed.clone())
                ));
            }
        }
        let (Some(server), Some(client)) = (&self.server_cpus, &self.client_cpus) else {
            return Ok(Vec::new());
        };
        let both: BTreeSet<usize> = server.0.intersection(&client.0).copied().collect();
        if !both.is_empty() {
            return Err(format!(
                "--server-cpus {server} and --client-cpus {client} both name CPU {}: give \
                 client and server separate CPUs",
                CpuList(both)
            ));
        }
        let mut warnings = Vec::new();
        for (cpu, core) in &machine.core_of {
            if server.0.contains(cpu) {
                let shared: BTreeSet<usize> = core.intersection(&client.0).copied().collect();
                if !shared.is_empty() {
                    warnings.push(format!(
                        "server CPU {cpu} and client CPU {} are one core's hyperthreads: they \
                         share its execution units, so each slows the other",
                        CpuList(shared)
                    ));
                }
            }
        }
        Ok(warnings)
    }

    /// The server settings that pin a server to `server_cpus`.
    pub fn server_config(&self) -> Vec<(String, String)> {
        let Some(cpus) = &self.server_cpus else {
            return Vec::new();
        };
        SERVER_SETTINGS
            .iter()
            .map(|name| (name.to_string(), cpus.to_string()))
            .collect()
    }
}

/// Valkey's affinity settings, all set from `--server-cpus`.
pub const SERVER_SETTINGS: [&str; 4] = [
    "server-cpulist",
    "bio-cpulist",
    "aof-rewrite-cpulist",
    "bgsave-cpulist",
];

/// Restricts the calling thread to `cpus` (nothing when empty).
pub fn pin_thread(cpus: &[usize]) -> std::io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it for ids below
    // CPU_SETSIZE (checked); sched_setaffinity reads `size_of` bytes of it.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::other(format!(
                    "CPU {cpu} is beyond CPU_SETSIZE"
                )));
            }
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs the calling thread may run on (to put back after [`pin_thread`]).
pub fn thread_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid set; sched_getaffinity writes at most
    // `size_of` bytes into it; CPU_ISSET reads inside it for ids below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(t: &str) -> CpuList {
        CpuList::parse(t, "--cpus").unwrap()
    }

    fn machine(cpus: usize, siblings: &[(usize, usize)]) -> Machine {
        Machine {
            allowed: (0..cpus).collect(),
            core_of: (0..cpus)
                .map(|c| {
                    let mut core = BTreeSet::from([c]);
                    for &(a, b) in siblings {
                        if a == c {
                            core.insert(b);
                        }
                        if b == c {
                            core.insert(a);
                        }
                    }
                    (c, core)
                })
                .collect(),
        }
    }

    #[test]
    fn lists_parse_and_print_canonically() {
        assert_eq!(list("0").to_string(), "0");
        assert_eq!(list("3,0-2, 5").to_string(), "0-3,5");
        assert_eq!(list("1,1,2").0.len(), 2);
        for bad in ["", "a", "3-1", "0-", "-1", "99999", "1;2"] {
            let e = CpuList::parse(bad, "--server-cpus").unwrap_err();
            assert!(
                e.contains("--server-cpus") && e.contains("0-3,6"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn absent_and_shared_cpus_are_refused() {
        let two = machine(2, &[]);
        let p = |s: &str, c: &str| Placement {
            server_cpus: (!s.is_empty()).then(|| list(s)),
            client_cpus: (!c.is_empty()).then(|| list(c)),
        };
        assert_eq!(p("0", "1").check(&two), Ok(Vec::new()));
        assert_eq!(p("1", "").check(&two), Ok(Vec::new()));
        let e = p("0", "2").check(&two).unwrap_err();
        assert!(
            e.contains("--client-cpus 2") && e.contains("available: 0-1"),
            "{e}"
        );
        let e = p("0-1", "1").check(&two).unwrap_err();
        assert!(e.contains("both name CPU 1"), "{e}");
        let smt = machine(4, &[(0, 2), (1, 3)]);
        let w = p("0", "2").check(&smt).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("server CPU 0 and client CPU 2"), "{w:?}");
        assert_eq!(p("0", "1").check(&smt), Ok(Vec::new()));
    }

    #[test]
    fn a_pinned_server_gets_every_affinity_setting() {
        let p = Placement {
            server_cpus: Some(list("0-1")),
            client_cpus: None,
        };
        let config = p.server_config();
        assert_eq!(config.len(), 4);
        assert!(config.iter().all(|(_, v)| v == "0-1"));
        assert!(Placement::default().server_config().is_empty());
    }
}

/// A suite file's `[hosts]` table: the hosts file and the hosts its servers and load run
/// on (`--hosts`, `--server-hosts` and `--client-hosts` each replace theirs). Names only:
/// the hosts file says where each host is.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteHosts {
    /// The hosts file, relative to the suite file's directory.
    #[serde(default)]
    pub file: Option<String>,
    /// Where the servers run, as `--server-hosts` names them.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Where the load runs, as `--client-hosts` names them.
    #[serde(default)]
    pub clients: Vec<String>,
}
