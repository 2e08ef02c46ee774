//! `cargo xtask selfbench`: our generator against valkey-benchmark, same server, same
//! load, alternating, to show what each costs per request (`suites/selfbench.rs`).

use bench_core::shutdown::Shutdown;
use clap::Args;
use serde_json::json;

use super::ValkeyArgs;
use crate::run::{CaseContext, LOCAL_STANDALONE};
use crate::suites::selfbench;
use crate::valkey_benchmark::ValkeyBenchmark;

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
}
