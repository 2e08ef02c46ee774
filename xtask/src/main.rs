//! `cargo xtask`: parse flags, install the signal handler, dispatch, map errors to exit codes.

use std::process::ExitCode;

use bench_core::shutdown::Shutdown;
use clap::{CommandFactory, Parser, Subcommand};
use xtask::cli;
use xtask::process;

/// valkey-bench, the performance lab for Valkey: builds it from a pinned or given source,
/// starts servers (standalone, replicas, cluster, TLS), drives them with its own load
/// generator, compares a candidate against a baseline with a verdict, and runs campaigns
/// from a task queue. Exit codes, the same for every command: 0 success, 1 a regression
/// found, 2 could not run (bad input, a failed build, a server that died), 3 inconclusive,
/// 130 interrupted.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    after_help = "Examples:\n  cargo xtask bench                       # the default perf suite on pinned Valkey 8.1.1\n  cargo xtask compare --baseline 8.1.1 --candidate ~/src/valkey\n  cargo xtask queue add bench --quick && cargo xtask runner --once\n\nThe manual: README.md and docs/ in the repository."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a benchmark suite and write results/<run-id>/.
    #[command(after_help = EXAMPLES_BENCH)]
    Bench(cli::bench::BenchCmd),
    /// Baseline against candidate: exact counts say which cases changed, interleaved
    /// trials which way, and a verdict. Exit 0 no regression, 1 regression, 2 could not
    /// run, 3 inconclusive (no regression, some cases undecided).
    #[command(after_help = EXAMPLES_COMPARE)]
    Compare(cli::compare::CompareCmd),
    /// The highest rate one case sustains within a latency objective: bracket, bisect,
    /// each rate decided by trials on fresh servers, then verified. Exit 0 verified, 2
    /// could not run, 3 found but not verified (or none in the rates tried).
    #[command(after_help = EXAMPLES_CAPACITY)]
    Capacity(cli::capacity::CapacityCmd),
    /// Fetch and build Valkey (or find the build in the cache).
    #[command(after_help = EXAMPLES_BUILD)]
    Build(cli::build::BuildCmd),
    /// Download and verify pinned Valkey sources into the cache without building them.
    #[command(after_help = EXAMPLES_FETCH)]
    Fetch(cli::fetch::FetchCmd),
    /// Profile a server under a workload: a flame graph (perf or callgrind), top functions,
    /// and with --diff a differential flame graph against a baseline.
    #[command(after_help = EXAMPLES_FLAMEGRAPH)]
    Flamegraph(cli::flamegraph::FlamegraphCmd),
    /// Render the HTML report, Markdown and charts of one or more runs (also written at
    /// the end of bench and compare).
    #[command(after_help = EXAMPLES_REPORT)]
    Report(cli::report::ReportCmd),
    /// Drive a server with the native load generator.
    #[command(after_help = EXAMPLES_LOADGEN)]
    Loadgen(cli::loadgen::LoadgenCmd),
    /// Compare the native generator's cost per request with valkey-benchmark's.
    #[command(after_help = EXAMPLES_SELFBENCH)]
    Selfbench(cli::selfbench::SelfbenchCmd),
    /// Start local valkey-server instances and keep them up until Ctrl-C.
    #[command(after_help = EXAMPLES_START)]
    Start(cli::start::StartCmd),
    /// The lab's task queue: add (bench's flags, validated first), list, show, cancel,
    /// retry, remove.
    #[command(after_help = EXAMPLES_QUEUE)]
    Queue(cli::queue::QueueCmd),
    /// Take tasks from the queue and run them until stopped (--once: until it is empty).
    #[command(after_help = EXAMPLES_RUNNER)]
    Runner(cli::runner::RunnerCmd),
    /// The lab's terminal UI: running tasks live, the queue, results, a form to queue more.
    #[command(after_help = EXAMPLES_TUI)]
    Tui(cli::tui::TuiCmd),
    /// Write man pages: cargo-xtask.1 and one per command (cargo-xtask-bench.1, ...).
    #[command(after_help = EXAMPLES_MAN)]
    Man {
        /// The directory to write them to (created if missing).
        #[arg(long, default_value = "target/man", value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// The agent on a remote host (started by xtask over ssh; not for people): runs that
    /// host's servers, stops them when its stdin closes or its lease runs out.
    #[command(hide = true)]
    Agent {
        #[arg(long, value_name = "DIR")]
        work_dir: std::path::PathBuf,
        #[arg(long, value_name = "MS")]
        lease_ms: u64,
    },
}

const EXAMPLES_BENCH: &str = "Examples:
  cargo xtask bench                                    # the default perf suite, pinned 8.1.1
  cargo xtask bench --valkey-src ~/src/valkey --quick  # your tree, the smoke matrix
  cargo xtask bench --commands GET,SET --value-sizes 16,1K --pipelines 1..64x2
  cargo xtask bench --suite mem --topology cluster:3x0";
const EXAMPLES_COMPARE: &str = "Examples:
  cargo xtask compare --baseline 8.1.1 --candidate ~/src/valkey
  cargo xtask compare --valkey-src ~/src/valkey --baseline unstable --candidate HEAD --quick
  cargo xtask compare --baseline 8.1.1 --candidate 9.1.2 --cases GET/32B/P16 --mode time";
const EXAMPLES_CAPACITY: &str = "Examples:
  cargo xtask capacity --slo 'p99<=1ms'                 # GET 32 B, pipeline 16, 50 connections
  cargo xtask capacity --slo 'p99<=500us,p99.9<=2ms,errors<=0' --commands SET --value-sizes 1K
  cargo xtask capacity --slo 'p99<=1ms' --start 50000 --resolution 1 --json";
const EXAMPLES_BUILD: &str = "Examples:
  cargo xtask build --json                             # pinned 8.1.1: paths and source id
  cargo xtask build --valkey-src ~/src/valkey --ref HEAD~3";
const EXAMPLES_FETCH: &str = "Examples:
  cargo xtask fetch                                    # every pinned version
  cargo xtask fetch --valkey-version 9.1.2 --json";
const EXAMPLES_FLAMEGRAPH: &str = "Examples:
  cargo xtask flamegraph --command GET --pipeline 16 --io-threads 2
  cargo xtask flamegraph --valkey 9.1.2 --diff 8.1.1 --command SET
  cargo xtask flamegraph --profiler callgrind --command GET   # no perf needed";
const EXAMPLES_REPORT: &str = "Examples:
  cargo xtask report results/20261206T213407Z-perf-b83c
  cargo xtask report results/RUN_A results/RUN_B --out /tmp/both   # one page, both runs";
const EXAMPLES_LOADGEN: &str = "Examples:
  cargo xtask loadgen --port 6379 --command 'SET {key} {value}' --duration 10
  cargo xtask loadgen --port 7000 --cluster --workload basic_rw --rate 50000 --json";
const EXAMPLES_SELFBENCH: &str = "Examples:
  cargo xtask selfbench                # the native generator beside valkey-benchmark
  cargo xtask selfbench --cluster      # what cluster routing costs it
  cargo xtask selfbench --instructions # each client's instructions per request, exactly";
const EXAMPLES_START: &str = "Examples:
  cargo xtask start --count 2 --json
  cargo xtask start --topology cluster:3x1 --tls";
const EXAMPLES_QUEUE: &str = "Examples:
  cargo xtask queue add bench --valkey-version 8.1.1,9.1.2 --commands GET,SET --pipelines 1..64x2
  cargo xtask queue list
  cargo xtask queue retry ID --queue valkey://127.0.0.1:6400/lab";
const EXAMPLES_RUNNER: &str = "Examples:
  cargo xtask runner --metrics-addr 127.0.0.1:9464     # until Ctrl-C or SIGTERM
  cargo xtask runner --once --queue valkey://127.0.0.1:6400/lab";
const EXAMPLES_MAN: &str = "Examples:
  cargo xtask man && man target/man/cargo-xtask-compare.1
  cargo xtask man --out /usr/local/share/man/man1";
const EXAMPLES_TUI: &str = "Examples:
  cargo xtask tui
  cargo xtask tui --queue valkey://127.0.0.1:6400/lab";

/// Exit codes, the same for every command: 0 success, 1 a regression found (compare), 2
/// could not run (bad input or a failure), 3 compare inconclusive, 130 interrupted, 141
/// the output's reader left early.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let shutdown = Shutdown::new();
    if let Err(e) = process::install_signal_handler(shutdown.clone()) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    // Leftovers of runs that were killed outright (their destructors never ran).
    xtask::instances::sweep_stale(&xtask::instances::scratch_root());
    quiet_when_the_reader_leaves();
    let run = std::panic::AssertUnwindSafe(|| match cli.command {
        Command::Bench(cmd) => cmd.run(&shutdown),
        Command::Build(cmd) => cmd.run(&shutdown),
        Command::Capacity(cmd) => cmd.run(&shutdown),
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
        Command::Man { out } => write_man_pages(&out),
        Command::Agent { work_dir, lease_ms } => xtask::host::agent::serve(
            &work_dir,
            std::time::Duration::from_millis(lease_ms.clamp(500, 600_000)),
            &shutdown,
        ),
    });
    let result = match std::panic::catch_unwind(run) {
        Ok(result) => result,
        // The guards have stopped what the command started while the panic unwound.
        Err(payload) if stdout_closed(payload_text(&*payload)) => {
            return ExitCode::from(xtask::error::OUTPUT_CLOSED);
        }
        Err(payload) => std::panic::resume_unwind(payload),
    };
    let (code, message) = xtask::error::outcome(&result, shutdown.is_triggered());
    if let Some(message) = message {
        eprintln!("{message}");
    }
    ExitCode::from(code)
}

/// `cargo xtask queue list --json | head`: a reader that stops reading is no crash.
/// Rust ignores SIGPIPE, so the next write fails and `println!` panics; that panic is
/// not reported, it unwinds (the guards stop any server the command started), and the
/// process exits 141, as a tool killed by SIGPIPE: not 0, since the command's own
/// outcome (compare's verdict, say) was never reached.
fn quiet_when_the_reader_leaves() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !stdout_closed(payload_text(info.payload())) {
            report(info);
        }
    }));
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default()
}

/// Whether a panic is `println!`'s on a closed pipe.
fn stdout_closed(message: &str) -> bool {
    message.starts_with("failed printing to stdout") && message.contains("Broken pipe")
}

/// `cargo-xtask.1` and `cargo-xtask-<command>.1` into `out`, each with its examples.
fn write_man_pages(out: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let top = Cli::command();
    let mut pages = vec![("cargo-xtask".to_string(), top.clone())];
    for sub in top.get_subcommands() {
        // The page's title is its file's name; its usage line says `cargo xtask CMD`.
        let name = format!("cargo-xtask-{}", sub.get_name());
        let bin = format!("cargo xtask {}", sub.get_name());
        // clap names take 'static text; a handful of short strings, once per process.
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        pages.push((name, sub.clone().name(static_name).bin_name(bin)));
    }
    for (name, command) in pages {
        let path = out.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .title(name.clone())
            .render(&mut page)?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A man page per command, named as the user types it, with its examples.
    #[test]
    fn man_pages_and_completions_cover_every_command() {
        let dir = tempfile::tempdir().unwrap();
        write_man_pages(dir.path()).unwrap();
        let compare = std::fs::read_to_string(dir.path().join("cargo-xtask-compare.1")).unwrap();
        assert!(
            compare.contains(".TH cargo-xtask-compare 1"),
            "{compare:.300}"
        );
        assert!(
            compare.contains("cargo xtask compare \\-\\-baseline 8.1.1"),
            "its examples: {compare}"
        );
        for sub in Cli::command().get_subcommands() {
            let page = dir.path().join(format!("cargo-xtask-{}.1", sub.get_name()));
            assert!(page.is_file(), "{}", page.display());
        }
    }

    /// Every example in every `--help` parses: the help and the binary agree.
    #[test]
    fn every_help_example_parses() {
        let mut checked = 0;
        let top = Cli::command();
        let helps = std::iter::once(top.get_after_help().map(|h| h.to_string()))
            .chain(
                top.get_subcommands()
                    .map(|s| s.get_after_help().map(|h| h.to_string())),
            )
            .flatten();
        for help in helps {
            for line in help.lines() {
                for example in line.split("&&") {
                    let Some(rest) = example.trim().strip_prefix("cargo xtask ") else {
                        continue;
                    };
                    let rest = rest.split(" #").next().unwrap_or(rest);
                    // A shell's redirection is not an argument.
                    let rest = rest.split(" > ").next().unwrap_or(rest);
                    let mut args = vec!["cargo-xtask".to_string()];
                    // Words, a 'quoted phrase' being one.
                    let mut quoted = None::<String>;
                    for word in rest.split_whitespace() {
                        match (&mut quoted, word.strip_prefix('\'')) {
                            (None, Some(start)) if start.ends_with('\'') => {
                                args.push(start.trim_end_matches('\'').to_string())
                            }
                            (None, Some(start)) => quoted = Some(start.to_string()),
                            (Some(q), _) if word.ends_with('\'') => {
                                args.push(format!("{q} {}", word.trim_end_matches('\'')));
                                quoted = None;
                            }
                            (Some(q), _) => *q = format!("{q} {word}"),
                            (None, None) => args.push(word.to_string()),
                        }
                    }
                    if let Err(e) = Cli::try_parse_from(&args) {
                        panic!("{args:?} does not parse: {e}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 25, "only {checked} examples found");
    }
}
