//! `cargo xtask selfbench`: our generator against valkey-benchmark, same server, same
//! load, alternating, to show what each costs per request (`suites/selfbench.rs`).

use bench_core::shutdown::Shutdown;
use clap::Args;
use serde_json::json;

use super::ValkeyArgs;
use crate::host::local::Local;
use crate::run::{CaseContext, Deploy, LOCAL_STANDALONE};
use crate::suites::selfbench;
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
    /// Requests per trial at pipeline 1 (ten times as many at pipeline 16).
    #[arg(long, default_value_t = 300_000)]
    pub requests: u64,
    #[arg(long, default_value_t = 9000)]
    pub base_port: u16,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Measure what cluster mode costs the native generator instead: standalone against
    /// a one-shard and a three-shard cluster, side by side.
    #[arg(long)]
    pub cluster: bool,
}

impl SelfbenchCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let binaries = self.valkey.binaries(shutdown)?;
        let vb = ValkeyBenchmark::new(&binaries.benchmark, shutdown)?;
        let host = crate::host::info();
        let ctx = CaseContext {
            run_id: "selfbench",
            binaries: &binaries,
            host: &host,
            engine: &vb,
            base_port: self.base_port,
            shutdown,
            servers: &LOCAL_STANDALONE,
        };
        if self.cluster {
            return self.cluster_cost(&ctx);
        }
        let (trials, summary) = selfbench::run(&ctx, self.rounds, self.requests, &mut |line| {
            eprintln!("{line}")
        })?;
        if self.json {
            println!("{}", json!({"trials": trials, "summary": summary}));
        } else {
            println!(
                "| pipeline | native ops/s | valkey-benchmark ops/s | ratio | native CPU µs/req (user + sys) | valkey-benchmark CPU µs/req (user + sys) | ratio | floor CPU µs/req (user + sys) | floor / valkey-benchmark |"
            );
            println!(
                "| -------: | -----------: | ---------------------: | ----: | -----------------------------: | ---------------------------------------: | ----: | ----------------------------: | -----------------------: |"
            );
            for s in &summary {
                println!(
                    "| {} | {:.0} | {:.0} | {:.2} | {:.3} ({:.3} + {:.3}) | {:.3} ({:.3} + {:.3}) | {:.2} | {:.3} ({:.3} + {:.3}) | {:.2} |",
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
                    s.floor_cpu / s.vb_cpu
                );
            }
            println!(
                "\nmedians over {} rounds; ratio = native / valkey-benchmark; floor = a bare epoll client that only sends and counts replies",
                self.rounds
            );
        }
        Ok(())
    }

    fn cluster_cost(&self, standalone: &CaseContext<'_>) -> anyhow::Result<()> {
        let (one, three) = (
            Cluster::new(1, 0, ReadFrom::Primaries),
            Cluster::new(3, 0, ReadFrom::Primaries),
        );
        let one_servers = Deploy {
            topology: &one,
            host: &Local,
        };
        let three_servers = Deploy {
            topology: &three,
            host: &Local,
        };
        let one_ctx = CaseContext {
            servers: &one_servers,
            ..*standalone
        };
        let three_ctx = CaseContext {
            servers: &three_servers,
            ..*standalone
        };
        let (trials, summary) = selfbench::cluster_cost(
            standalone,
            &one_ctx,
            &three_ctx,
            self.rounds,
            self.requests,
            &mut |line| eprintln!("{line}"),
        )?;
        if self.json {
            println!("{}", json!({"trials": trials, "summary": summary}));
            return Ok(());
        }
        println!(
            "| pipeline | standalone CPU µs/req | cluster:1x0 CPU µs/req | ratio | cluster:3x0 CPU µs/req | ratio |"
        );
        println!(
            "| -------: | --------------------: | ---------------------: | ----: | ---------------------: | ----: |"
        );
        for s in &summary {
            println!(
                "| {} | {:.3} | {:.3} | {:.2} | {:.3} | {:.2} |",
                s.pipeline,
                s.standalone_cpu,
                s.one_shard_cpu,
                s.one_shard_ratio,
                s.three_shards_cpu,
                s.three_shards_ratio
            );
        }
        println!(
            "\nthe native generator's CPU (user + system) per request, medians over {} rounds; ratio = cluster / standalone",
            self.rounds
        );
        Ok(())
    }
}
