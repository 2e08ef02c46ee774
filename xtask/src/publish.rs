//! Writing reports: read run directories, render (`bench_core::report_page`), write
//! `report.md`, `report.html` and `charts/*.{svg,png}`. Used by `cargo xtask report` and
//! at the end of `bench` and `compare`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use bench_core::charts;
use bench_core::compare::CompareReport;
use bench_core::report_page::{self, Run};
use serde_json::Value;

use crate::rundir::write_atomically;

/// Where Debian's fonts-dejavu-core puts the font; others are searched for after it.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// What a report run wrote.
#[derive(Debug, serde::Serialize)]
pub struct Written {
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// Reads every run in `dirs` and writes the report into `out`.
pub fn write(dirs: &[PathBuf], out: &Path) -> anyhow::Result<Written> {
    let mut runs = Vec::new();
    for dir in dirs {
        runs.extend(read_runs(dir)?);
    }
    load_font()?;
    let rendered =
        report_page::build(&runs, "charts").map_err(|e| anyhow::anyhow!("rendering: {e}"))?;
    // Created only now: a bad directory argument must not leave an empty one behind.
    let chart_dir = out.join("charts");
    std::fs::create_dir_all(&chart_dir)
        .with_context(|| format!("creating {}", chart_dir.display()))?;
    let mut charts = Vec::new();
    for chart in &rendered.charts {
        charts.extend(write_chart_files(&chart_dir, chart)?);
    }
    let html = out.join("report.html");
    let markdown = out.join("report.md");
    write_atomically(&html, rendered.html.as_bytes())?;
    write_atomically(&markdown, rendered.markdown.as_bytes())?;
    Ok(Written {
        html,
        markdown,
        charts,
    })
}

/// Writes the report of one run into its own directory; a failure is printed, not
/// returned, because the run's results are already safe and its exit code is about them.
pub fn write_after_run(dir: &Path) {
    match write(&[dir.to_path_buf()], dir) {
        Ok(w) => eprintln!("report: {}", w.html.display()),
        Err(e) => eprintln!(
            "warning: the report was not written ({e:#}); the results are intact, and \
             `cargo xtask report {}` retries",
            dir.display()
        ),
    }
}

/// The runs in a directory: a run directory (`results.jsonl`), or a compare directory
/// (`compare.json`, `baseline/`, `candidate/`).
pub fn read_runs(dir: &Path) -> anyhow::Result<Vec<Run>> {
    if !dir.is_dir() {
        bail!(crate::error::UsageError(format!(
            "{}: not a directory; give run directories such as results/<run-id>",
            dir.display()
        )));
    }
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut runs = Vec::new();
    let compare_file = dir.join("compare.json");
    if compare_file.is_file() {
        let text = std::fs::read_to_string(&compare_file)
            .with_context(|| format!("reading {}", compare_file.display()))?;
        let compare: CompareReport = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a compare report", compare_file.display()))?;
        runs.push(Run {
            run_id: name.clone(),
            command: read_command(dir),
            compare: Some(compare),
            flamegraphs: read_flamegraphs(&dir.join("flamegraphs"))?,
            ..Run::default()
        });
        for side in ["baseline", "candidate"] {
            let mut run = read_records(&dir.join(side), &format!("{name}/{side}"))?;
            run.compare_side = true;
            // Instruction-count records are skipped: compare.json has their figures.
            if !run.perf.is_empty() || !run.mem.is_empty() || !run.sync.is_empty() {
                runs.push(run);
            }
        }
        return Ok(runs);
    }
    let mut run = read_records(dir, &name)?;
    run.command = read_command(dir);
    if run.perf.is_empty() && run.mem.is_empty() && run.sync.is_empty() {
        bail!(crate::error::UsageError(format!(
            "{}: no results.jsonl with records (and no compare.json)",
            dir.display()
        )));
    }
    runs.push(run);
    Ok(runs)
}

/// The command line in a run's `run.json` (runs written before it existed have none; a
/// file that does not parse is ignored the same way: the report is still worth having).
fn read_command(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    let manifest: crate::rundir::Manifest = serde_json::from_str(&text).ok()?;
    Some(manifest.command)
}

/// `compare --flamegraph`'s index and each case's movers table; none without an index.
fn read_flamegraphs(dir: &Path) -> anyhow::Result<Vec<(report_page::FlameGraphs, String)>> {
    let index = dir.join("index.json");
    let text = match std::fs::read_to_string(&index) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", index.display())),
    };
    let entries: Vec<report_page::FlameGraphs> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a flame graph index", index.display()))?;
    entries
        .into_iter()
        .map(|f| {
            if f.stem.is_empty()
                || !f
                    .stem
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                bail!(
                    "{}: stem {:?} is not a file stem compare writes",
                    index.display(),
                    f.stem
                );
            }
            let movers = dir.join(format!("{}.movers.md", f.stem));
            let table = std::fs::read_to_string(&movers)
                .with_context(|| format!("reading {}", movers.display()))?;
            Ok((f, table))
        })
        .collect()
}

/// Records of `dir/results.jsonl` by suite. Lines of other shapes (instruction counts)
/// are skipped; a line that claims a suite but does not parse is an error naming it.
fn read_records(dir: &Path, run_id: &str) -> anyhow::Result<Run> {
    let file = dir.join("results.jsonl");
    let mut run = Run {
        run_id: run_id.to_string(),
        ..Run::default()
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(run),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", file.display(), i + 1);
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        if value.get("params").is_none() {
            continue;
        }
        match value["suite"].as_str() {
            Some("perf") => run.perf.push(
                serde_json::from_value(value).with_context(|| format!("{}: perf record", at()))?,
            ),
            Some("mem") => run.mem.push(
                serde_json::from_value(value).with_context(|| format!("{}: mem record", at()))?,
            ),
            Some("sync") => run.sync.push(
                serde_json::from_value(value).with_context(|| format!("{}: sync record", at()))?,
            ),
            _ => {}
        }
    }
    Ok(run)
}

/// Renders `chart` and writes it as `dir/charts/<name>.svg` and `.png`; returns the paths.
pub fn write_chart(
    dir: &Path,
    name: &str,
    chart: &impl charts::Draw,
) -> anyhow::Result<Vec<PathBuf>> {
    load_font()?;
    let rendered =
        charts::render(name, chart).map_err(|e| anyhow::anyhow!("rendering {name}: {e}"))?;
    let chart_dir = dir.join("charts");
    std::fs::create_dir_all(&chart_dir)
        .with_context(|| format!("creating {}", chart_dir.display()))?;
    write_chart_files(&chart_dir, &rendered)
}

fn write_chart_files(chart_dir: &Path, chart: &charts::Chart) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for (ext, bytes) in [("svg", chart.svg.as_bytes()), ("png", &chart.png[..])] {
        let path = chart_dir.join(format!("{}.{ext}", chart.name));
        write_atomically(&path, bytes)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Registers a TrueType font for chart text, once per process.
fn load_font() -> anyhow::Result<()> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = find_font().ok_or_else(|| {
                format!(
                    "no TrueType font for chart text ({FONT} or any .ttf under /usr/share/fonts); \
                     install one: apt-get install fonts-dejavu-core"
                )
            })?;
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            charts::use_font(Box::leak(bytes.into_boxed_slice()))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn find_font() -> Option<PathBuf> {
    let preferred = Path::new(FONT);
    if preferred.is_file() {
        return Some(preferred.to_path_buf());
    }
    let mut fonts: Vec<PathBuf> = walkdir::WalkDir::new("/usr/share/fonts")
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")))
        .collect();
    fonts.sort_by_key(|p| {
        let name = p.to_string_lossy().to_lowercase();
        (
            !name.contains("sans"),
            name.contains("bold") || name.contains("italic"),
            name,
        )
    });
    fonts.into_iter().next()
}
