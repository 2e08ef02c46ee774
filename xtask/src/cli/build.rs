//! `cargo xtask build`: fetch (if pinned) and build Valkey, or find it in the cache.

use bench_core::shutdown::Shutdown;
use clap::Args;
use serde_json::json;

use super::ValkeyArgs;

#[derive(Args, Debug)]
pub struct BuildCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    /// Print {"server","cli","benchmark","version","source_id","compiler","cached"} as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BuildCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let b = self.valkey.binaries(shutdown)?;
        if self.json {
            let out = json!({
                "server": b.server,
                "cli": b.cli,
                "benchmark": b.benchmark,
                "version": b.version,
                "source_id": b.source_id,
                "compiler": b.compiler,
                "cached": b.cached,
            });
            println!("{out}");
        } else {
            println!(
                "Valkey {} ({}){}",
                b.version,
                b.source_id,
                if b.cached { ", cached" } else { "" }
            );
            println!("  server    {}", b.server.display());
            println!("  cli       {}", b.cli.display());
            println!("  benchmark {}", b.benchmark.display());
            println!("  compiler  {}", b.compiler);
        }
        Ok(())
    }
}
