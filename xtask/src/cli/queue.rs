//! `cargo xtask queue`: add a task (the flags `bench` takes, validated as `bench` would
//! before anything is queued), list, show, cancel, retry and remove tasks of a directory
//! queue (`queue/dir.rs`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::validate_task;
use crate::error::UsageError;
use crate::queue::dir::{DirQueue, Entry};
use crate::queue::{Task, TaskKind, default_root};

#[derive(Args, Debug)]
pub struct QueueCmd {
    /// The queue directory (default: queue/ at the project root).
    #[arg(long, global = true, value_name = "DIR")]
    pub queue: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: QueueAction,
}

#[derive(Subcommand, Debug)]
pub enum QueueAction {
    /// Queue a task: `queue add bench --quick --topology cluster:3x0`. Its flags are
    /// checked as the command would check them; nothing is queued if one is wrong.
    Add {
        /// The command the task runs.
        #[arg(value_enum)]
        kind: KindArg,
        /// Its flags, as that command takes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every task: pending, running (and which runner holds it), done, failed.
    List,
    /// One task's document and where it is.
    Show { id: String },
    /// A pending task goes to failed, "cancelled".
    Cancel { id: String },
    /// A failed task goes back to pending, its deliveries cleared.
    Retry { id: String },
    /// A pending, done or failed task is deleted.
    Remove { id: String },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum KindArg {
    Bench,
}

impl From<KindArg> for TaskKind {
    fn from(kind: KindArg) -> TaskKind {
        match kind {
            KindArg::Bench => TaskKind::Bench,
        }
    }
}

impl QueueCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let root = self.queue.clone().unwrap_or_else(default_root);
        let queue = DirQueue::open(&root)?;
        match &self.action {
            QueueAction::Add { kind, args } => {
                let kind = TaskKind::from(*kind);
                validate_task(kind, args)?;
                let task = Task::new(kind, args.clone());
                queue.add(&task)?;
                if self.json {
                    println!("{}", json!({"added": [task.id]}));
                } else {
                    println!("queued 1 task in {}: {}", root.display(), task.id);
                }
                Ok(())
            }
            QueueAction::List => {
                let entries = queue.list()?;
                if self.json {
                    let list: Vec<_> = entries.iter().map(entry_json).collect();
                    println!("{}", json!({ "queue": root, "tasks": list }));
                } else {
                    print_list(&root, &entries);
                }
                Ok(())
            }
            QueueAction::Show { id } => {
                let Some(entry) = queue.find(id)? else {
                    return Err(UsageError(format!("no task {id} in {}", root.display())).into());
                };
                if self.json {
                    println!("{}", entry_json(&entry));
                } else {
                    println!("{} ({})", entry.name, entry.state.name());
                    if let Some(runner) = &entry.runner {
                        println!("runner: {runner}");
                    }
                    match &entry.task {
                        Ok(task) => print!("{}", String::from_utf8_lossy(&task.to_json())),
                        Err(why) => println!("not a task: {why}"),
                    }
                }
                Ok(())
            }
            QueueAction::Cancel { id } => usage(queue.cancel(id), "cancelled", id),
            QueueAction::Retry { id } => usage(queue.retry(id), "queued again", id),
            QueueAction::Remove { id } => usage(queue.remove(id), "removed", id),
        }
    }
}

/// A refused action (no such task, wrong state) is the user's error: exit 2.
fn usage(result: anyhow::Result<()>, done: &str, id: &str) -> anyhow::Result<()> {
    result.map_err(|e| UsageError(format!("{e:#}")))?;
    println!("{id}: {done}");
    Ok(())
}

fn entry_json(entry: &Entry) -> serde_json::Value {
    match &entry.task {
        Ok(task) => json!({
            "id": entry.name,
            "state": entry.state,
            "runner": entry.runner,
            "task": task,
        }),
        Err(why) => json!({
            "id": entry.name,
            "state": entry.state,
            "runner": entry.runner,
            "invalid": why,
        }),
    }
}

fn print_list(root: &Path, entries: &[Entry]) {
    if entries.is_empty() {
        println!("{}: no tasks", root.display());
        return;
    }
    println!("| state | id | deliveries | command | note |");
    println!("| :---- | :- | ---------: | :------ | :--- |");
    for e in entries {
        let (deliveries, command, note) = match &e.task {
            Ok(t) => (
                t.deliveries.to_string(),
                format!("{} {}", t.kind.name(), t.args.join(" ")),
                t.error
                    .clone()
                    .or_else(|| e.runner.as_ref().map(|r| format!("runner {r}")))
                    .or_else(|| t.results.clone())
                    .unwrap_or_default(),
            ),
            Err(why) => (String::new(), String::new(), why.clone()),
        };
        println!(
            "| {} | {} | {deliveries} | {command} | {} |",
            e.state.name(),
            e.name,
            note.replace('|', "\\|").replace('\n', " ")
        );
    }
}
