//! The subcommands, one module each; the flag groups they share are in `args`; a queued
//! task's flags are parsed here, where every subcommand is known (`validate_task`).

mod args;
pub mod bench;
pub mod build;
pub mod capacity;
pub mod compare;
pub mod fetch;
pub mod flamegraph;
pub mod loadgen;
pub mod queue;
pub mod report;
pub mod runner;
pub mod selfbench;
pub mod start;
pub mod tui;

pub use args::*;

use std::path::Path;

use bench_core::shutdown::Shutdown;
use clap::Parser;

use crate::error::{Inconclusive, RegressionFound, UsageError};
use crate::queue::expand::{self, Axis};
use crate::queue::{TaskKind, check_args};

/// A queued task's flags, parsed by its command's own definitions (here, where every
/// subcommand is known; a task's flags never pass through a shell).
#[derive(Parser, Debug)]
#[command(name = "bench", no_binary_name = true)]
struct BenchTask {
    #[command(flatten)]
    cmd: bench::BenchCmd,
}

#[derive(Parser, Debug)]
#[command(name = "compare", no_binary_name = true)]
struct CompareTask {
    #[command(flatten)]
    cmd: compare::CompareCmd,
}

#[derive(Parser, Debug)]
#[command(name = "flamegraph", no_binary_name = true)]
struct FlamegraphTask {
    #[command(flatten)]
    cmd: flamegraph::FlamegraphCmd,
}

/// A task, parsed and checked: the command it runs.
#[derive(Debug)]
pub enum TaskCmd {
    Bench(Box<bench::BenchCmd>),
    Compare(Box<compare::CompareCmd>),
    Flamegraph(Box<flamegraph::FlamegraphCmd>),
}

impl TaskCmd {
    /// The perf matrix's lists this task was given (`queue add` expands them); none for a
    /// flame graph.
    pub fn matrix(&self) -> Option<&MatrixArgs> {
        match self {
            TaskCmd::Bench(cmd) => Some(&cmd.matrix),
            TaskCmd::Compare(cmd) => Some(&cmd.matrix),
            TaskCmd::Flamegraph(_) => None,
        }
    }

    /// Runs the task with its results in `dir` (a flame graph's SVG as
    /// `dir/flamegraph.svg`), its events also given to `extra`. `Ok` with a compare's verdict when it ran to the end: a
    /// comparison that found a regression did its job.
    pub fn run_in(
        self,
        dir: &Path,
        shutdown: &Shutdown,
        extra: Vec<Box<dyn crate::events::Sink>>,
    ) -> anyhow::Result<Option<String>> {
        match self {
            TaskCmd::Bench(mut cmd) => {
                cmd.out = Some(dir.to_path_buf());
                cmd.run_with(shutdown, extra).map(|()| None)
            }
            TaskCmd::Compare(mut cmd) => {
                cmd.out = Some(dir.to_path_buf());
                match cmd.run_with(shutdown, extra) {
                    Ok(()) => Ok(Some("no regression".into())),
                    Err(e) if e.is::<RegressionFound>() || e.is::<Inconclusive>() => {
                        Ok(Some(e.to_string()))
                    }
                    Err(e) => Err(e),
                }
            }
            TaskCmd::Flamegraph(mut cmd) => {
                cmd.out = Some(dir.join("flamegraph.svg"));
                cmd.run(shutdown).map(|()| None)
            }
        }
    }
}

/// A task's flags parsed and checked as its command checks them, starting nothing:
/// `queue add` before queueing, the runner before running. Errors name the flag and
/// exit 2. `runner` is the runner's hosts (its file and placement), which the task's
/// counts of hosts pick from; without it (`queue add`: the runner is not known yet) the
/// checks that depend on where the servers run wait for the runner.
pub fn validate_task(
    kind: TaskKind,
    args: &[String],
    runner: Option<&HostsArgs>,
) -> anyhow::Result<TaskCmd> {
    check_args(args).map_err(UsageError)?;
    // The hosts a task runs on: the runner's, with the task's counts; at `queue add`,
    // this machine for the checks.
    let place = |asked: &mut HostsArgs, clients: bool| -> Result<(), UsageError> {
        *asked = match runner {
            Some(runner) => runner.for_task(asked, clients)?,
            None => HostsArgs::default(),
        };
        Ok(())
    };
    fn parse<T: Parser>(kind: TaskKind, args: &[String]) -> anyhow::Result<T> {
        T::try_parse_from(args).map_err(|e| {
            let rendered = e.render().to_string();
            UsageError(format!(
                "{}: {}",
                kind.name(),
                rendered.trim_end().trim_start_matches("error: ")
            ))
            .into()
        })
    }
    match kind {
        TaskKind::Bench => {
            let BenchTask { mut cmd } = parse(kind, args)?;
            let asked = cmd.hosts.clone();
            place(&mut cmd.hosts, true)?;
            if let Some(rev) = &cmd.valkey.git_ref {
                crate::valkey::check_revision("--ref", rev)?;
            }
            cmd.valkey.request().check()?;
            cmd.plan()?;
            if runner.is_none() {
                cmd.hosts = asked; // kept in the task for its runner
            }
            Ok(TaskCmd::Bench(Box::new(cmd)))
        }
        TaskKind::Compare => {
            let CompareTask { mut cmd } = parse(kind, args)?;
            cmd.task = true;
            let asked = cmd.hosts.clone();
            place(&mut cmd.hosts, true)?;
            cmd.request()?;
            if runner.is_none() {
                cmd.hosts = asked;
            }
            Ok(TaskCmd::Compare(Box::new(cmd)))
        }
        TaskKind::Flamegraph => {
            let FlamegraphTask { mut cmd } = parse(kind, args)?;
            cmd.task = true;
            let asked = cmd.hosts.clone();
            place(&mut cmd.hosts, false)?;
            cmd.check()?;
            if runner.is_none() {
                cmd.hosts = asked;
            }
            Ok(TaskCmd::Flamegraph(Box::new(cmd)))
        }
    }
}

/// A campaign's tasks: one per combination of the lists given (`--value-sizes 16,64,1K`,
/// `--pipelines 1..64x2`, and for bench `--valkey-version A,B` and `--ref A,B`), each
/// validated as its command would validate it before any is queued.
pub fn campaign(kind: TaskKind, args: &[String]) -> anyhow::Result<(Vec<Vec<String>>, Vec<Axis>)> {
    let mut axes = Vec::new();
    let mut first = args.to_vec();
    if kind == TaskKind::Bench {
        for flag in ["--valkey-version", "--ref"] {
            let raw = expand::raw_values(args, flag);
            let [list] = &raw[..] else { continue };
            if !list.contains(',') {
                continue;
            }
            let values: Vec<String> = list.split(',').map(|v| v.trim().to_string()).collect();
            if values.iter().any(String::is_empty) {
                return Err(UsageError(format!(
                    "{flag} {list:?}: an empty item; separate builds with single commas"
                ))
                .into());
            }
            first = expand::without(&first, flag);
            first.extend([flag.to_string(), values[0].clone()]);
            axes.push(Axis { flag, values });
        }
    }
    let parsed = validate_task(kind, &first, None)?;
    if let Some(matrix) = parsed.matrix() {
        for flag in MATRIX_FLAGS {
            if let Some(values) = matrix.values_of(flag).filter(|v| v.len() > 1) {
                axes.push(Axis { flag, values });
            }
        }
    }
    let list = expand::product(args, &axes).map_err(UsageError)?;
    let n = list.len();
    for (i, args) in list.iter().enumerate().filter(|_| n > 1) {
        validate_task(kind, args, None).map_err(|e| {
            UsageError(format!(
                "task {} of {n} ({} {}): {e:#}",
                i + 1,
                kind.name(),
                args.join(" ")
            ))
        })?;
    }
    Ok((list, axes))
}
