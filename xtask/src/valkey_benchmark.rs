//! The valkey-benchmark engine: drives the `valkey-benchmark` we built and reads its CSV.
//!
//! valkey-benchmark records one time-to-first-byte per pipelined batch and copies it to
//! every request of the batch, so its latencies at pipeline > 1 are batch latencies. The
//! native generator (bench-core) is the precise engine; this one is the second opinion.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench_core::benchmark_csv;
use bench_core::command::Command;
use bench_core::engine::{Engine, EngineError, Latency, Load, Measurement, Target};
use bench_core::shutdown::Shutdown;

use crate::process;

pub struct ValkeyBenchmark {
    path: PathBuf,
    version: String,
}

impl ValkeyBenchmark {
    pub fn new(path: &Path, shutdown: &Shutdown) -> anyhow::Result<ValkeyBenchmark> {
        let mut cmd = process::command(path);
        cmd.arg("--version");
        let out = process::output(
            cmd,
            "valkey-benchmark --version",
            shutdown,
            Some(Duration::from_secs(10)),
        )?;
        // "valkey-benchmark 8.1.1 (git:...)"
        let version = out
            .stdout
            .split_whitespace()
            .nth(1)
            .unwrap_or("unknown")
            .to_string();
        Ok(ValkeyBenchmark {
            path: path.to_path_buf(),
            version,
        })
    }

    fn args(&self, addr: SocketAddr, load: &Load) -> Vec<String> {
        let mut args = vec![
            "-h".into(),
            addr.ip().to_string(),
            "-p".into(),
            addr.port().to_string(),
            "-c".into(),
            load.clients.to_string(),
            "-n".into(),
            load.requests.to_string(),
            "-P".into(),
            load.pipeline.to_string(),
            "-d".into(),
            load.value_size.max(1).to_string(),
            "-r".into(),
            load.keyspace.to_string(),
            "-t".into(),
            test_name(load.command).into(),
            "--csv".into(),
        ];
        if load.threads > 1 {
            args.extend(["--threads".into(), load.threads.to_string()]);
        }
        args
    }
}

/// valkey-benchmark's `-t` name for a command.
pub fn test_name(command: Command) -> &'static str {
    match command {
        Command::Ping => "ping_mbulk",
        Command::Set => "set",
        Command::Get => "get",
        Command::Incr => "incr",
        Command::Lpush => "lpush",
        Command::Rpush => "rpush",
        Command::Lpop => "lpop",
        Command::Rpop => "rpop",
        Command::Sadd => "sadd",
        Command::Hset => "hset",
        Command::Zadd => "zadd",
        Command::Mset => "mset",
    }
}

/// What the target adds: `--cluster` (it reads the slot map from the node and spreads its
/// clients over the primaries), and its TLS files (`--tls --cacert`, and `--cert --key`
/// when the servers authenticate clients).
fn target_args(target: &Target) -> Vec<String> {
    let mut argv = Vec::new();
    if target.cluster.is_some() {
        argv.push("--cluster".into());
    }
    if let Some(files) = target.tls.as_ref().and_then(|t| t.files()) {
        argv.extend([
            "--tls".into(),
            "--cacert".into(),
            files.ca.display().to_string(),
        ]);
        if let Some((cert, key)) = &files.identity {
            argv.extend([
                "--cert".into(),
                cert.display().to_string(),
                "--key".into(),
                key.display().to_string(),
            ]);
        }
    }
    argv
}

impl Engine for ValkeyBenchmark {
    fn name(&self) -> &'static str {
        "valkey-benchmark"
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn describe(&self, target: &Target, load: &Load) -> Vec<String> {
        let addr = target.primary();
        let mut argv = vec![self.path.display().to_string()];
        argv.extend(self.args(addr, load));
        argv.extend(target_args(target));
        argv
    }

    fn run(
        &self,
        target: &Target,
        load: &Load,
        shutdown: &Shutdown,
    ) -> Result<Measurement, EngineError> {
        let addr = target.primary();
        let failed = |message: String| EngineError::Failed {
            engine: "valkey-benchmark",
            message,
        };
        if target.tls.as_ref().is_some_and(|t| t.files().is_none()) {
            return Err(failed(
                "the servers speak TLS and valkey-benchmark reads its certificates from \
                 files, which this TLS configuration has none of"
                    .into(),
            ));
        }
        let mut cmd = process::command(&self.path);
        cmd.args(self.args(addr, load));
        cmd.args(target_args(target));
        let started = Instant::now();
        let out = process::output(
            cmd,
            "valkey-benchmark",
            shutdown,
            Some(Duration::from_secs(3600)),
        )
        .map_err(|e| {
            if shutdown.is_triggered() {
                EngineError::Interrupted
            } else {
                failed(format!("{e:#}"))
            }
        })?;
        let wall_secs = started.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(failed(format!(
                "exited with {}: {}",
                out.status,
                process::tail(&format!("{}{}", out.stdout, out.stderr), 10)
            )));
        }
        let rows = benchmark_csv::parse(&out.stdout).map_err(|e| failed(e.to_string()))?;
        let [row] = rows.as_slice() else {
            return Err(failed(format!(
                "expected one CSV row for -t {}, got {}",
                test_name(load.command),
                rows.len()
            )));
        };
        if row.rps <= 0.0 {
            return Err(failed(format!("reported {} requests per second", row.rps)));
        }
        Ok(Measurement {
            requests: load.requests,
            ops_per_sec: row.rps,
            wall_secs,
            latency: Latency {
                avg_us: Some(row.avg_us),
                min_us: Some(row.min_us),
                p50_us: Some(row.p50_us),
                p95_us: Some(row.p95_us),
                p99_us: Some(row.p99_us),
                max_us: Some(row.max_us),
                ..Latency::default()
            },
            histogram: None,
            series: Vec::new(),
            client_cpu_us_per_request: None,
            ..Default::default()
        })
    }
}
