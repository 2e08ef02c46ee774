//! A test network of real hosts on this machine: each host is a network namespace of its
//! own, joined to a bridge the test creates (addresses from 198.18.0.0/15, the range set
//! aside for benchmark networks), with its own `sshd` (Debian's openssh-server), host key
//! and work directory. Dropping the network stops the sshds and removes the namespaces
//! and the bridge. Creating one needs root, `ip` and `sshd`: without them the test fails
//! saying why (no silent skip).

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::util::*;

/// One host of the network.
pub struct TestHost {
    pub name: String,
    pub ns: String,
    pub addr: Ipv4Addr,
    /// The interface inside the namespace (where a `tc` constraint goes).
    pub link: String,
    pub work_dir: PathBuf,
    /// `ssh-ed25519 AAAA...`: its host key, as a known_hosts line wants it.
    pub host_key: String,
    sshd: Child,
}

/// Hosts `h1`..`hN`, a hosts file naming them and a known_hosts file with their keys.
pub struct TestNet {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<TestHost>,
    pub hosts_file: PathBuf,
    pub known_hosts: PathBuf,
    bridge: String,
    /// Every namespace made, and the outer end of each veth, removed on drop.
    namespaces: Vec<String>,
    links: Vec<String>,
}

/// Runs a command that must succeed (the network's plumbing), naming it if it does not.
pub fn must(program: &str, args: &[&str]) -> String {
    #[allow(clippy::disallowed_methods)] // the test harness's own plumbing
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): the remote-host tests need it installed (.ci/run installs it)"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new ed25519 key pair at `path` and `path.pub`, without a passphrase.
pub fn keygen(path: &Path) {
    must(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            path.to_str().unwrap(),
        ],
    );
}

/// Why this machine cannot host a test network, if it cannot.
fn cannot() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root (CI runs the tests as root)".into());
    }
    for tool in [
        "/usr/sbin/sshd",
        "/usr/bin/ssh",
        "/usr/bin/ssh-keygen",
        "/usr/bin/ssh-keyscan",
    ] {
        if !Path::new(tool).exists() {
            return Some(format!(
                "{tool} is missing: install openssh-server and openssh-client"
            ));
        }
    }
    None
}

impl TestNet {
    /// A network of `n` hosts, each a server and a client.
    pub fn new(n: usize) -> TestNet {
        if let Some(why) = cannot() {
            panic!("cannot create a test network of hosts: {why}");
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}-{serial}", pid % 100_000);
        // A /24 of 198.18.0.0/15 per network (198.18.x.0 and 198.19.x.0), one no other
        // network here uses.
        let (second, third) = (0..500)
            .map(|i| (pid.wrapping_mul(31).wrapping_add(serial * 7 + i)) % 500)
            .map(|net| (18 + net / 250, 1 + net % 250))
            .find(|(second, third)| {
                must(
                    "ip",
                    &[
                        "-o",
                        "addr",
                        "show",
                        "to",
                        &format!("198.{second}.{third}.0/24"),
                    ],
                )
                .trim()
                .is_empty()
            })
            .expect("a free /24 in 198.18.0.0/15");
        let bridge = format!("vbr{tag}");
        let dir = tempfile::Builder::new()
            .prefix("vb-net-")
            .tempdir()
            .unwrap();
        let mut testnet = TestNet {
            hosts: Vec::new(),
            hosts_file: dir.path().join("hosts.toml"),
            known_hosts: dir.path().join("known_hosts"),
            dir,
            bridge: bridge.clone(),
            namespaces: Vec::new(),
            links: Vec::new(),
        };
        must("ip", &["link", "add", &bridge, "type", "bridge"]);
        // Bridged frames bypass the host's iptables (docker's FORWARD policy, say).
        #[allow(clippy::disallowed_methods)] // the test's own plumbing
        let _ = Command::new("ip")
            .args([
                "link",
                "set",
                &bridge,
                "type",
                "bridge",
                "nf_call_iptables",
                "0",
            ])
            .output();
        must(
            "ip",
            &[
                "addr",
                "add",
                &format!("198.{second}.{third}.1/24"),
                "dev",
                &bridge,
            ],
        );
        must("ip", &["link", "set", &bridge, "up"]);
        let client_key = testnet.dir.path().join("id");
        keygen(&client_key);
        fs::copy(
            testnet.dir.path().join("id.pub"),
            testnet.dir.path().join("authorized_keys"),
        )
        .unwrap();
        fs::create_dir_all("/run/sshd").unwrap();
        for i in 0..n {
            testnet.add_host(
                &tag,
                i,
                Ipv4Addr::new(198, second as u8, third as u8, 10 + i as u8),
            );
        }
        let mut known = String::new();
        for h in &testnet.hosts {
            writeln!(known, "{} {}", h.addr, h.host_key).unwrap();
        }
        fs::write(&testnet.known_hosts, known).unwrap();
        let mut file = String::from("known_hosts = \"known_hosts\"\n");
        for h in &testnet.hosts {
            write!(
                file,
                "\n[[host]]\nname = \"{}\"\naddress = \"{}\"\nuser = \"root\"\nidentity = \"id\"\nwork_dir = \"{}\"\n",
                h.name,
                h.addr,
                h.work_dir.display()
            )
            .unwrap();
        }
        fs::write(&testnet.hosts_file, file).unwrap();
        testnet
    }

    /// Adds host `i` (its namespace and sshd are removed with the network, even when
    /// adding it fails half-way).
    fn add_host(&mut self, tag: &str, i: usize, addr: Ipv4Addr) {
        let name = format!("h{}", i + 1);
        let ns = format!("vbtest-{tag}-{name}");
        let (outside, inside) = (format!("vb{tag}o{i}"), format!("vb{tag}i{i}"));
        must("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.links.push(outside.clone());
        must(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside, "netns", &ns,
            ],
        );
        must("ip", &["link", "set", &outside, "master", &self.bridge]);
        must("ip", &["link", "set", &outside, "up"]);
        must(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inside,
            ],
        );
        must("ip", &["-n", &ns, "link", "set", &inside, "up"]);
        must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        let dir = self.dir.path();
        let key = dir.join(format!("{name}-hostkey"));
        keygen(&key);
        let public = fs::read_to_string(dir.join(format!("{name}-hostkey.pub"))).unwrap();
        let host_key = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let config = dir.join(format!("{name}-sshd_config"));
        fs::write(
            &config,
            format!(
                "Port 22\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile {}\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
                key.display(),
                dir.join("authorized_keys").display(),
                dir.join(format!("{name}-sshd.pid")).display(),
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join(format!("{name}-sshd.log"))).unwrap();
        #[allow(clippy::disallowed_methods)] // the test's own sshd
        let sshd = Command::new("ip")
            .args(["netns", "exec", &ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sshd");
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&SocketAddr::from((addr, 22)), Duration::from_millis(200))
                .is_ok()
        });
        self.hosts.push(TestHost {
            work_dir: dir.join(format!("work-{name}")),
            name: name.clone(),
            ns,
            addr,
            link: inside,
            host_key,
            sshd,
        });
        assert!(
            up,
            "sshd on {addr} did not listen: {}",
            self.sshd_log(&name)
        );
    }

    pub fn sshd_log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("{name}-sshd.log"))).unwrap_or_default()
    }

    /// Caps the host's outgoing traffic (its servers' replies) with a token bucket.
    pub fn shape(&self, host: usize, rate: &str) {
        let h = &self.hosts[host];
        must(
            "ip",
            &[
                "netns", "exec", &h.ns, "tc", "qdisc", "add", "dev", &h.link, "root", "tbf",
                "rate", rate, "burst", "32kbit", "latency", "400ms",
            ],
        );
    }

    /// Live valkey-server processes in this network's work directories.
    pub fn servers(&self) -> Vec<u32> {
        servers_under(self.dir.path())
    }

    /// Live processes whose program is in this network's work directories: the agents
    /// and the servers (an agent's comm is `valkey-bench-ag`).
    pub fn ours(&self) -> Vec<(u32, String)> {
        let dir = self.dir.path();
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(exe) = fs::read_link(entry.path().join("exe")) else {
                continue;
            };
            if exe.starts_with(dir) && pid_alive(pid) {
                found.push((pid, exe.display().to_string()));
            }
        }
        found
    }

    /// Takes host `i`'s link down (its traffic stops; nothing is closed).
    pub fn cut(&self, i: usize) {
        must(
            "ip",
            &[
                "-n",
                &self.hosts[i].ns,
                "link",
                "set",
                &self.hosts[i].link,
                "down",
            ],
        );
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.hosts.clear(); // their sshds stop
        // Whatever the test's sshds left inside (a session whose client's goodbye was
        // still on its way) goes with its namespace: only processes in a namespace this
        // test made, all descendants of its own sshds.
        for ns in &self.namespaces {
            #[allow(clippy::disallowed_methods)] // the test's own plumbing
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill(2) on a process inside our own namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        for ns in &self.namespaces {
            #[allow(clippy::disallowed_methods)] // the test's own plumbing
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        // A namespace lives on while anything holds it, and its veth with it: the outer
        // ends go now.
        for link in &self.links {
            #[allow(clippy::disallowed_methods)]
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
        #[allow(clippy::disallowed_methods)]
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}
