//! `cargo xtask`: parse flags, install the signal handler, dispatch, map errors to exit codes.

use std::process::ExitCode;

use bench_core::shutdown::Shutdown;
use clap::{Parser, Subcommand};
use xtask::cli;
use xtask::process;

/// valkey-bench: build Valkey, run instances, measure them.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a benchmark suite and write results/<run-id>/.
    Bench(cli::bench::BenchCmd),
    /// Baseline against candidate: interleaved trials, statistics, a verdict.
    /// Exit 0 no regression, 1 regression, 2 could not run, 3 inconclusive (no regression,
    /// some cases undecided).
    Compare(cli::compare::CompareCmd),
    /// Fetch and build Valkey (or find the build in the cache).
    Build(cli::build::BuildCmd),
    /// Download and verify pinned Valkey sources into the cache without building them.
    Fetch(cli::fetch::FetchCmd),
    /// Profile a server under a workload: a flame graph (perf or callgrind), top functions,
    /// and with --diff a differential flame graph against a baseline.
    Flamegraph(cli::flamegraph::FlamegraphCmd),
    /// Render the HTML report, Markdown and charts of one or more runs (also written at
    /// the end of bench and compare).
    Report(cli::report::ReportCmd),
    /// Drive a server with the native load generator.
    Loadgen(cli::loadgen::LoadgenCmd),
    /// Compare the native generator's cost per request with valkey-benchmark's.
    Selfbench(cli::selfbench::SelfbenchCmd),
    /// Start local valkey-server instances and keep them up until Ctrl-C.
    Start(cli::start::StartCmd),
    /// The lab's task queue: add (bench's flags, validated first), list, show, cancel,
    /// retry, remove.
    Queue(cli::queue::QueueCmd),
    /// Take tasks from the queue and run them until stopped (--once: until it is empty).
    Runner(cli::runner::RunnerCmd),
    /// The lab's terminal UI: running tasks live, the queue, results, a form to queue more.
    Tui(cli::tui::TuiCmd),
}

/// Exit codes: 0 success, 1 the run failed (compare: a regression), 2 bad input (compare:
/// could not run), 3 compare inconclusive, 130 interrupted.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let shutdown = Shutdown::new();
    if let Err(e) = process::install_signal_handler(shutdown.clone()) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    // Leftovers of runs that were killed outright (their destructors never ran).
    xtask::instances::sweep_stale(&xtask::instances::scratch_root());
    let result = match cli.command {
        Command::Bench(cmd) => cmd.run(&shutdown),
        Command::Build(cmd) => cmd.run(&shutdown),
        Command::Fetch(cmd) => cmd.run(),
        Command::Compare(cmd) => cmd.run(&shutdown),
        Command::Start(cmd) => cmd.run(&shutdown),
        Command::Queue(cmd) => cmd.run(),
        Command::Runner(cmd) => cmd.run(&shutdown),
        Command::Tui(cmd) => cmd.run(&shutdown),
        Command::Loadgen(cmd) => cmd.run(&shutdown),
        Command::Flamegraph(cmd) => cmd.run(&shutdown),
        Command::Report(cmd) => cmd.run(),
        Command::Selfbench(cmd) => cmd.run(&shutdown),
    };
    let (code, message) = xtask::error::outcome(&result, shutdown.is_triggered());
    if let Some(message) = message {
        eprintln!("{message}");
    }
    ExitCode::from(code)
}
