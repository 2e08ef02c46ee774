//! Profiles as folded stacks: `perf script` text in, flame graphs and top-function tables
//! out. Folding and rendering are inferno's (its library, not its binaries); this module
//! decides what a Valkey developer wants to see on top of that:
//!
//! - the root frame is the thread: `valkey-server` (the main thread), `I/O threads` (every
//!   `io_thd_N` merged), and background threads (`bio_*`, jemalloc's) under their own names,
//!   so the main thread and the I/O threads are two towers side by side;
//! - the top functions by self samples (the leaf frame) with their inclusive share;
//! - differential folding (inferno's) of a baseline against a candidate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufReader};

use inferno::collapse::Collapse;
use inferno::collapse::perf::{Folder, Options as FoldOptions};
use inferno::differential;
use inferno::flamegraph::{self, Options as FlameOptions};

/// The root frame every `io_thd_N` stack is merged under.
pub const IO_THREADS: &str = "I/O threads";

/// Folds `perf script` output into `stack count` lines, one per distinct stack, sorted,
/// with the thread as the root frame (see the module docs).
pub fn fold_perf_script(script: &[u8]) -> io::Result<String> {
    let mut options = FoldOptions::default();
    // One thread: output identical for identical input, whatever the machine.
    options.nthreads = 1;
    let mut folded = Vec::new();
    Folder::from(options).collapse(BufReader::new(script), &mut folded)?;
    let folded = String::from_utf8(folded)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(merge_threads(&folded))
}

/// Renames the root frame of `io_thd_N` stacks to [`IO_THREADS`] and sums stacks that
/// become equal; output sorted by stack.
pub fn merge_threads(folded: &str) -> String {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (stack, count) in parse(folded) {
        let stack = match stack.split_once(';') {
            Some((root, rest)) if is_io_thread(root) => format!("{IO_THREADS};{rest}"),
            None if is_io_thread(stack) => IO_THREADS.to_string(),
            _ => stack.to_string(),
        };
        *counts.entry(stack).or_default() += count;
    }
    folded_text(counts)
}

fn is_io_thread(comm: &str) -> bool {
    comm.strip_prefix("io_thd_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Folded text of stack counts, sorted by stack.
fn folded_text(counts: HashMap<String, u64>) -> String {
    let mut lines: Vec<_> = counts.into_iter().collect();
    lines.sort();
    let mut out = String::new();
    for (stack, n) in lines {
        let _ = writeln!(out, "{stack} {n}");
    }
    out
}

/// Puts `root` under every stack: callgrind merges threads, so its stacks get the process
/// as their root frame where perf's get the thread.
pub fn with_root(folded: &str, root: &str) -> String {
    let mut out = String::with_capacity(folded.len() + folded.lines().count() * (root.len() + 1));
    for (stack, count) in parse(folded) {
        let _ = writeln!(out, "{root};{stack} {count}");
    }
    out
}

/// The `(stack, count)` pairs of folded text; lines that are not `stack count` are skipped.
pub fn parse(folded: &str) -> impl Iterator<Item = (&str, u64)> {
    folded.lines().filter_map(|line| {
        let (stack, count) = line.trim_end().rsplit_once(' ')?;
        Some((stack, count.parse().ok()?))
    })
}

/// Samples per root frame (thread group), largest first.
pub fn threads(folded: &str) -> Vec<(String, u64)> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for (stack, count) in parse(folded) {
        let root = stack.split(';').next().unwrap_or(stack);
        *counts.entry(root).or_default() += count;
    }
    let mut out: Vec<_> = counts
        .into_iter()
        .map(|(root, n)| (root.to_string(), n))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// One function's share of the profile. Counts are in the profile's unit: inferno sums
/// each sample's period, so a `cpu-clock` profile counts nanoseconds of CPU time, a
/// `cycles` profile cycles, a callgrind profile instructions.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FunctionCost {
    pub function: String,
    /// Counts where it was the leaf frame.
    pub self_samples: u64,
    /// Counts where it was anywhere on the stack (once per stack).
    pub total_samples: u64,
    pub self_percent: f64,
    pub total_percent: f64,
}

/// The `limit` functions with the most self samples, ties by name. Thread root frames are
/// not functions and are left out.
pub fn top_functions(folded: &str, limit: usize) -> Vec<FunctionCost> {
    let mut self_counts: HashMap<&str, u64> = HashMap::new();
    let mut total_counts: HashMap<&str, u64> = HashMap::new();
    let mut all = 0u64;
    for (stack, count) in parse(folded) {
        all += count;
        let frames: Vec<&str> = stack.split(';').skip(1).collect();
        if let Some(leaf) = frames.last() {
            *self_counts.entry(leaf).or_default() += count;
        }
        let mut seen: Vec<&str> = Vec::with_capacity(frames.len());
        for frame in frames {
            if !seen.contains(&frame) {
                seen.push(frame);
                *total_counts.entry(frame).or_default() += count;
            }
        }
    }
    let percent = |n: u64| 100.0 * n as f64 / all.max(1) as f64;
    let mut out: Vec<FunctionCost> = self_counts
        .into_iter()
        .map(|(function, self_samples)| {
            let total_samples = total_counts.get(function).copied().unwrap_or(self_samples);
            FunctionCost {
                function: function.to_string(),
                self_samples,
                total_samples,
                self_percent: percent(self_samples),
                total_percent: percent(total_samples),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.self_samples
            .cmp(&a.self_samples)
            .then_with(|| a.function.cmp(&b.function))
    });
    out.truncate(limit);
    out
}

/// A Markdown table of [`top_functions`]; `count_name` is the unit of a count (`samples`,
/// `ns`, `instructions`).
pub fn top_table(top: &[FunctionCost], count_name: &str) -> String {
    let mut out = format!(
        "| function | self % | total % | self {count_name} |\n| :------- | -----: | ------: | ---: |\n"
    );
    for f in top {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {} |",
            crate::compare::escape_markdown(&f.function),
            f.self_percent,
            f.total_percent,
            f.self_samples
        );
    }
    out
}

/// GCC's names for the copies it makes of a function (`findBucket.lto_priv.0`,
/// `sdsfree.part.0`, `f.constprop.0.isra.0`) differ between builds of the same source.
/// Comparing two builds, each frame goes back to the function's own name.
pub fn strip_clone_suffixes(folded: &str) -> String {
    const CLONES: [&str; 5] = [".lto_priv.", ".constprop.", ".part.", ".isra.", ".cold"];
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (stack, n) in parse(folded) {
        let frames: Vec<&str> = stack
            .split(';')
            .map(|frame| {
                let cut = CLONES
                    .iter()
                    .filter_map(|c| frame.find(c))
                    .min()
                    .unwrap_or(frame.len());
                &frame[..cut]
            })
            .collect();
        *counts.entry(frames.join(";")).or_default() += n;
    }
    folded_text(counts)
}

/// A function whose share of the profile moved between a baseline and a candidate.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Mover {
    pub function: String,
    /// Self share of all counts, percent, in each profile.
    pub baseline_percent: f64,
    pub candidate_percent: f64,
}

impl Mover {
    pub fn delta(&self) -> f64 {
        self.candidate_percent - self.baseline_percent
    }
}

/// The `limit` functions whose self share moved most (either way), largest move first.
/// Shares, not counts: two profiles of different length compare directly. Compiler clone
/// suffixes are stripped first ([`strip_clone_suffixes`]).
pub fn top_movers(baseline: &str, candidate: &str, limit: usize) -> Vec<Mover> {
    let shares = |folded: &str| -> HashMap<String, f64> {
        top_functions(&strip_clone_suffixes(folded), usize::MAX)
            .into_iter()
            .map(|f| (f.function, f.self_percent))
            .collect()
    };
    let (before, after) = (shares(baseline), shares(candidate));
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    let mut movers: Vec<Mover> = names
        .into_iter()
        .map(|name| Mover {
            function: name.clone(),
            baseline_percent: before.get(name).copied().unwrap_or(0.0),
            candidate_percent: after.get(name).copied().unwrap_or(0.0),
        })
        .collect();
    movers.sort_by(|a, b| {
        b.delta()
            .abs()
            .total_cmp(&a.delta().abs())
            .then_with(|| a.function.cmp(&b.function))
    });
    movers.truncate(limit);
    movers
}

/// A Markdown table of [`top_movers`].
pub fn movers_table(movers: &[Mover]) -> String {
    let mut out = String::from(
        "| function | baseline self % | candidate self % | change (points) |\n| :------- | --------------: | ---------------: | --------------: |\n",
    );
    for m in movers {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:+.2} |",
            crate::compare::escape_markdown(&m.function),
            m.baseline_percent,
            m.candidate_percent,
            m.delta()
        );
    }
    out
}

/// What the flame graph says about itself.
#[derive(Clone, Debug)]
pub struct Title<'a> {
    pub title: &'a str,
    pub subtitle: &'a str,
    /// What one count is, e.g. `samples` or `instructions`.
    pub count_name: &'a str,
}

/// Renders folded stacks as an interactive SVG flame graph. Deterministic: the same
/// input gives the same bytes.
pub fn flamegraph_svg(folded: &str, title: &Title<'_>) -> io::Result<String> {
    let mut options = options(title);
    render(&mut options, folded)
}

/// Inferno's differential folding: `before after` counts per stack, the baseline scaled
/// to the candidate's total so the colours show where the share moved, not that one
/// profile had more samples. Compiler clone suffixes are stripped first, so a function
/// GCC cloned differently in the two builds is still one frame.
pub fn differential_folded(baseline: &str, candidate: &str) -> io::Result<String> {
    let mut out = Vec::new();
    differential::from_readers(
        differential::Options {
            normalize: true,
            strip_hex: true,
        },
        strip_clone_suffixes(baseline).as_bytes(),
        strip_clone_suffixes(candidate).as_bytes(),
        &mut out,
    )?;
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Renders differential folded stacks: frame widths are the candidate's, red grew and
/// blue shrank relative to the (normalized) baseline.
pub fn differential_svg(diff_folded: &str, title: &Title<'_>) -> io::Result<String> {
    let mut options = options(title);
    render(&mut options, diff_folded)
}

fn options<'a>(title: &Title<'_>) -> FlameOptions<'a> {
    let mut options = FlameOptions::default();
    options.title = title.title.to_string();
    options.subtitle = Some(title.subtitle.to_string());
    options.count_name = title.count_name.to_string();
    options.deterministic = true;
    options.hash = true;
    options
}

fn render(options: &mut FlameOptions<'_>, folded: &str) -> io::Result<String> {
    let mut svg = Vec::new();
    flamegraph::from_lines(options, folded.lines(), &mut svg)?;
    String::from_utf8(svg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Folds a callgrind dump (`callgrind.out`) into stacks of instructions.
///
/// callgrind records a call graph, not stacks: each function's own instructions and, per
/// call site, the inclusive instructions of the callee. Stacks are rebuilt by walking the
/// graph from its roots (functions no other function calls): a function's own instructions
/// are spread over the paths that reach it in proportion to what each caller's calls cost.
/// That is exact for a function reached by one path and an estimate for one reached by
/// several. Recursive calls are not followed. Paths worth less than `min_share` of the
/// total are cut; every function's own instructions are then rescaled over the paths that
/// remain, so **self costs are exact** and the total is the dump's. A function no kept path
/// reaches appears at the root with its own cost.
pub fn fold_callgrind(text: &str, min_share: f64) -> Result<String, String> {
    let graph = CallGraph::parse(text)?;
    let total: u64 = graph.self_cost.values().sum();
    let mut incoming: HashMap<&str, u64> = HashMap::new();
    for (caller, callees) in &graph.calls {
        for (callee, &cost) in callees {
            if callee != caller {
                *incoming.entry(callee.as_str()).or_default() += cost;
            }
        }
    }
    let mut functions = graph.functions();
    functions.sort_unstable();
    let mut walk = Walk {
        graph: &graph,
        incoming: &incoming,
        floor: min_share * total as f64,
        path: Vec::new(),
        out: Vec::new(),
    };
    for root in functions.iter().filter(|f| !incoming.contains_key(*f)) {
        walk.visit(root, 1.0);
    }
    // Rescale each function's paths so they add up to its own instructions.
    let mut emitted: HashMap<&str, f64> = HashMap::new();
    for (path, cost) in &walk.out {
        *emitted
            .entry(path.last().copied().unwrap_or_default())
            .or_default() += cost;
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (path, cost) in &walk.out {
        let f = path.last().copied().unwrap_or_default();
        let own = graph.self_cost.get(f).copied().unwrap_or(0) as f64;
        let n = (cost * own / emitted[f]).round() as u64;
        if n > 0 {
            *counts.entry(path.join(";")).or_default() += n;
        }
    }
    for f in functions {
        let own = graph.self_cost.get(f).copied().unwrap_or(0);
        if own > 0 && !emitted.contains_key(f) {
            *counts.entry(f.to_string()).or_default() += own;
        }
    }
    Ok(folded_text(counts))
}

struct Walk<'a> {
    graph: &'a CallGraph,
    /// Instructions of the calls into each function from other functions.
    incoming: &'a HashMap<&'a str, u64>,
    floor: f64,
    path: Vec<&'a str>,
    /// (path, own instructions of its last function on this path, before rescaling).
    out: Vec<(Vec<&'a str>, f64)>,
}

impl<'a> Walk<'a> {
    /// `share`: the fraction of `f`'s calls that come through the current path.
    fn visit(&mut self, f: &'a str, share: f64) {
        self.path.push(f);
        let own = self.graph.self_cost.get(f).copied().unwrap_or(0) as f64 * share;
        if own > 0.0 {
            self.out.push((self.path.clone(), own));
        }
        if let Some(callees) = self.graph.calls.get(f) {
            let mut callees: Vec<_> = callees.iter().collect();
            callees.sort();
            for (g, &cost) in callees {
                let g = g.as_str();
                if self.path.len() >= 128 || self.path.contains(&g) {
                    continue;
                }
                let into = self.incoming.get(g).copied().unwrap_or(0).max(1) as f64;
                let next = share * cost as f64 / into;
                if next * self.graph.inclusive(g) as f64 >= self.floor {
                    self.visit(g, next);
                }
            }
        }
        self.path.pop();
    }
}

#[derive(Default)]
struct CallGraph {
    self_cost: HashMap<String, u64>,
    /// caller → callee → inclusive instructions of those calls.
    calls: HashMap<String, HashMap<String, u64>>,
}

impl CallGraph {
    fn parse(text: &str) -> Result<Self, String> {
        let mut graph = CallGraph::default();
        // fn and cfn share one compression table: "(id) name" defines, "(id)" refers.
        let mut names: HashMap<String, String> = HashMap::new();
        let mut name = |spec: &str| -> String {
            let spec = spec.trim();
            match spec.strip_prefix('(').and_then(|r| r.split_once(')')) {
                Some((id, rest)) if !rest.trim().is_empty() => {
                    names.insert(id.to_string(), rest.trim().to_string());
                    rest.trim().to_string()
                }
                Some((id, _)) => names.get(id).cloned().unwrap_or_else(|| format!("({id})")),
                None => spec.to_string(),
            }
        };
        let mut current: Option<String> = None;
        let mut callee: Option<String> = None;
        let mut call_pending = false;
        let mut saw_events = false;
        for (n, line) in text.lines().enumerate() {
            if let Some(rest) = line.strip_prefix("events:") {
                saw_events = true;
                if rest.split_whitespace().next() != Some("Ir") {
                    return Err(format!(
                        "line {}: the first event is {rest:?}, expected Ir (instructions)",
                        n + 1
                    ));
                }
            } else if let Some(spec) = line.strip_prefix("fn=") {
                current = Some(name(spec));
                graph
                    .self_cost
                    .entry(current.clone().unwrap_or_default())
                    .or_default();
            } else if let Some(spec) = line.strip_prefix("cfn=") {
                callee = Some(name(spec));
            } else if line.starts_with("calls=") {
                call_pending = true;
            } else if line
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_digit() || b == b'+' || b == b'-' || b == b'*')
            {
                let mut fields = line.split_whitespace();
                let _position = fields.next();
                let cost: u64 = match fields.next() {
                    Some(c) => c
                        .parse()
                        .map_err(|_| format!("line {}: {c:?} is not a cost", n + 1))?,
                    None => 0,
                };
                let Some(f) = &current else {
                    return Err(format!("line {}: a cost before any fn=", n + 1));
                };
                if call_pending {
                    let to = callee.clone().unwrap_or_default();
                    *graph
                        .calls
                        .entry(f.clone())
                        .or_default()
                        .entry(to)
                        .or_default() += cost;
                    call_pending = false;
                } else {
                    *graph.self_cost.entry(f.clone()).or_default() += cost;
                }
            }
        }
        if !saw_events {
            return Err("no `events:` line: not a callgrind dump".to_string());
        }
        Ok(graph)
    }

    fn functions(&self) -> Vec<&str> {
        self.self_cost.keys().map(String::as_str).collect()
    }

    fn inclusive(&self, f: &str) -> u64 {
        self.self_cost.get(f).copied().unwrap_or(0)
            + self
                .calls
                .get(f)
                .map_or(0, |callees| callees.values().sum::<u64>())
    }
}

#[cfg(test)]
mod tests {

    const CALLGRIND: &str = "\
# callgrind format
events: Ir
fl=(1) server.c
fn=(1) main
10 5
cfn=(2) aeMain
calls=1 20
20 100
fn=(2)
5 10
cfn=(3) processCommand
calls=3 30
30 60
cfn=(4) lookupKey
calls=2 40
+1 30
fn=(3)
7 20
cfn=(4)
calls=4 40
* 40
fn=(4)
1 70
";

    #[test]
    fn callgrind_self_costs_are_exact_and_shared_callees_split_by_call_cost() {
        let folded = fold_callgrind(CALLGRIND, 0.0).unwrap();
        // lookupKey (70 own) is called from aeMain (30) and processCommand (40): 30 and 40.
        // processCommand's 20 own and 40 in lookupKey come only through aeMain.
        assert_eq!(
            folded,
            "main 5\nmain;aeMain 10\nmain;aeMain;lookupKey 30\nmain;aeMain;processCommand 20\nmain;aeMain;processCommand;lookupKey 40\n"
        );
        let total: u64 = parse(&folded).map(|(_, n)| n).sum();
        assert_eq!(total, 5 + 10 + 20 + 70);
    }

    #[test]
    fn callgrind_cut_paths_leave_self_costs_exact() {
        // lookupKey under aeMain is worth 30 of 105: below a 30% floor it is cut, and all of
        // lookupKey's 70 goes to the path that remains.
        let folded = fold_callgrind(CALLGRIND, 0.30).unwrap();
        assert!(!folded.contains("main;aeMain;lookupKey "), "{folded}");
        assert!(
            folded.contains("main;aeMain;processCommand;lookupKey 70\n"),
            "{folded}"
        );
        let total: u64 = parse(&folded).map(|(_, n)| n).sum();
        assert_eq!(total, 105);
    }

    #[test]
    fn callgrind_a_name_shared_by_two_functions_does_not_swallow_the_profile() {
        // callgrind names both the entry and __libc_start_call_main "(below main)", so the
        // graph has a cycle through __libc_start_main; main's cost must stay under main.
        let text = "events: Ir\nfn=(1) _start\n0 1\ncfn=(2) (below main)\ncalls=1 0\n0 1002\n\
                    fn=(2)\n0 1\ncfn=(3) __libc_start_main\ncalls=1 0\n0 1001\n\
                    cfn=(4) main\ncalls=1 0\n0 1000\n\
                    fn=(3)\n0 1\ncfn=(2)\ncalls=1 0\n0 1000\nfn=(4)\n0 1000\n";
        let folded = fold_callgrind(text, 0.0).unwrap();
        let top = top_functions(&folded, 1);
        assert_eq!(top[0].function, "main", "{folded}");
        assert_eq!(top[0].self_samples, 1000);
    }

    #[test]
    fn callgrind_recursive_calls_are_not_followed() {
        let text = "events: Ir\nfn=(1) f\n1 10\ncfn=(1)\ncalls=5 1\n1 50\n";
        assert_eq!(fold_callgrind(text, 0.0).unwrap(), "f 10\n");
    }

    #[test]
    fn not_a_callgrind_dump_is_an_error() {
        assert!(
            fold_callgrind("hello", 0.0)
                .unwrap_err()
                .contains("events:")
        );
        let bad = "events: Ir\nfn=(1) f\n1 ten\n";
        assert!(fold_callgrind(bad, 0.0).unwrap_err().contains("line 3"));
    }
    use super::*;

    const FOLDED: &str = "\
valkey-server;main;aeMain;processCommand;lookupKey 30
valkey-server;main;aeMain;processCommand 10
valkey-server;main;aeMain;beforeSleep 5
io_thd_1;IOThreadMain;readQueryFromClient 20
io_thd_2;IOThreadMain;readQueryFromClient 15
io_thd_2;IOThreadMain 5
bio_lazy_free;bioProcessBackgroundJobs 1
";

    #[test]
    fn io_threads_merge_under_one_root_and_counts_add() {
        let merged = merge_threads(FOLDED);
        assert!(merged.contains("I/O threads;IOThreadMain;readQueryFromClient 35\n"));
        assert!(merged.contains("I/O threads;IOThreadMain 5\n"));
        assert!(!merged.contains("io_thd_"));
        assert!(merged.contains("bio_lazy_free;bioProcessBackgroundJobs 1\n"));
        let total: u64 = parse(&merged).map(|(_, n)| n).sum();
        assert_eq!(total, 86);
    }

    #[test]
    fn only_numbered_io_threads_are_merged() {
        assert!(is_io_thread("io_thd_12"));
        assert!(!is_io_thread("io_thd_"));
        assert!(!is_io_thread("io_thd_x"));
        assert!(!is_io_thread("valkey-server"));
    }

    #[test]
    fn threads_are_counted_per_root() {
        let t = threads(&merge_threads(FOLDED));
        assert_eq!(
            t,
            [
                ("valkey-server".to_string(), 45),
                (IO_THREADS.to_string(), 40),
                ("bio_lazy_free".to_string(), 1)
            ]
        );
    }

    #[test]
    fn top_functions_rank_by_self_and_count_recursion_once() {
        let folded = "t;a;b;a 4\nt;a 2\nt;c 4\n";
        let top = top_functions(folded, 10);
        assert_eq!(top[0].function, "a");
        assert_eq!(top[0].self_samples, 6);
        assert_eq!(top[0].total_samples, 6, "a;b;a counts once");
        assert_eq!(top[1].function, "c");
        assert_eq!(top.len(), 2, "b is never a leaf: not listed");
    }

    #[test]
    fn percentages_are_of_all_samples() {
        let top = top_functions(&merge_threads(FOLDED), 3);
        assert_eq!(top[0].function, "readQueryFromClient");
        assert!((top[0].self_percent - 100.0 * 35.0 / 86.0).abs() < 1e-9);
        assert_eq!(top[1].function, "lookupKey");
        assert!((top[1].total_percent - 100.0 * 30.0 / 86.0).abs() < 1e-9);
        let table = top_table(&top, "samples");
        assert!(
            table.contains("| readQueryFromClient | 40.70 | 40.70 | 35 |"),
            "{table}"
        );
    }

    #[test]
    fn clone_suffixes_go_and_equal_stacks_merge() {
        let folded = "t;findBucket.lto_priv.0 3\nt;findBucket.constprop.0 2\nt;f.constprop.0.isra.0 1\nt;a.b 1\n";
        assert_eq!(
            strip_clone_suffixes(folded),
            "t;a.b 1\nt;f 1\nt;findBucket 5\n"
        );
    }

    #[test]
    fn movers_compare_shares_not_counts() {
        // The candidate ran twice as long; only c's share moved (a from 50% to 25%).
        let movers = top_movers("t;a 50\nt;b 50\n", "t;a 50\nt;b 100\nt;c 50\n", 10);
        assert_eq!(movers[0].function, "a");
        assert!((movers[0].delta() + 25.0).abs() < 1e-9);
        assert_eq!(movers[1].function, "c");
        assert!((movers[1].delta() - 25.0).abs() < 1e-9);
        assert_eq!(movers[2].function, "b");
        assert!(movers[2].delta().abs() < 1e-9);
        assert!(movers_table(&movers[..1]).contains("| a | 50.00 | 25.00 | -25.00 |"));
    }

    #[test]
    fn differential_scales_the_baseline_to_the_candidate() {
        let diff = differential_folded("t;a 10\nt;b 10\n", "t;a 30\nt;b 10\n").unwrap();
        // Baseline total 20 scaled to 40: a 20 → 30, b 20 → 10.
        assert!(diff.contains("t;a 20 30"), "{diff}");
        assert!(diff.contains("t;b 20 10"), "{diff}");
        let svg = differential_svg(
            &diff,
            &Title {
                title: "diff",
                subtitle: "s",
                count_name: "samples",
            },
        )
        .unwrap();
        assert!(svg.contains("<svg") && svg.contains("diff"));
    }
}
