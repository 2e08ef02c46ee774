//! `cargo xtask selfbench`: our generator against valkey-benchmark, same server, same
//! load, alternating, to show what each costs per request (`suites/selfbench.rs`); with
//! `--cluster` what cluster mode costs the generator, with `--tls` what TLS costs client
//! and server, each side by side.

use bench_core::placement::Placement;
use bench_core::shutdown::Shutdown;
use clap::Args;
use serde_json::json;

use super::ValkeyArgs;
use crate::case::{CaseContext, Deploy, LOCAL_STANDALONE};
use crate::selfbench::{self, instructions};

const DEFAULT_REQUESTS: u64 = 300_000;
use crate::topology::Cluster;
use crate::valkey_benchmark::ValkeyBenchmark;
use bench_core::topology::ReadFrom;

#[derive(Args, Debug)]
pub struct SelfbenchCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    /// Trials per engine and pipeline depth.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Requests per trial at pipeline 1, ten times as many at pipeline 16 (default 300,000;
    /// with --instructions, the shorter run's, default 20,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub requests: Option<u64>,
    #[arg(long, default_value_t = 9000)]
    pub base_port: u16,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Measure what cluster mode costs the native generator instead: standalone against
    /// a one-shard and a three-shard cluster, side by side.
    #[arg(long, conflicts_with = "tls")]
    pub cluster: bool,
    /// With --tls (which builds with TLS): require client certificates on the TLS side.
    #[arg(long, requires = "tls")]
    pub tls_auth_clients: bool,
    /// Count each client's user-space instructions per request instead (the floor and the
    /// native generator, each alone under valgrind's callgrind, exact where CPU time is
    /// noisy); --requests is the shorter run's count (default here 20,000 at pipeline 1).
    #[arg(long, conflicts_with_all = ["cluster", "tls", "rounds"])]
    pub instructions: bool,
    /// (Internal, for --instructions) run this one client and nothing else.
    #[arg(long, hide = true, value_parser = ["floor", "native"], conflicts_with_all = ["cluster", "tls", "instructions", "json"])]
    pub client: Option<String>,
    /// (Internal, with --client) the server's port on 127.0.0.1.
    #[arg(long, hide = true, requires = "client")]
    pub port: Option<u16>,
    /// (Internal, with --client) requests in flight per connection.
    #[arg(long, hide = true, requires = "client")]
    pub pipeline: Option<u32>,
}

impl SelfbenchCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        if let Some(engine) = &self.client {
            let (Some(port), Some(pipeline)) = (self.port, self.pipeline) else {
                anyhow::bail!("--client needs --port and --pipeline");
            };
            let requests = self.requests.unwrap_or(DEFAULT_REQUESTS);
            return instructions::client(engine, port, pipeline, requests, shutdown);
        }
        let binaries = self.valkey.binaries(shutdown)?;
        let vb = ValkeyBenchmark::new(&binaries.benchmark, shutdown)?;
        let host = crate::host::info();
        let ctx = CaseContext {
            run_id: "selfbench",
            binaries: &binaries,
            host: &host,
            hosts: crate::host::local_hosts(),
            engine: &vb,
            base_port: self.base_port,
            shutdown,
            servers: &*LOCAL_STANDALONE,
            tls: None,
        };
        if self.cluster {
            return self.cluster_cost(&ctx);
        }
        if self.instructions {
            return self.instructions(&ctx);
        }
        // `--tls` (a TLS build): what TLS costs client and server, against plain TCP.
        if self.valkey.tls {
            return self.tls_cost(&ctx);
        }
        let placement = Placement::apart(&crate::host::machine());
        if let (Some(server), Some(client)) = (&placement.server_cpus, &placement.client_cpus) {
            eprintln!("the server on CPU {server}, every client on CPU {client}");
        }
        let (trials, summary) = selfbench::run(
            &ctx,
            &placement,
            self.rounds,
            self.requests(),
            &mut |line| eprintln!("{line}"),
        )?;
        if self.json {
            println!("{}", json!({"trials": trials, "summary": summary}));
        } else {
            println!(
                "| pipeline | native ops/s | valkey-benchmark ops/s | ratio | native CPU µs/req (user + sys) | valkey-benchmark CPU µs/req (user + sys) | ratio | floor CPU µs/req (user + sys) | floor / valkey-benchmark | native / floor | rounds' native / floor | its 95% interval |"
            );
            println!(
                "| -------: | -----------: | ---------------------: | ----: | -----------------------------: | ---------------------------------------: | ----: | ----------------------------: | -----------------------: | -------------: | :--------------------- | :--------------- |"
            );
            for s in &summary {
                let (low, high) = s
                    .native_floor_ratios
                    .iter()
                    .fold((f64::NAN, f64::NAN), |(l, h), &r| (l.min(r), h.max(r)));
                let interval = match s.native_floor_interval {
                    Some((low, high, _)) => format!("{low:.2}–{high:.2}"),
                    None => "needs 6 rounds".into(),
                };
                println!(
                    "| {} | {:.0} | {:.0} | {:.2} | {:.3} ({:.3} + {:.3}) | {:.3} ({:.3} + {:.3}) | {:.2} | {:.3} ({:.3} + {:.3}) | {:.2} | {:.2} | {low:.2}–{high:.2} | {interval} |",
                    s.pipeline,
                    s.native_ops,
                    s.vb_ops,
                    s.ops_ratio,
                    s.native_cpu,
                    s.native_user,
                    s.native_system,
                    s.vb_cpu,
                    s.vb_user,
                    s.vb_system,
                    s.cpu_ratio,
                    s.floor_cpu,
                    s.floor_user,
                    s.floor_system,
                    s.floor_cpu / s.vb_cpu,
                    s.native_floor_ratio
                );
            }
            println!(
                "\nmedians over {} rounds; ratio = native / valkey-benchmark; floor = a bare epoll client that only sends and counts replies; native / floor = the ratio within each round (they run back to back), its median over the rounds, the lowest and highest round's, and the distribution-free 95% interval of the median (order statistics of the rounds' ratios, as `compare` uses)",
                self.rounds
            );
        }
        Ok(())
    }

    /// Requests per timed trial at pipeline 1.
    fn requests(&self) -> u64 {
        self.requests.unwrap_or(DEFAULT_REQUESTS)
    }

    /// Each client's instructions per request, floor and native side by side.
    fn instructions(&self, ctx: &CaseContext<'_>) -> anyhow::Result<()> {
        // The default trial is sized for timing; under callgrind (~50× slower) a shorter
        // one counts the same.
        let requests = self.requests.unwrap_or(20_000);
        let placement = Placement::apart(&crate::host::machine());
        let counts = instructions::run(ctx, &placement, requests, &mut |line| eprintln!("{line}"))?;
        let pairs = instructions::pairs(&counts);
        if self.json {
            let summary: Vec<_> = pairs
                .iter()
                .map(|&(pipeline, floor, native)| {
                    json!({"pipeline": pipeline, "floor": floor, "native": native, "native_floor_ratio": native / floor})
                })
                .collect();
            println!("{}", json!({"counts": counts, "summary": summary}));
            return Ok(());
        }
        println!(
            "| pipeline | floor instructions/req | native instructions/req | native / floor |"
        );
        println!(
            "| -------: | ---------------------: | ----------------------: | -------------: |"
        );
        for (pipeline, floor, native) in pairs {
            println!(
                "| {pipeline} | {floor:.0} | {native:.0} | {:.2} |",
                native / floor
            );
        }
        println!(
            "\nuser-space instructions per request, each client alone under callgrind, the difference between runs of {requests} and {} requests at pipeline 1 (ten times as many at 16); the kernel's work (the same system calls for both, most of their CPU) is not counted; the native count includes a few percent of clock-driven work (its connections' 50 ms ticks), more on a busy machine",
            3 * requests
        );
        Ok(())
    }

    /// Standalone against a one-shard and a three-shard cluster.
    fn cluster_cost(&self, standalone: &CaseContext<'_>) -> anyhow::Result<()> {
        let (one, three) = (
            Cluster::new(1, 0, ReadFrom::Primaries),
            Cluster::new(3, 0, ReadFrom::Primaries),
        );
        let one_servers = Deploy {
            topology: &one,
            hosts: crate::host::local_hosts(),
        };
        let three_servers = Deploy {
            topology: &three,
            hosts: crate::host::local_hosts(),
        };
        let one_ctx = CaseContext {
            servers: &one_servers,
            ..*standalone
        };
        let three_ctx = CaseContext {
            servers: &three_servers,
            ..*standalone
        };
        self.side_by_side(
            &[
                ("standalone", standalone),
                ("cluster:1x0", &one_ctx),
                ("cluster:3x0", &three_ctx),
            ],
            "cluster / standalone",
        )
    }

    /// One server over plain TCP against one over TLS, both of the TLS build.
    fn tls_cost(&self, plain: &CaseContext<'_>) -> anyhow::Result<()> {
        let tls = CaseContext {
            tls: self.topology_tls(),
            ..*plain
        };
        self.side_by_side(&[("plain", plain), ("tls", &tls)], "TLS / plain")
    }

    fn topology_tls(&self) -> Option<bench_core::transport::TlsMode> {
        Some(bench_core::transport::TlsMode {
            auth_clients: self.tls_auth_clients,
        })
    }

    fn side_by_side(
        &self,
        modes: &[(&'static str, &CaseContext<'_>)],
        ratio: &str,
    ) -> anyhow::Result<()> {
        let placement = Placement::apart(&crate::host::machine());
        if let (Some(server), Some(client)) = (&placement.server_cpus, &placement.client_cpus) {
            eprintln!("servers on CPU {server}, the generator on CPU {client}");
        }
        let (trials, summary) = selfbench::side_by_side(
            modes,
            &placement,
            self.rounds,
            self.requests(),
            &mut |line| eprintln!("{line}"),
        )?;
        if self.json {
            println!("{}", json!({"trials": trials, "summary": summary}));
            return Ok(());
        }
        println!(
            "| pipeline | mode | ops/s | client CPU µs/req | ratio | rounds' ratios | server CPU µs/req | ratio |"
        );
        println!(
            "| -------: | :--- | ----: | ----------------: | ----: | :------------- | ----------------: | ----: |"
        );
        for s in &summary {
            let (low, high) = s
                .client_ratios
                .iter()
                .fold((f64::NAN, f64::NAN), |(l, h), &r| (l.min(r), h.max(r)));
            println!(
                "| {} | {} | {:.0} | {:.3} | {:.2} | {low:.2}–{high:.2} | {:.3} | {:.2} |",
                s.pipeline,
                s.mode,
                s.ops_per_sec,
                s.client_cpu,
                s.client_ratio,
                s.server_cpu,
                s.server_ratio
            );
        }
        println!(
            "\nthe native generator's CPU (user + system) and the server's (INFO used_cpu_user + used_cpu_sys) per request, medians over {} rounds; ratio = {ratio} within each round (the modes run back to back), its median over the rounds, and the lowest and highest round's",
            self.rounds
        );
        Ok(())
    }
}
