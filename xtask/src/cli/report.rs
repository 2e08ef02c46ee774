//! `cargo xtask report`: the HTML page, Markdown and charts of one or more runs.

use std::path::PathBuf;

use clap::Args;

use crate::error::UsageError;
use crate::project;

#[derive(Args, Debug)]
pub struct ReportCmd {
    /// Run directories (results/<run-id>, or a compare's directory); default: the newest
    /// under results/. Several are drawn together, one colour per run.
    #[arg(value_name = "RUN_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write (default: the run directory itself, or results/<time>-report-<salt>
    /// for several).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the written paths as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ReportCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let dirs = if self.dirs.is_empty() {
            vec![newest_run()?]
        } else {
            self.dirs.clone()
        };
        let out = match (&self.out, dirs.as_slice()) {
            (Some(out), _) => out.clone(),
            (None, [one]) => one.clone(),
            (None, _) => project::results_dir().join(crate::rundir::run_id("report")),
        };
        let written = crate::publish::write(&dirs, &out)?;
        if self.json {
            println!("{}", serde_json::to_string(&written)?);
        } else {
            println!("{}", written.html.display());
            println!("{}", written.markdown.display());
            println!(
                "{} charts in {}",
                written.charts.len() / 2,
                out.join("charts").display()
            );
        }
        Ok(())
    }
}

/// The newest run directory under results/ (names start with the UTC start time).
fn newest_run() -> anyhow::Result<PathBuf> {
    let results = project::results_dir();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&results)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && (p.join("results.jsonl").is_file() || p.join("compare.json").is_file())
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().ok_or_else(|| {
        UsageError(format!(
            "no runs under {}; run `cargo xtask bench` first or name a RUN_DIR",
            results.display()
        ))
        .into()
    })
}
