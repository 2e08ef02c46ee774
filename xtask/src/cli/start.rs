//! `cargo xtask start`: run local instances until Ctrl-C or SIGTERM, then tear them down.

use std::thread;
use std::time::Duration;

use anyhow::bail;
use bench_core::shutdown::Shutdown;
use clap::Args;
use serde_json::json;

use super::ValkeyArgs;
use crate::host::Host;
use crate::host::local::Local;
use crate::instances;

#[derive(Args, Debug)]
pub struct StartCmd {
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    /// How many instances.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// The first port tried; ports in use are skipped.
    #[arg(long, default_value_t = 9000)]
    pub base_port: u16,
    /// Extra server configuration, name=value (repeatable), e.g. io-threads=4.
    #[arg(long = "server-config", value_name = "NAME=VALUE")]
    pub server_config: Vec<String>,
    /// Print the instances as one JSON line.
    #[arg(long)]
    pub json: bool,
}

impl StartCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        if self.count == 0 {
            return Err(
                crate::error::UsageError("--count 0: start at least one instance".into()).into(),
            );
        }
        let binaries = self.valkey.binaries(shutdown)?;
        let options = instances::Options {
            base_port: self.base_port,
            config: super::parse_server_config(&self.server_config)?,
            ..Default::default()
        };
        let mut running = Local.start_servers(&binaries.server, self.count, &options, shutdown)?;
        if self.json {
            let list: Vec<_> = running
                .iter()
                .map(|i| json!({"port": i.port(), "pid": i.pid(), "dir": i.dir(), "log": i.log}))
                .collect();
            println!(
                "{}",
                json!({"version": binaries.version, "instances": list})
            );
        } else {
            for i in &running {
                println!(
                    "valkey-server {} on 127.0.0.1:{} (pid {}, log {})",
                    binaries.version,
                    i.port(),
                    i.pid(),
                    i.log.display()
                );
            }
            eprintln!("press Ctrl-C to stop");
        }
        while !shutdown.is_triggered() {
            for i in running.iter_mut() {
                if !i.is_running() {
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
        eprintln!("stopped");
        Ok(())
    }
}
