//! `cargo xtask start`: run local instances (or one topology: a replication group, a
//! cluster) until Ctrl-C or SIGTERM, then tear them down.

use std::thread;
use std::time::Duration;

use anyhow::bail;
use bench_core::shutdown::Shutdown;
use clap::Args;
use serde_json::json;

use super::{TopologyArgs, ValkeyArgs};
use crate::instances::{self, Instance};
use crate::topology::{self, Role, cluster};
use bench_core::topology::TopologySpec;

#[derive(Args, Debug)]
pub struct StartCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
    /// How many independent instances (without --topology).
    #[arg(long, default_value_t = 1, conflicts_with = "topology")]
    pub count: usize,
    /// The first port tried; ports in use are skipped.
    #[arg(long, default_value_t = 9000)]
    pub base_port: u16,
    /// Pin every server (main, I/O and background threads) to these CPUs, e.g. 0-1.
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<String>,
    /// Extra server configuration, name=value (repeatable), e.g. io-threads=4.
    #[arg(long = "server-config", value_name = "NAME=VALUE")]
    pub server_config: Vec<String>,
    /// Print the instances as one JSON line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub hosts: super::HostsArgs,
}

impl StartCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        if self.count == 0 {
            return Err(
                crate::error::UsageError("--count 0: start at least one instance".into()).into(),
            );
        }
        let choice = self.hosts.choice()?;
        if self.hosts.client_hosts.is_some() {
            return Err(crate::error::UsageError(
                "--client-hosts: start runs no load; name the servers' hosts with --server-hosts"
                    .into(),
            )
            .into());
        }
        if !choice.is_local() && self.server_cpus.is_some() {
            return Err(crate::error::UsageError(
                "--server-cpus with --server-hosts: those are this machine's CPUs (pin there \
                 with `server_cpus` in the hosts file)"
                    .into(),
            )
            .into());
        }
        let spec = self.topology.spec()?;
        let read_from = self.topology.read_from(spec.unwrap_or_default())?;
        let mut config = super::parse_server_config(&self.server_config)?;
        let placement = bench_core::placement::Placement {
            server_cpus: self
                .server_cpus
                .as_deref()
                .map(|t| bench_core::placement::CpuList::parse(t, "--server-cpus"))
                .transpose()
                .map_err(crate::error::UsageError)?,
            client_cpus: None,
        };
        placement
            .check(&crate::host::machine())
            .map_err(crate::error::UsageError)?;
        config.extend(placement.server_config());
        // The hosts first: a refused host key stops before a build.
        let hosts = choice.connect(shutdown)?;
        let binaries = self.valkey.binaries(shutdown)?;
        let material = instances::tls_material(
            self.topology.tls(self.valkey.tls),
            &hosts.servers.addresses(),
        )?;
        let options = instances::Options {
            base_port: self.base_port,
            config,
            tls: material.clone(),
            ..Default::default()
        };
        // (role, instance) per node: independent instances are each a primary.
        let mut running: Vec<(String, Instance)> = match spec {
            None => hosts
                .servers
                .first()
                .start_servers(&binaries, self.count, &options, shutdown)?
                .into_iter()
                .map(|i| ("primary".to_string(), i))
                .collect(),
            Some(spec) => {
                let deployment = topology::from_spec(spec, read_from).deploy(
                    &hosts.servers,
                    &binaries,
                    &options,
                    shutdown,
                )?;
                let names = match spec {
                    TopologySpec::Cluster { .. } => cluster::node_names(&deployment.nodes),
                    _ => deployment
                        .nodes
                        .iter()
                        .map(|n| match n.role {
                            Role::Primary => "primary".to_string(),
                            Role::Replica => "replica".to_string(),
                        })
                        .collect(),
                };
                names
                    .into_iter()
                    .zip(deployment.nodes.into_iter().map(|n| n.instance))
                    .collect()
            }
        };
        let topology = spec.map_or_else(|| format!("{} standalone", self.count), |t| t.to_string());
        if self.json {
            let list: Vec<_> = running
                .iter()
                .map(|(role, i)| {
                    json!({"role": role, "host": i.host(), "addr": i.addr, "port": i.port(), "pid": i.pid(), "dir": i.dir(), "log": i.log_path()})
                })
                .collect();
            let tls = material.as_ref().map(|m| {
                let files = m.client().files();
                json!({
                    "ca": m.ca,
                    "auth_clients": m.mode.auth_clients,
                    "client_cert": files.and_then(|f| f.identity.as_ref()).map(|i| &i.0),
                    "client_key": files.and_then(|f| f.identity.as_ref()).map(|i| &i.1),
                })
            });
            println!(
                "{}",
                json!({"version": binaries.version, "topology": topology, "instances": list, "tls": tls})
            );
        } else {
            println!("{topology}:");
            for (role, i) in &running {
                let on = if i.is_local() {
                    String::new()
                } else {
                    format!(" on host {}", i.host())
                };
                println!(
                    "valkey-server {} {role} at {}{on} (pid {}, log {})",
                    binaries.version,
                    i.addr,
                    i.pid(),
                    i.log_path().display()
                );
            }
            let tls_flags = material.as_ref().map_or_else(String::new, |m| {
                format!(
                    " {}",
                    bench_core::loadgen::engine::tls_flags(m.client()).join(" ")
                )
            });
            if let Some(m) = &material {
                println!(
                    "TLS only (port 0), CA {}{}",
                    m.ca.display(),
                    if m.mode.auth_clients {
                        "; clients must present a certificate signed by it"
                    } else {
                        ""
                    }
                );
            }
            let port = running[0].1.port();
            if spec.is_some_and(TopologySpec::is_cluster) {
                eprintln!(
                    "drive it with: cargo xtask loadgen --cluster --port {port}{tls_flags} (any node will do)"
                );
            } else if material.is_some() {
                eprintln!("drive it with: cargo xtask loadgen --port {port}{tls_flags}");
            }
            eprintln!("press Ctrl-C to stop");
        }
        while !shutdown.is_triggered() {
            for (_, i) in running.iter_mut() {
                // A signal's handler stops every server (and on other hosts their
                // connection) at once: then a stopped server is the signal's doing.
                if !i.is_running() && !shutdown.is_triggered() {
                    bail!(
                        "valkey-server on port {} exited; last log lines:\n{}",
                        i.port(),
                        i.log_tail(20)
                    );
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        drop(running);
        drop(hosts);
        eprintln!("stopped");
        Ok(())
    }
}
