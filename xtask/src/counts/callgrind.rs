//! Callgrind from outside the server it runs: its monitor commands (`zero`, `dump`,
//! `instrumentation on|off`) through `vgdb`, and the totals of the dumps it writes. Used
//! by the instruction counts (`instructions.rs`) and callgrind profiles (`profile.rs`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

/// Sends callgrind's monitor commands (`zero`, `dump`, `instrumentation on`, ...) to the
/// running server, in order, with one `vgdb` (what `callgrind_control` runs, one command
/// per process: a process costs ~0.1 s, waiting for valgrind to notice it, so a window's
/// two ends take one each).
pub(crate) fn monitor(
    commands: &[&str],
    pid: u32,
    vgdb_prefix: &Path,
    shutdown: &bench_core::shutdown::Shutdown,
) -> anyhow::Result<()> {
    let mut cmd = crate::process::command("vgdb");
    cmd.arg(format!("--vgdb-prefix={}", vgdb_prefix.display()))
        .arg(format!("--pid={pid}"));
    for (i, command) in commands.iter().enumerate() {
        if i > 0 {
            cmd.arg("-c");
        }
        cmd.args(command.split(' '));
    }
    let out = crate::process::output(cmd, "vgdb", shutdown, Some(Duration::from_secs(180)))?;
    // vgdb exits 0 on a command the tool does not know (it says so on stdout) and on a
    // broken packet exchange (`E NN error packet`, `error reading packet` on stderr).
    if !out.status.success()
        || out.stdout.contains("not recognised")
        || out.stderr.to_ascii_lowercase().contains("error")
    {
        bail!(
            "vgdb {} (pid {pid}) failed ({}): {}{}",
            commands.join(" -c "),
            out.status,
            out.stdout,
            out.stderr
        );
    }
    Ok(())
}

/// The dump callgrind wrote: `callgrind.out.N` beside the output file.
pub(crate) fn dump_file(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mut dumps: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("callgrind.out."))
        })
        .collect();
    dumps.sort();
    dumps
        .pop()
        .with_context(|| format!("callgrind wrote no dump in {}", dir.display()))
}

/// Instructions in a callgrind dump, less what `serverCron` cost: its calls follow the
/// wall clock (hz), not the requests, and callgrind's slowdown varies with the machine's
/// load.
pub fn total_instructions(file: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading callgrind's output {}", file.display()))?;
    let total = parse_total(&text).with_context(|| {
        format!(
            "{} has no `summary:` or `totals:` line; is it a callgrind output file?",
            file.display()
        )
    })?;
    Ok(total.saturating_sub(inclusive_cost(&text, "serverCron")))
}

/// The summed inclusive cost of every call to `function` in a callgrind dump: the cost
/// line that follows each `calls=` line under a `cfn=` naming it. Names are given once
/// with their id (`(12) serverCron`), later by id alone.
fn inclusive_cost(text: &str, function: &str) -> u64 {
    let mut names = std::collections::HashMap::new();
    let mut name_of = |spec: &str| -> String {
        let spec = spec.trim();
        match spec.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((id, rest)) if !rest.trim().is_empty() => {
                names.insert(id.to_string(), rest.trim().to_string());
                rest.trim().to_string()
            }
            Some((id, _)) => names.get(id).cloned().unwrap_or_default(),
            None => spec.to_string(),
        }
    };
    let (mut callee, mut after_calls, mut sum) = (String::new(), false, 0u64);
    for line in text.lines() {
        if after_calls {
            after_calls = false;
            if callee == function {
                sum += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            callee = name_of(spec);
        } else if let Some(spec) = line.strip_prefix("fn=") {
            name_of(spec);
        } else if line.starts_with("calls=") {
            after_calls = true;
        }
    }
    sum
}

fn parse_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callgrind_totals() {
        let text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n\nfn=(1) main\n5 10\n\nsummary: 123456789\ntotals: 123456789\n";
        assert_eq!(parse_total(text), Some(123_456_789));
        assert_eq!(parse_total("events: Ir\ntotals: 42 7\n"), Some(42));
        assert_eq!(parse_total("events: Ir\n"), None);
    }

    #[test]
    fn server_cron_inclusive_cost() {
        // Two calls of serverCron from processTimeEvents (named once, then by id), one of
        // another function, and serverCron's own lines (self cost, not counted again).
        let text = "events: Ir\nfn=(1) processTimeEvents\n0 10\ncfn=(2) serverCron\ncalls=1 0\n0 5000\n\
                    cfn=(3) beforeSleep\ncalls=1 0\n0 700\ncfn=(2)\ncalls=1 0\n0 4000\n\
                    fn=(2)\n0 300\ncfn=(4) clientsCron\ncalls=1 0\n0 200\nsummary: 100000\n";
        assert_eq!(inclusive_cost(text, "serverCron"), 9000);
        assert_eq!(inclusive_cost(text, "beforeSleep"), 700);
        assert_eq!(inclusive_cost(text, "nothing"), 0);
    }
}
