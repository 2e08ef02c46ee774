//! The native generator as a perf-suite [`Engine`]. Its templates touch the same keys as
//! valkey-benchmark's tests (`key:N` strings, `mylist`, `myset`, `myhash`, `myzset`), so
//! the suite's preloads serve both engines.

use std::time::{Duration, Instant};

use super::{ClusterOptions, RunOptions, Stop};
use crate::command::Command;
use crate::distribution::{KeyDistribution, ValueSize};
use crate::engine::{Engine, EngineError, Latency, LatencyFrom, Load, Measurement, Target};
use crate::shutdown::Shutdown;
use crate::workload::{WeightedCommand, WorkloadSpec};

pub struct NativeEngine;

/// The template the native engine sends for a perf command.
pub fn template(command: Command) -> &'static str {
    match command {
        Command::Ping => "PING",
        Command::Set => "SET {key} {value}",
        Command::Get => "GET {key}",
        Command::Incr => "INCR {key}",
        Command::Lpush => "LPUSH mylist {value}",
        Command::Rpush => "RPUSH mylist {value}",
        Command::Lpop => "LPOP mylist",
        Command::Rpop => "RPOP mylist",
        Command::Sadd => "SADD myset {member}",
        Command::Hset => "HSET myhash {member} {value}",
        Command::Zadd => "ZADD myzset {score} {member}",
        Command::Mset => "MSET",
    }
}

/// `loadgen`'s TLS flags for `tls` (its files; a configuration without files is named by a
/// placeholder, as it cannot be repeated from the command line).
pub fn tls_flags(tls: &crate::transport::Tls) -> Vec<String> {
    let Some(files) = tls.files() else {
        return vec!["--tls-ca".into(), "<CA file>".into()];
    };
    let mut argv = vec!["--tls-ca".into(), files.ca.display().to_string()];
    if let Some((cert, key)) = &files.identity {
        argv.extend([
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ]);
    }
    argv
}

/// The workload of a perf load: one command, uniform keys, fixed value size, seed 1.
pub fn workload(load: &Load) -> WorkloadSpec {
    WorkloadSpec {
        name: load.command.name().to_string(),
        seed: 1,
        keyspace: load.keyspace,
        key_prefix: String::new(),
        key_digits: 12,
        keys: KeyDistribution::Uniform,
        values: ValueSize::Fixed {
            bytes: load.value_size as u32,
        },
        commands: vec![WeightedCommand {
            command: template(load.command).into(),
            weight: 1,
        }],
        subscribers: 0,
    }
}

impl Engine for NativeEngine {
    fn name(&self) -> &'static str {
        "native"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    /// The `cargo xtask loadgen` command that repeats the measured run: the same
    /// workload, seed and request count, no warmup of its own (a case's warmup is a run
    /// before it, recorded as `params.warmup_requests`).
    fn describe(&self, target: &Target, load: &Load) -> Vec<String> {
        let addr = target.primary();
        let mut argv: Vec<String> = ["cargo", "xtask", "loadgen"].map(String::from).to_vec();
        let mut arg = |flag: &str, value: String| {
            argv.push(flag.into());
            argv.push(value);
        };
        arg("--host", addr.ip().to_string());
        arg("--port", addr.port().to_string());
        if let Some(read_from) = target.cluster {
            arg("--read-from", read_from.to_string());
        }
        arg("--command", template(load.command).into());
        arg("--keyspace", load.keyspace.to_string());
        if load.command.uses_value_size() {
            arg("--value-size", load.value_size.to_string());
        }
        arg("--clients", load.clients.to_string());
        arg("--pipeline", load.pipeline.to_string());
        arg("--threads", load.threads.to_string());
        arg("--requests", load.requests.to_string());
        if let Some(rate) = load.rate {
            arg("--rate", rate.to_string());
        }
        arg("--warmup", "0".into());
        arg("--seed", "1".into());
        if target.cluster.is_some() {
            argv.extend(["--cluster", "--cluster-tag-keys"].map(String::from));
        }
        if let Some(tls) = &target.tls {
            argv.extend(tls_flags(tls));
        }
        argv
    }

    fn can_run(&self, load: &Load) -> Result<(), String> {
        check_rate(load.rate)
    }

    fn run(
        &self,
        target: &Target,
        load: &Load,
        shutdown: &Shutdown,
    ) -> Result<Measurement, EngineError> {
        let failed = |message: String| EngineError::Failed {
            engine: "native",
            message,
        };
        let options = options(target, load);
        let started = Instant::now();
        // A cluster is discovered from its first primary, as `describe`'s command does.
        let report = super::run(
            &[target.primary()],
            &workload(load),
            &options,
            shutdown,
            |_| {},
        )
        .map_err(|e| failed(e.to_string()))?;
        let wall_secs = started.elapsed().as_secs_f64();
        if shutdown.is_triggered() {
            return Err(EngineError::Interrupted);
        }
        measurement(report, wall_secs)
    }
}

/// The highest rate the generator is asked for: a billion requests a second is beyond
/// any server; past it a schedule's interval rounds to nothing.
pub const MAX_RATE: f64 = 1e9;

/// Why the generator cannot offer `rate`, if it cannot.
pub fn check_rate(rate: Option<f64>) -> Result<(), String> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= MAX_RATE) => Err(format!(
            "rate {r}: give requests per second above 0, at most {MAX_RATE:e}"
        )),
        _ => Ok(()),
    }
}

/// The generator's options for a perf load on `target` (the whole run's).
pub fn options(target: &Target, load: &Load) -> RunOptions {
    RunOptions {
        connections: load.clients,
        pipeline: load.pipeline,
        threads: load.threads,
        rate: load.rate,
        stop: Stop::Requests(load.requests),
        warmup: Duration::ZERO,
        // The perf suite's MSET keys are tagged per connection on a cluster.
        cluster: target.cluster.map(|read_from| ClusterOptions {
            read_from,
            tag_multi_key: true,
            nodes: target.nodes.clone(),
        }),
        cpus: load.client_cpus.clone(),
        tls: target.tls.clone(),
        share: None,
        start_at: None,
    }
}

/// What a perf case keeps of a generator's report: a run that ended early, or with
/// errors, is a failure.
pub fn measurement(report: super::Report, wall_secs: f64) -> Result<Measurement, EngineError> {
    let failed = |message: String| EngineError::Failed {
        engine: "native",
        message,
    };
    if let Some(why) = report.partial {
        return Err(failed(why));
    }
    let errors: u64 = report.errors.values().sum();
    // Redirects are followed, not errors; outside a migration they mean a stale map.
    if errors > 0 {
        return Err(failed(format!("{errors} errors: {:?}", report.errors)));
    }
    Ok(measured(report, wall_secs))
}

/// A generator's report as a measurement, whatever its errors (a capacity trial judges
/// them).
pub fn measured(report: super::Report, wall_secs: f64) -> Measurement {
    let l = &report.all.latency;
    let us = |v: u64| Some(v as f64);
    let open = report.rate.is_some();
    Measurement {
        offered_rate: report.rate,
        latency_from: open.then_some(LatencyFrom::Intended),
        late_sends: open.then_some(report.late_sends),
        requests: report.requests,
        ops_per_sec: report.ops_per_sec,
        wall_secs,
        latency: Latency {
            avg_us: Some(l.avg_us),
            min_us: us(l.min_us),
            p50_us: us(l.p50_us),
            p90_us: us(l.p90_us),
            p95_us: None,
            p99_us: us(l.p99_us),
            p99_9_us: us(l.p99_9_us),
            max_us: us(l.max_us),
        },
        histogram: Some(report.all.histogram),
        series: report.series,
        client_cpu_us_per_request: Some(report.client_cpu_us_per_request),
        nodes: report.nodes,
        redirects: report.redirects,
        client_hosts: Vec::new(),
    }
}
