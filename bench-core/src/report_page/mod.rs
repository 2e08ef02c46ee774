//! The report people look at: one or more runs' records in; a Markdown report, a
//! self-contained HTML page (charts inline as SVG, no external file or script) and the
//! charts (SVG + PNG) out. The caller reads the run directories and writes the files.
//!
//! Both documents are rendered from one list of [`Block`]s, so they say the same thing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::charts::{self, Chart, Spread};
use crate::compare::{self, CompareReport, Verdict};
use crate::result::{MemRecord, ResultRecord, SyncRecord};
use crate::stats;
use crate::tables;

mod context;
mod page;
mod sections;

pub use context::{CLIENT_BUSY, weak_run};
use page::*;
pub use page::{escape_html, html_structure};
use sections::*;

/// Time-series charts are drawn for runs at least this many seconds long.
pub const MIN_SERIES_SECONDS: usize = 3;
/// At most this many time-series charts per report.
const MAX_SERIES_CHARTS: usize = 24;

/// One run directory's records.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// The run id (the directory name).
    pub run_id: String,
    /// The command line that started it (`run.json`), for the reproduce line.
    pub command: Option<String>,
    /// A side of a compare (its records are the compare's short, paired slices).
    pub compare_side: bool,
    pub perf: Vec<ResultRecord>,
    pub mem: Vec<MemRecord>,
    pub sync: Vec<SyncRecord>,
    /// A compare run's `compare.json`.
    pub compare: Option<CompareReport>,
    /// A compare run's `--flamegraph` profiles, with each one's movers table.
    pub flamegraphs: Vec<(FlameGraphs, String)>,
}

/// One case profiled on both sides by `compare --flamegraph`: files `flamegraphs/<stem>.*`
/// (`.baseline.svg`, `.svg` for the candidate, `.diff.svg`, `.movers.md`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlameGraphs {
    pub case: String,
    pub stem: String,
}

impl Run {
    /// How legends name the run: its Valkey version, and the run id when versions repeat.
    fn version(&self) -> Option<String> {
        self.perf
            .first()
            .map(|r| r.valkey.version.clone())
            .or_else(|| self.mem.first().map(|r| r.valkey.version.clone()))
            .or_else(|| self.sync.first().map(|r| r.valkey.version.clone()))
    }
}

/// What [`build`] made.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub markdown: String,
    pub html: String,
    pub charts: Vec<Chart>,
}

/// A piece of the report.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    Heading(u8, String),
    Paragraph(String),
    List(Vec<String>),
    /// A Markdown pipe table (our renderers' output).
    Table(String),
    /// Index into the charts.
    Chart(usize),
    /// (text, relative link) pairs.
    Links(Vec<(String, String)>),
    /// A table folded under a summary line (`<details>`), for long ones.
    Folded(String, String),
}

/// Builds the report of `runs`; `chart_dir` is where the caller writes the chart files,
/// relative to the Markdown file (for its image links).
pub fn build(runs: &[Run], chart_dir: &str) -> Result<Rendered, String> {
    let mut blocks = Vec::new();
    let mut charts = Vec::new();
    blocks.push(Block::Heading(1, "valkey-bench report".into()));
    blocks.push(Block::List(runs.iter().map(describe_run).collect()));
    // A comparison opens with its verdict and chart; where it ran comes below them.
    for run in runs {
        if let Some(c) = &run.compare {
            compare_section(c, &run.run_id, &mut blocks, &mut charts)?;
            flamegraph_section(&run.flamegraphs, &mut blocks);
        }
    }
    // Before any number: what makes a run weak, how to repeat it, where it ran.
    // (A compare's sides are slices, short and paired by design: its verdicts say what
    // they can tell.)
    let mut warnings = Vec::new();
    for run in runs
        .iter()
        .filter(|r| !r.perf.is_empty() && !r.compare_side)
    {
        let summaries = tables::summarize(&run.perf);
        for w in context::weak_run(&run.perf, &summaries) {
            warnings.push(if runs.len() > 1 {
                format!("{}: {w}", run.run_id)
            } else {
                w
            });
        }
    }
    if !warnings.is_empty() {
        blocks.push(Block::Heading(2, "Read this first".into()));
        blocks.push(Block::List(warnings));
    }
    let commands: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let c = r.command.as_ref()?;
            Some(format!("{}: `{}`", r.run_id, c.replace('`', "'")))
        })
        .collect();
    if !commands.is_empty() {
        blocks.push(Block::Heading(2, "Reproduce".into()));
        blocks.push(Block::List(commands));
    }
    for run in runs.iter().filter(|r| !r.perf.is_empty()) {
        let first = &run.perf[0];
        blocks.push(Block::Heading(2, format!("Environment: {}", run.run_id)));
        blocks.push(Block::List(
            context::environment(first, &first.engine.name)
                .iter()
                .map(|l| compare::escape_markdown(l))
                .collect(),
        ));
    }
    if runs.iter().any(|r| !r.perf.is_empty()) {
        let labels = labels(runs, |r| !r.perf.is_empty());
        perf_section(runs, &labels, &mut blocks, &mut charts)?;
    }
    if runs.iter().any(|r| !r.mem.is_empty()) {
        let labels = labels(runs, |r| !r.mem.is_empty());
        mem_section(runs, &labels, &mut blocks, &mut charts)?;
    }
    if runs.iter().any(|r| !r.sync.is_empty()) {
        let labels = labels(runs, |r| !r.sync.is_empty());
        sync_section(runs, &labels, &mut blocks, &mut charts)?;
    }
    if blocks.len() == 2 {
        blocks.push(Block::Paragraph("These runs hold no records.".into()));
    }
    Ok(Rendered {
        markdown: markdown(&blocks, &charts, chart_dir),
        html: html(&blocks, &charts),
        charts,
    })
}

/// Legend labels for a section, one per run: the version where that tells the section's
/// runs (those `shown`) apart, else `version (run id)`.
fn labels(runs: &[Run], shown: fn(&Run) -> bool) -> Vec<String> {
    let versions: Vec<String> = runs
        .iter()
        .map(|r| r.version().unwrap_or_else(|| r.run_id.clone()))
        .collect();
    versions
        .iter()
        .zip(runs)
        .map(|(v, r)| {
            let same = versions
                .iter()
                .zip(runs)
                .filter(|(o, other)| *o == v && shown(other))
                .count();
            if same > 1 {
                format!("{v} ({})", r.run_id)
            } else {
                v.clone()
            }
        })
        .collect()
}

/// A section's heading for one run: its label, and its run id unless the label has it.
fn run_heading(label: &str, run: &Run) -> String {
    if label.contains(&run.run_id) {
        label.to_string()
    } else {
        format!("{label}: {}", run.run_id)
    }
}

fn describe_run(run: &Run) -> String {
    let mut parts = vec![format!("**{}**", run.run_id)];
    let first = run
        .perf
        .first()
        .map(|r| (&r.valkey, &r.host, &r.engine.name))
        .or_else(|| {
            run.mem
                .first()
                .map(|r| (&r.valkey, &r.host, &r.engine.name))
        })
        .or_else(|| {
            run.sync
                .first()
                .map(|r| (&r.valkey, &r.host, &r.engine.name))
        });
    if let Some((valkey, host, engine)) = first {
        parts.push(format!(
            "Valkey {} ({}), {} on {} ({} CPUs, {})",
            valkey.version, valkey.source_id, engine, host.hostname, host.cpus, host.model
        ));
    }
    let counts = [
        (run.perf.len(), "perf records"),
        (run.mem.len(), "mem records"),
        (run.sync.len(), "sync records"),
    ];
    for (n, what) in counts {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if let Some(c) = &run.compare {
        parts.push(format!(
            "compare of {} against {} ({} mode)",
            c.candidate.spec, c.baseline.spec, c.mode
        ));
    }
    parts.join("; ")
}

/// A file-name-safe form: `GET/32B/P16` → `get-32b-p16`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("GET/32B/P16/c50/io1"), "get-32b-p16-c50-io1");
        assert_eq!(slug("  a//b "), "a-b");
    }

    #[test]
    fn tables_become_html_with_escapes_undone_then_redone() {
        let t = "| case | ops |\n| :--- | ---: |\n| a\\|b <x> | 1 |\nnote `x`\n";
        let h = table_html(t);
        assert!(h.contains("<th>case</th><th>ops</th>"), "{h}");
        assert!(h.contains("<td>a|b &lt;x&gt;</td><td>1</td>"), "{h}");
        assert!(h.contains("<p>note <code>x</code></p>"), "{h}");
        let md = compare::escape_markdown("a<b>_c");
        assert_eq!(inline_html(&md), "a&lt;b&gt;_c");
    }

    #[test]
    fn bold_and_code_render() {
        assert_eq!(
            inline_html("**run** uses `x`"),
            "<strong>run</strong> uses <code>x</code>"
        );
    }

    #[test]
    fn structure_hides_svg_bodies() {
        let h = "<p>a</p><svg width=\"1\"><g>lots</g></svg><p>b</p>";
        assert_eq!(html_structure(h), "<p>a</p><svg>…</svg><p>b</p>");
    }

    #[test]
    fn an_empty_report_says_so() {
        let r = build(
            &[Run {
                run_id: "x".into(),
                ..Run::default()
            }],
            "charts",
        )
        .unwrap();
        assert!(r.markdown.contains("These runs hold no records."));
        assert!(r.charts.is_empty());
        assert!(r.html.starts_with("<!DOCTYPE html>"));
    }
}
