//! The report people look at: one or more runs' records in; a Markdown report, a
//! self-contained HTML page (charts inline as SVG, no external file or script) and the
//! charts (SVG + PNG) out. The caller reads the run directories and writes the files.
//!
//! Both documents are rendered from one list of [`Block`]s, so they say the same thing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::charts::{self, Chart, Spread};
use crate::compare::{self, CompareReport, Verdict};
use crate::report;
use crate::result::{MemRecord, ResultRecord, SyncRecord};
use crate::stats;

/// Time-series charts are drawn for runs at least this many seconds long.
pub const MIN_SERIES_SECONDS: usize = 3;
/// At most this many time-series charts per report.
const MAX_SERIES_CHARTS: usize = 24;

/// One run directory's records.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// The run id (the directory name).
    pub run_id: String,
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
}

/// Builds the report of `runs`; `chart_dir` is where the caller writes the chart files,
/// relative to the Markdown file (for its image links).
pub fn build(runs: &[Run], chart_dir: &str) -> Result<Rendered, String> {
    let mut blocks = Vec::new();
    let mut charts = Vec::new();
    blocks.push(Block::Heading(1, "valkey-bench report".into()));
    blocks.push(Block::List(runs.iter().map(describe_run).collect()));
    for run in runs {
        if let Some(c) = &run.compare {
            compare_section(c, &run.run_id, &mut blocks, &mut charts)?;
            flamegraph_section(&run.flamegraphs, &mut blocks);
        }
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

fn push_chart(
    name: &str,
    chart: &impl charts::Draw,
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    charts.push(charts::render(name, chart).map_err(|e| format!("chart {name}: {e}"))?);
    blocks.push(Block::Chart(charts.len() - 1));
    Ok(())
}

fn perf_section(
    runs: &[Run],
    labels: &[String],
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    blocks.push(Block::Heading(2, "Throughput and latency (perf)".into()));
    blocks.push(Block::Paragraph(report::PERF_NOTE.into()));
    for (run, label) in runs.iter().zip(labels) {
        if run.perf.is_empty() {
            continue;
        }
        blocks.push(Block::Heading(3, run_heading(label, run)));
        blocks.push(Block::Table(report::markdown_table(&report::summarize(
            &run.perf,
        ))));
    }

    // Cases in first-seen order, grouped by command in first-seen order.
    let mut commands: Vec<&str> = Vec::new();
    let mut cases: Vec<(&str, &str)> = Vec::new();
    for r in runs.iter().flat_map(|r| &r.perf) {
        if !commands.contains(&r.params.command.as_str()) {
            commands.push(&r.params.command);
        }
        if !cases.iter().any(|(c, _)| *c == r.case) {
            cases.push((&r.case, &r.params.command));
        }
    }
    cases.sort_by_key(|(_, command)| commands.iter().position(|c| c == command));
    let with_perf: Vec<(&Run, &String)> = runs
        .iter()
        .zip(labels)
        .filter(|(r, _)| !r.perf.is_empty())
        .collect();
    let throughput = charts::Throughput {
        series: with_perf.iter().map(|(_, l)| (*l).clone()).collect(),
        rows: cases
            .iter()
            .map(|(case, command)| charts::ThroughputRow {
                case: case.to_string(),
                command: command.to_string(),
                bars: with_perf
                    .iter()
                    .map(|(run, _)| {
                        let ops: Vec<f64> = run
                            .perf
                            .iter()
                            .filter(|r| r.case == *case)
                            .map(|r| r.metrics.ops_per_sec)
                            .collect();
                        Spread::of(&ops)
                    })
                    .collect(),
            })
            .collect(),
    };
    push_chart("throughput", &throughput, blocks, charts)?;

    // Latency curves per command, from the saved histograms (repetitions merged).
    let mut without = Vec::new();
    for command in &commands {
        let mut curves = Vec::new();
        for (run, label) in &with_perf {
            for (case, c) in &cases {
                if c != command {
                    continue;
                }
                let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
                for r in run.perf.iter().filter(|r| r.case == *case) {
                    let Some(h) = r.metrics.histogram.as_deref() else {
                        continue;
                    };
                    let h = crate::loadgen::stats::decode_histogram(h)
                        .map_err(|e| format!("{}: histogram of {case}: {e}", run.run_id))?;
                    match &mut merged {
                        Some(m) => m.add(&h).map_err(|e| format!("{case}: {e}"))?,
                        None => merged = Some(h),
                    }
                }
                match merged {
                    Some(h) if !h.is_empty() => curves.push(charts::Curve {
                        label: if with_perf.len() > 1 {
                            format!("{case} ({label})")
                        } else {
                            case.to_string()
                        },
                        points: charts::percentile_points(&h),
                    }),
                    _ => without.push(case.to_string()),
                }
            }
        }
        if !curves.is_empty() {
            let chart = charts::Percentiles {
                title: format!("{command} latency percentiles (repetitions merged)"),
                curves,
            };
            push_chart(
                &format!("latency-{}", slug(command)),
                &chart,
                blocks,
                charts,
            )?;
        }
    }
    without.sort();
    without.dedup();
    if !without.is_empty() {
        blocks.push(Block::Paragraph(format!(
            "No latency histogram for {} (valkey-benchmark records none; the native engine does).",
            without.join(", ")
        )));
    }

    // Per-second series of runs long enough to have one.
    let mut drawn = 0;
    let mut short = 0;
    for (run, label) in &with_perf {
        for (case, _) in &cases {
            let reps: Vec<&ResultRecord> = run.perf.iter().filter(|r| r.case == *case).collect();
            if reps.is_empty() {
                continue;
            }
            if reps
                .iter()
                .all(|r| r.metrics.series.len() <= MIN_SERIES_SECONDS)
            {
                short += 1;
                continue;
            }
            if drawn == MAX_SERIES_CHARTS {
                continue;
            }
            let lines = reps
                .iter()
                .map(|r| {
                    // A run's last second is partial: its count is not a rate, so it is left
                    // out (the measured run's is kept when its wall time shows it whole).
                    let warm = whole_seconds(&r.metrics.warmup_series, None);
                    let measured = whole_seconds(&r.metrics.series, Some(r.metrics.wall_secs));
                    let offset = r.metrics.warmup_series.len() as f64;
                    let point = |s: &crate::loadgen::stats::SecondReport, offset: f64| {
                        (f64::from(s.second) - offset, s.ops as f64, s.p99_us as f64)
                    };
                    charts::SeriesLine {
                        label: format!("repetition {}", r.repetition),
                        points: warm
                            .iter()
                            .map(|s| point(s, offset))
                            .chain(measured.iter().map(|s| point(s, 0.0)))
                            .collect(),
                    }
                })
                .collect();
            let chart = charts::TimeSeries {
                title: format!("{case} per second, {label}"),
                lines,
            };
            drawn += 1;
            push_chart(
                &format!("series-{drawn:02}-{}", slug(case)),
                &chart,
                blocks,
                charts,
            )?;
        }
    }
    if short > 0 {
        blocks.push(Block::Paragraph(format!(
            "{short} case(s) ran for less than {MIN_SERIES_SECONDS} s per repetition, too short \
             for a per-second series; set `measure_seconds` (and `warmup_seconds`) in a suite \
             file to see one."
        )));
    }
    Ok(())
}

/// The first record schema whose mem `bytes_per_item` is the data's memory alone.
const MEM_SCHEMA: u32 = 6;

fn mem_section(
    runs: &[Run],
    labels: &[String],
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    blocks.push(Block::Heading(2, "Memory efficiency (mem)".into()));
    blocks.push(Block::Paragraph(report::MEM_NOTE.into()));
    let older: Vec<&str> = runs
        .iter()
        .filter(|run| run.mem.iter().any(|r| r.schema < MEM_SCHEMA))
        .map(|run| run.run_id.as_str())
        .collect();
    if !older.is_empty() {
        blocks.push(Block::Paragraph(format!(
            "Warning: {} measured with record schema < {MEM_SCHEMA}, whose bytes/item also \
             counts client buffers resized between its readings and the server's first-call \
             allocations (each 1 to 2 bytes/item at 20,000 items, more with fewer items): \
             compare those runs with each other, not with newer ones.",
            older.join(", ")
        )));
    }
    let groups = per_run_then_grouped(
        runs,
        labels,
        |run| &run.mem,
        report::mem_table,
        |r: &MemRecord| {
            let p = &r.params;
            let mut line = format!("{} k{}", p.data_type, p.key_size);
            if p.field_size > 0 {
                let _ = write!(line, " f{}", p.field_size);
            }
            if p.expiry {
                line.push_str(" ttl");
            }
            (line, p.value_size)
        },
        blocks,
    );
    let points = groups
        .into_iter()
        .map(|(line, value_size, records)| charts::MemPoint {
            line,
            value_size: value_size as f64,
            bytes_per_item: median_of(&records, |r| r.metrics.bytes_per_item),
            overhead_bytes_per_item: median_of(&records, |r| r.metrics.overhead_bytes_per_item),
        })
        .collect();
    push_chart("memory", &charts::Memory { points }, blocks, charts)
}

fn sync_section(
    runs: &[Run],
    labels: &[String],
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    blocks.push(Block::Heading(2, "Full sync (sync)".into()));
    blocks.push(Block::Paragraph(report::SYNC_NOTE.into()));
    let groups = per_run_then_grouped(
        runs,
        labels,
        |run| &run.sync,
        report::sync_table,
        |r: &SyncRecord| {
            let p = &r.params;
            let mut line = if p.diskless_sync { "diskless" } else { "disk" }.to_string();
            if p.diskless_load != "disabled" {
                let _ = write!(line, ", load {}", p.diskless_load);
            }
            if p.replicas > 1 {
                let _ = write!(line, ", {} replicas", p.replicas);
            }
            if p.write_load {
                line.push_str(" + writes");
            }
            (line, p.data_bytes)
        },
        blocks,
    );
    let points = groups
        .into_iter()
        .map(|(line, data_bytes, records)| charts::SyncPoint {
            line,
            data_bytes: data_bytes as f64,
            sync_secs: median_of(&records, |r| r.metrics.sync_secs),
            throughput_bytes_per_sec: median_of(&records, |r| r.metrics.throughput_bytes_per_sec),
        })
        .collect();
    push_chart("sync", &charts::Sync { points }, blocks, charts)
}

/// A suite's records: a heading and `table` per run, then the records of all runs grouped
/// by `key` = (chart line, x), lines in first-seen order (suffixed with the run's label when
/// several runs have records), x ascending.
fn per_run_then_grouped<'a, R>(
    runs: &'a [Run],
    labels: &[String],
    records: fn(&Run) -> &Vec<R>,
    table: fn(&[R]) -> String,
    key: impl Fn(&R) -> (String, u64),
    blocks: &mut Vec<Block>,
) -> Vec<(String, u64, Vec<&'a R>)> {
    let many = runs.iter().filter(|r| !records(r).is_empty()).count() > 1;
    let mut groups: BTreeMap<(String, u64), Vec<&R>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (run, label) in runs.iter().zip(labels) {
        if records(run).is_empty() {
            continue;
        }
        blocks.push(Block::Heading(3, run_heading(label, run)));
        blocks.push(Block::Table(table(records(run))));
        for r in records(run) {
            let (mut line, x) = key(r);
            if many {
                let _ = write!(line, " ({label})");
            }
            if !order.contains(&line) {
                order.push(line.clone());
            }
            groups.entry((line, x)).or_default().push(r);
        }
    }
    let mut out = Vec::new();
    for line in order {
        for ((l, x), rs) in &groups {
            if *l == line {
                out.push((line.clone(), *x, rs.clone()));
            }
        }
    }
    out
}

fn median_of<R>(records: &[&R], f: fn(&R) -> f64) -> f64 {
    stats::median(&records.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(0.0)
}

fn compare_section(
    c: &CompareReport,
    label: &str,
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    blocks.push(Block::Heading(
        2,
        format!(
            "Compare: {} against {} ({})",
            c.candidate.spec, c.baseline.spec, label
        ),
    ));
    let regressions = c.count(Verdict::Regression);
    blocks.push(Block::Paragraph(format!(
        "{} suite, {} mode, threshold {}%: {} regression(s), {} improvement(s), {} no change, \
         {} unstable; {} after {:.0} s.",
        c.suite,
        c.mode,
        c.threshold_pct,
        regressions,
        c.count(Verdict::Improvement),
        c.count(Verdict::NoChange),
        c.count(Verdict::Unstable),
        c.stopped,
        c.elapsed_secs
    )));
    blocks.push(Block::Table(compare::verdict_table(c)));
    let rows = c
        .cases
        .iter()
        .filter_map(|case| {
            let m = case.metrics.first()?;
            let cmp = &m.comparison;
            let pct = |r: Option<f64>| r.map(|r| (r - 1.0) * 100.0);
            Some(charts::CompareRow {
                label: format!("{} · {}", case.case, m.label),
                // The unit is in the row's label.
                values: format!(
                    "{} → {}",
                    charts::si(cmp.baseline_median),
                    charts::si(cmp.candidate_median)
                ),
                change_pct: cmp.change_pct(),
                ci_pct: pct(cmp.ci_low).zip(pct(cmp.ci_high)),
                verdict: case.verdict,
            })
        })
        .collect();
    let side = |s: &compare::SideInfo| {
        if s.spec == s.version {
            s.spec.clone()
        } else {
            format!("{} (Valkey {})", s.spec, s.version)
        }
    };
    let chart = charts::Compare {
        title: format!(
            "{} against {}: change per case",
            side(&c.candidate),
            side(&c.baseline)
        ),
        threshold_pct: c.threshold_pct,
        rows,
    };
    push_chart(
        &format!("compare-{}", slug(&c.run_id)),
        &chart,
        blocks,
        charts,
    )
}

fn flamegraph_section(profiled: &[(FlameGraphs, String)], blocks: &mut Vec<Block>) {
    if profiled.is_empty() {
        return;
    }
    blocks.push(Block::Heading(
        3,
        "Where the time moved (flame graphs)".into(),
    ));
    blocks.push(Block::Paragraph(
        "Each case was profiled on both sides (perf, after the verdicts). In the differential \
         flame graph widths are the candidate's; red grew and blue shrank against the \
         baseline. The table lists the functions whose share of the server's CPU moved most."
            .into(),
    ));
    for (f, movers) in profiled {
        blocks.push(Block::Heading(4, f.case.clone()));
        let file = |suffix: &str| format!("flamegraphs/{}{suffix}", f.stem);
        blocks.push(Block::Links(vec![
            ("differential flame graph".into(), file(".diff.svg")),
            ("baseline".into(), file(".baseline.svg")),
            ("candidate".into(), file(".svg")),
        ]));
        blocks.push(Block::Table(movers.clone()));
    }
}

/// The seconds of a series that were whole: all but the last, unless `wall_secs` shows the
/// run lasted through the end of its last second.
fn whole_seconds(
    series: &[crate::loadgen::stats::SecondReport],
    wall_secs: Option<f64>,
) -> &[crate::loadgen::stats::SecondReport] {
    match series.last() {
        Some(last) if wall_secs.is_some_and(|w| w >= f64::from(last.second) + 1.0) => series,
        Some(_) => &series[..series.len() - 1],
        None => series,
    }
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

// ---------------------------------------------------------------------------------------
// Markdown and HTML

fn markdown(blocks: &[Block], charts: &[Chart], chart_dir: &str) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(
                    out,
                    "{} {}\n",
                    "#".repeat(usize::from(*level)),
                    compare::escape_markdown(text)
                );
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(out, "- {item}");
                }
                out.push('\n');
            }
            Block::Table(table) => {
                let _ = writeln!(out, "{}", table.trim_end());
                out.push('\n');
            }
            Block::Links(links) => {
                for (text, href) in links {
                    let _ = writeln!(out, "- [{}]({href})", compare::escape_markdown(text));
                }
                out.push('\n');
            }
            Block::Chart(i) => {
                let c = &charts[*i];
                let _ = writeln!(
                    out,
                    "![{}]({chart_dir}/{}.png)\n",
                    compare::escape_markdown(&c.title),
                    c.name
                );
            }
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;\
max-width:1060px;margin:2em auto;padding:0 1em;color:#1a1a1a;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f3f3f6}\
td:not(:last-child){white-space:nowrap}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}\
figcaption{font-size:0.85em;color:#555}";

fn html(blocks: &[Block], charts: &[Chart]) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let title = blocks
        .iter()
        .find_map(|b| match b {
            Block::Heading(1, t) => Some(t.as_str()),
            _ => None,
        })
        .unwrap_or("valkey-bench report");
    let _ = writeln!(out, "<title>{}</title>", escape_html(title));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", escape_html(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "<p>{}</p>", inline_html(text));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", inline_html(item));
                }
                out.push_str("</ul>\n");
            }
            Block::Table(table) => out.push_str(&table_html(table)),
            Block::Links(links) => {
                out.push_str("<ul>\n");
                for (text, href) in links {
                    let _ = writeln!(
                        out,
                        "<li><a href=\"{}\">{}</a></li>",
                        escape_html(href),
                        escape_html(text)
                    );
                }
                out.push_str("</ul>\n");
            }
            Block::Chart(i) => {
                let c = &charts[*i];
                let _ = writeln!(
                    out,
                    "<figure id=\"{}\">\n{}\n<figcaption>{} ({}.svg, {}.png)</figcaption>\n</figure>",
                    c.name,
                    strip_xml_declaration(&c.svg),
                    escape_html(&c.title),
                    c.name,
                    c.name
                );
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text that may carry Markdown escapes, `**bold**` and `` `code` ``, as HTML.
fn inline_html(text: &str) -> String {
    let plain = unescape_markdown(text);
    let mut out = String::new();
    let mut bold = false;
    let mut code = false;
    let mut rest = plain.as_str();
    while let Some(c) = rest.chars().next() {
        if !code && rest.starts_with("**") {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = &rest[2..];
            continue;
        }
        if c == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        } else {
            out.push_str(&escape_html(&c.to_string()));
        }
        rest = &rest[c.len_utf8()..];
    }
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</strong>");
    }
    out
}

/// Undoes [`compare::escape_markdown`]: backslash escapes and the three entities.
fn unescape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Splits a pipe-table row into cells, keeping `\|` inside a cell.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            cell.push('\\');
            cell.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            out.push(cell.trim().to_string());
            cell.clear();
        } else {
            cell.push(c);
        }
    }
    out.push(cell.trim().to_string());
    out
}

/// A Markdown pipe table as an HTML table; lines that are not table rows become paragraphs.
fn table_html(table: &str) -> String {
    let mut out = String::new();
    let mut rows = table.lines().filter(|l| !l.trim().is_empty()).peekable();
    let mut in_table = false;
    while let Some(line) = rows.next() {
        if !line.trim_start().starts_with('|') {
            if in_table {
                out.push_str("</tbody></table>\n");
                in_table = false;
            }
            let _ = writeln!(out, "<p>{}</p>", inline_html(line));
            continue;
        }
        let is_separator = |l: &str| l.trim().chars().all(|c| matches!(c, '|' | '-' | ':' | ' '));
        if !in_table && rows.peek().is_some_and(|next| is_separator(next)) {
            out.push_str("<table><thead><tr>");
            for cell in cells(line) {
                let _ = write!(out, "<th>{}</th>", inline_html(&cell));
            }
            out.push_str("</tr></thead><tbody>\n");
            rows.next();
            in_table = true;
            continue;
        }
        out.push_str("<tr>");
        for cell in cells(line) {
            let _ = write!(out, "<td>{}</td>", inline_html(&cell));
        }
        out.push_str("</tr>\n");
    }
    if in_table {
        out.push_str("</tbody></table>\n");
    }
    out
}

/// The page with every inline SVG reduced to its chart name: its structure, for snapshots.
pub fn html_structure(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("</svg>")
            .map_or(rest.len(), |e| start + e + "</svg>".len());
        out.push_str("<svg>…</svg>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
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
