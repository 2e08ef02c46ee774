//! The subcommands, one module each; the flag groups they share are in `args`; a queued
//! task's flags are parsed here, where every subcommand is known (`validate_task`).

mod args;
pub mod bench;
pub mod build;
pub mod compare;
pub mod fetch;
pub mod flamegraph;
pub mod loadgen;
pub mod queue;
pub mod report;
pub mod runner;
pub mod selfbench;
pub mod start;

pub use args::*;

use clap::Parser;

use crate::error::UsageError;
use crate::queue::{TaskKind, check_args};

/// A queued task's flags, parsed by its command's own definitions (here, where every
/// subcommand is known; a task's flags never pass through a shell).
#[derive(Parser, Debug)]
#[command(name = "bench", no_binary_name = true)]
pub struct BenchTask {
    #[command(flatten)]
    pub cmd: bench::BenchCmd,
}

/// A task's flags parsed and checked as its command checks them, starting nothing:
/// `queue add` before queueing, the runner before running. Errors name the flag and
/// exit 2.
pub fn validate_task(kind: TaskKind, args: &[String]) -> anyhow::Result<BenchTask> {
    check_args(args).map_err(UsageError)?;
    match kind {
        TaskKind::Bench => {
            let task = BenchTask::try_parse_from(args).map_err(|e| {
                let rendered = e.render().to_string();
                UsageError(format!(
                    "bench: {}",
                    rendered.trim_end().trim_start_matches("error: ")
                ))
            })?;
            task.cmd.valkey.request().check()?;
            task.cmd.plan()?;
            Ok(task)
        }
    }
}
