//! `cargo xtask tui`: the lab's terminal UI on a queue (a directory, or a Valkey queue
//! from any machine). The form's tasks are planned here, with `queue add`'s own
//! campaign expansion and validation; two finished runs are drawn with `report`'s.

use std::path::PathBuf;

use bench_core::shutdown::Shutdown;
use clap::Args;

use super::campaign;
use crate::queue::expand;
use crate::queue::{Task, TaskKind};
use crate::views::tui::{self, Actions};

#[derive(Args, Debug)]
pub struct TuiCmd {
    /// The queue: a directory (default: queue/ at the project root), or a Valkey server's
    /// stream, valkey://HOST[:PORT]/NAME (valkeys:// for TLS; TLS and AUTH settings come
    /// from VALKEY_BENCH_QUEUE_CA, _USER and _PASSWORD_FILE: docs/lab.md).
    #[arg(long, value_name = "DIR|URL")]
    pub queue: Option<String>,
}

impl TuiCmd {
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let queue = crate::queue::open(self.queue.as_deref())?;
        tui::run(queue.into(), &CliActions, shutdown)
    }
}

/// What the form and the Results tab do, as `queue add` and `report` do it.
struct CliActions;

impl Actions for CliActions {
    fn plan(&self, kind: TaskKind, args: &[String]) -> Result<(Vec<Task>, String), String> {
        let (list, axes) = campaign(kind, args).map_err(|e| format!("{e:#}"))?;
        Ok((Task::batch(kind, list), expand::describe(&axes)))
    }

    fn report(&self, dirs: &[PathBuf]) -> Result<PathBuf, String> {
        if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
            return Err(format!(
                "{} is not on this machine (a runner elsewhere wrote it)",
                missing.display()
            ));
        }
        let out = crate::project::results_dir().join(crate::rundir::run_id("report"));
        crate::publish::write(dirs, &out)
            .map(|written| written.html)
            .map_err(|e| format!("{e:#}"))
    }
}
