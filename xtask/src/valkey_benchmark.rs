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
use bench_core::engine::{Engine, EngineError, Latency, LatencyFrom, Load, Measurement, Target};
use bench_core::shutdown::Shutdown;

use crate::process;

pub struct ValkeyBenchmark {
    path: PathBuf,
    version: String,
    /// Its `--help` lists `--rps` (a total rate limit; Valkey 8.1's has none).
    rps: bool,
}

impl ValkeyBenchmark {
    pub fn new(path: &Path, shutdown: &Shutdown) -> anyhow::Result<ValkeyBenchmark> {
        // What it prints for one flag: stdout and stderr together.
        let asked = |flag: &str| -> anyhow::Result<String> {
            let mut cmd = process::command(path);
            cmd.arg(flag);
            let name = format!("valkey-benchmark {flag}");
            let out = process::output(cmd, &name, shutdown, Some(Duration::from_secs(10)))?;
            Ok(format!("{}{}", out.stdout, out.stderr))
        };
        // "valkey-benchmark 8.1.1 (git:...)"
        let version = asked("--version")?
            .split_whitespace()
            .nth(1)
            .unwrap_or("unknown")
            .to_string();
        Ok(ValkeyBenchmark {
            path: path.to_path_buf(),
            version,
            rps: lists_rps(&asked("--help")?),
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
        if let Some(rate) = load.rate {
            args.extend(["--rps".into(), rps(rate).to_string()]);
        }
        args
    }
}

/// Whether a valkey-benchmark's `--help` text offers `--rps`.
fn lists_rps(help: &str) -> bool {
    help.lines().any(|l| l.trim_start().starts_with("--rps "))
}

/// The whole requests per second `--rps` is given for `rate` (it takes an integer).
fn rps(rate: f64) -> u64 {
    rate.round().max(1.0) as u64
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

    /// A rate goes to `--rps`, where this build has it: a token bucket that holds a client
    /// back until its batch may go, so latency counts from the send, not from when the
    /// request was due (recorded as `latency_from: sent`).
    fn can_run(&self, load: &Load) -> Result<(), String> {
        match load.rate {
            None => Ok(()),
            Some(_) if !self.rps => Err(format!(
                "valkey-benchmark {} has no --rps option, so it cannot offer a rate: run this load with the native engine, or build a Valkey whose valkey-benchmark has --rps (9.1.2 does)",
                self.version
            )),
            Some(r) if !(r.is_finite() && (0.5..=u32::MAX as f64).contains(&r)) => Err(format!(
                "rate {r}: valkey-benchmark --rps takes whole requests per second, 1 to {}",
                u32::MAX
            )),
            Some(_) => Ok(()),
        }
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
        self.can_run(load).map_err(failed)?;
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
            offered_rate: load.rate.map(|r| rps(r) as f64),
            latency_from: load.rate.map(|_| LatencyFrom::Sent),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(rate: Option<f64>) -> Load {
        Load {
            command: Command::Get,
            value_size: 32,
            pipeline: 1,
            clients: 10,
            keyspace: 1000,
            requests: 6000,
            threads: 1,
            client_cpus: Vec::new(),
            rate,
        }
    }

    fn engine(rps: bool) -> ValkeyBenchmark {
        ValkeyBenchmark {
            path: "valkey-benchmark".into(),
            version: "9.1.2".into(),
            rps,
        }
    }

    #[test]
    fn rps_is_found_in_the_help_of_builds_that_have_it() {
        let with = " --threads <num>    Enable multi-thread mode.\n \
                    --rps <requests>   Limit the total number of requests per second.\n";
        assert!(lists_rps(with));
        assert!(!lists_rps(
            " --threads <num>    Enable multi-thread mode.\n"
        ));
        // Mentioned in prose is not an option.
        assert!(!lists_rps(
            " -n <requests>  Total number of requests (see --rps)\n"
        ));
    }

    #[test]
    fn a_rate_goes_to_rps_as_whole_requests_per_second() {
        let addr: SocketAddr = ([127, 0, 0, 1], 6379).into();
        let args = engine(true).args(addr, &load(Some(2500.4)));
        assert!(args.windows(2).any(|w| w == ["--rps", "2500"]), "{args:?}");
        let args = engine(true).args(addr, &load(None));
        assert!(!args.iter().any(|a| a == "--rps"), "{args:?}");
        assert_eq!(rps(0.6), 1);
    }

    #[test]
    fn a_rate_is_refused_where_it_cannot_be_offered() {
        assert!(engine(true).can_run(&load(Some(2500.0))).is_ok());
        assert!(engine(true).can_run(&load(None)).is_ok());
        assert!(engine(false).can_run(&load(None)).is_ok());
        let why = engine(false).can_run(&load(Some(2500.0))).unwrap_err();
        assert!(why.contains("valkey-benchmark 9.1.2 has no --rps"), "{why}");
        for bad in [0.0, 0.2, -1.0, f64::NAN, 1e12] {
            let why = engine(true).can_run(&load(Some(bad))).unwrap_err();
            assert!(why.contains("whole requests per second"), "{bad}: {why}");
        }
    }
}
