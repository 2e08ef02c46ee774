//! `cargo xtask loadgen`: drive any server with the native generator; a live line per
//! second, then a table per command (or `--json`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::loadgen::{self, ClusterOptions, RunOptions, Stop};
use bench_core::shutdown::Shutdown;
use bench_core::tables;
use bench_core::transport::{Tls, TlsFiles};
use clap::Args;

use super::WorkloadArgs;
use crate::error::UsageError;
use crate::events::{Event, Sink, Sinks};
use crate::views::prometheus::Metrics;

#[derive(Args, Debug)]
pub struct LoadgenCmd {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// The server is a node of a cluster: read the slot map from it, open connections to
    /// every primary, and send each request to its slot's owner (following MOVED / ASK).
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: `replicas` sends read-only commands to the replicas (READONLY).
    #[arg(long, value_name = "primaries|replicas", requires = "cluster")]
    pub read_from: Option<String>,
    /// With --cluster: a multi-key command whose keys have no hash tag (MSET) gets one per
    /// connection (`{cN}` before each key), so one request's keys share a slot; without
    /// this flag such a command is refused.
    #[arg(long, requires = "cluster")]
    pub cluster_tag_keys: bool,
    /// Speak TLS, trusting the CA certificate(s) in this PEM file (e.g. the `ca.crt`
    /// `start --tls` prints).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: present this client certificate (PEM; servers with
    /// `tls-auth-clients yes` require one).
    #[arg(long, value_name = "FILE", requires = "tls_ca", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With --tls-ca: the name the server's certificate must carry (default: the address
    /// connected to).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    #[command(flatten)]
    pub load: WorkloadArgs,
    /// The hosts file for --client-hosts (default $VALKEY_BENCH_HOSTS; docs/hosts.md).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Run the generator on these hosts of the hosts file (`local` is this machine), the
    /// connections (and an open loop's schedule) divided among them, their measurements
    /// merged into one: every percentile is of all their requests.
    #[arg(long, value_name = "X[,Y,...]")]
    pub client_hosts: Option<String>,
    /// Open loop at this many requests per second in total (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds to measure (default 10 unless --requests).
    #[arg(long, conflicts_with = "requests")]
    pub duration: Option<f64>,
    /// Requests to send instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seconds of discarded load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Generator threads.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Master seed (overrides the workload's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the full report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the full JSON report to this file (atomically; kept when the run ends
    /// early, with `partial` set).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics while the run goes on (replies so
    /// far and per second), and its requests, errors and latency histograms by command
    /// once it ends.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// With --metrics-addr: keep serving this many seconds after the run, so a scraper
    /// reads its final figures.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "SECONDS",
        requires = "metrics_addr"
    )]
    pub metrics_linger: f64,
}

impl LoadgenCmd {
    /// The TLS configuration the flags give, read from their files.
    fn tls(&self) -> anyhow::Result<Option<Tls>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let read = |flag: &str, path: &PathBuf| -> anyhow::Result<Vec<u8>> {
            std::fs::read(path).map_err(|e| {
                UsageError(format!("{flag} {}: cannot read it: {e}", path.display())).into()
            })
        };
        let ca_pem = read("--tls-ca", ca)?;
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((read("--tls-cert", cert)?, read("--tls-key", key)?)),
            _ => None,
        };
        let tls = Tls::new(
            &ca_pem,
            identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
            self.tls_server_name.as_deref(),
        )
        .map_err(|e| UsageError(format!("--tls-ca / --tls-cert / --tls-key: {e}")))?;
        Ok(Some(tls.with_files(TlsFiles {
            ca: ca.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
        })))
    }

    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let (spec, pipeline) = self.load.resolve(self.seed)?;
        let addr: SocketAddr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("--host {}: cannot resolve", self.host))?
            .next()
            .with_context(|| format!("--host {}: no address", self.host))?;
        let seconds = |flag: &str, s: f64| -> anyhow::Result<Duration> {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| d.as_secs_f64() <= super::MAX_SECONDS)
                .ok_or_else(|| {
                    UsageError(format!(
                        "{flag} {s}: give a number of seconds from 0 to {} (7 days)",
                        super::MAX_SECONDS
                    ))
                    .into()
                })
        };
        let stop = match (self.requests, self.duration) {
            (Some(n), _) => Stop::Requests(n),
            (None, d) => Stop::Duration(seconds("--duration", d.unwrap_or(10.0))?),
        };
        let options = RunOptions {
            connections: self.load.clients,
            pipeline,
            threads: self.threads,
            rate: self.rate,
            stop,
            warmup: seconds("--warmup", self.warmup)?,
            cluster: match &self.read_from {
                _ if !self.cluster => None,
                read_from => Some(ClusterOptions {
                    read_from: read_from
                        .as_deref()
                        .unwrap_or("primaries")
                        .parse()
                        .map_err(|why| UsageError(format!("--read-from: {why}")))?,
                    tag_multi_key: self.cluster_tag_keys,
                    // The user's own cluster: whatever addresses it announces.
                    nodes: Vec::new(),
                }),
            },
            cpus: Vec::new(),
            tls: self.tls()?,
            share: None,
            start_at: None,
        };
        let hosts = match &self.client_hosts {
            None => None,
            Some(names) => Some(crate::host::loadgen::connect(
                self.hosts.clone(),
                names,
                addr,
                shutdown,
            )?),
        };
        eprintln!(
            "{} → {addr}{}{}: {} connections, pipeline {}, {}",
            spec.name,
            if self.cluster { " (cluster)" } else { "" },
            if options.tls.is_some() {
                " over TLS"
            } else {
                ""
            },
            options.connections,
            options.pipeline,
            options.rate.map_or("closed loop".to_string(), |r| format!(
                "open loop at {r:.0} req/s"
            ))
        );
        let linger = seconds("--metrics-linger", self.metrics_linger)?;
        let metrics = match &self.metrics_addr {
            Some(addr) => Some(Metrics::serve(addr)?),
            None => None,
        };
        // The metrics endpoint is a sink of the run's events, as the runner's is.
        let mut sinks = Sinks::new(
            metrics
                .iter()
                .map(|m| Box::new(m.sink()) as Box<dyn Sink>)
                .collect(),
        );
        if let Some(m) = &metrics {
            eprintln!("metrics at http://{}/metrics", m.addr);
        }
        let mut second = |p: loadgen::Progress| {
            eprintln!(
                "{:>5.1}s {:>10} ops/s {:>12} total",
                p.elapsed.as_secs_f64(),
                p.ops_last_second,
                p.completed
            );
            sinks.emit(Event::LoadSecond {
                completed: p.completed,
                ops_last_second: p.ops_last_second,
            });
        };
        let (report, hosts) = match hosts {
            None => (
                loadgen::run(&[addr], &spec, &options, shutdown, second).map_err(|e| match e {
                    loadgen::LoadgenError::Workload(_) | loadgen::LoadgenError::Options(_) => {
                        UsageError(e.to_string()).into()
                    }
                    other => anyhow::Error::from(other),
                })?,
                Vec::new(),
            ),
            Some(hosts) => {
                let clients = hosts.clients.as_ref().expect("client hosts were chosen");
                crate::host::loadgen::run(clients, addr, &spec, &options, shutdown, &mut second)?
            }
        };
        for c in &report.commands {
            sinks.emit(Event::Requests {
                command: c.command.clone(),
                requests: c.requests,
                errors: c.errors,
                histogram: Some(c.histogram.clone()),
                seconds: Vec::new(),
            });
        }
        sinks.emit(Event::Errors {
            by_kind: report.errors.clone(),
        });
        let json = if hosts.is_empty() {
            serde_json::to_string(&report)?
        } else {
            let mut value = serde_json::to_value(&report)?;
            value["client_hosts"] = serde_json::to_value(&hosts)?;
            value.to_string()
        };
        if let Some(out) = &self.out {
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            crate::rundir::write_atomically(out, format!("{json}\n").as_bytes())?;
        }
        if self.json {
            println!("{json}");
        } else {
            print!("{}", tables::loadgen_table(&report));
            if !hosts.is_empty() {
                print!("\n{}", tables::client_hosts_table(&hosts));
            }
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
        }
        if metrics.is_some() && !linger.is_zero() {
            eprintln!(
                "serving the final metrics for {:.0} s",
                linger.as_secs_f64()
            );
            let until = std::time::Instant::now() + linger;
            while std::time::Instant::now() < until && !shutdown.is_triggered() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(why) = &report.partial {
            bail!("the run ended early, results above are partial: {why}");
        }
        Ok(())
    }
}
