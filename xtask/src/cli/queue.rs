//! `cargo xtask queue`: add a task (the flags its command takes, validated as that command
//! would before anything is queued), list, show, cancel, retry and remove tasks, in a
//! directory queue (`queue/dir.rs`) or a Valkey one (`queue/valkey.rs`).

use clap::{Args, Subcommand};
use serde_json::json;

use super::campaign;
use crate::error::UsageError;
use crate::queue::expand;
use crate::queue::{Entry, State, Task, TaskKind, Unreachable};
use crate::views::printable;

#[derive(Args, Debug)]
pub struct QueueCmd {
    /// The queue: a directory (default: queue/ at the project root), or a Valkey server's
    /// stream, valkey://HOST[:PORT]/NAME (valkeys:// for TLS; TLS and AUTH settings come
    /// from VALKEY_BENCH_QUEUE_CA, _USER and _PASSWORD_FILE: docs/lab.md).
    #[arg(long, global = true, value_name = "DIR|URL")]
    pub queue: Option<String>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: QueueAction,
}

#[derive(Subcommand, Debug)]
pub enum QueueAction {
    /// Queue a task: `queue add bench --quick --topology cluster:3x0`, `queue add compare
    /// --baseline 8.0.2 --candidate 8.1.1`, `queue add flamegraph --command GET`. Its flags
    /// are checked as the command would check them; nothing is queued if one is wrong.
    /// Lists make a campaign, one task per combination: `--value-sizes 16,64,1K
    /// --pipelines 1..64x2` (and bench's `--valkey-version A,B`, `--ref A,B`).
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
    Compare,
    Flamegraph,
}

impl From<KindArg> for TaskKind {
    fn from(kind: KindArg) -> TaskKind {
        match kind {
            KindArg::Bench => TaskKind::Bench,
            KindArg::Compare => TaskKind::Compare,
            KindArg::Flamegraph => TaskKind::Flamegraph,
        }
    }
}

impl QueueCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let queue = crate::queue::open(self.queue.as_deref())?;
        let root = queue.location();
        match &self.action {
            QueueAction::Add { kind, args } => {
                let kind = TaskKind::from(*kind);
                let (list, axes) = campaign(kind, args)?;
                let tasks = Task::batch(kind, list);
                for task in &tasks {
                    queue.add(task)?;
                }
                let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
                if self.json {
                    println!("{}", json!({"added": ids}));
                } else if let [id] = ids[..] {
                    println!("queued 1 task in {root}: {id}");
                } else {
                    println!(
                        "queued {} tasks ({}) in {root}: {} ... {}",
                        ids.len(),
                        expand::describe(&axes),
                        ids[0],
                        ids[ids.len() - 1]
                    );
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
                    return Err(UsageError(format!("no task {id} in {root}")).into());
                };
                if self.json {
                    println!("{}", entry_json(&entry));
                } else {
                    // Shown, never obeyed: names and reasons come from a shared queue.
                    let shown = |text: &str| printable(text, false);
                    println!("{} ({})", shown(&entry.name), entry.state.name());
                    if let Some(runner) = &entry.runner {
                        println!("runner: {}", shown(runner));
                    }
                    match &entry.task {
                        // JSON escapes every control character in its strings.
                        Ok(task) => print!("{}", String::from_utf8_lossy(&task.to_json())),
                        Err(why) => println!("not a task: {}", shown(why)),
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

/// A refused action (no such task, wrong state) is the user's error: exit 2; a queue out
/// of reach is not, but exits 2 too (it could not run).
fn usage(result: anyhow::Result<()>, done: &str, id: &str) -> anyhow::Result<()> {
    result.map_err(|e| {
        if e.chain().any(|c| c.is::<Unreachable>()) {
            e
        } else {
            UsageError(format!("{e:#}")).into()
        }
    })?;
    println!("{id}: {done}");
    Ok(())
}

fn entry_json(entry: &Entry) -> serde_json::Value {
    let mut value = json!({
        "id": entry.name,
        "state": entry.state,
        "runner": entry.runner,
        "heartbeat_ms": entry.heartbeat_ms,
        "status": entry.status,
        "summary": entry.summary,
    });
    match &entry.task {
        Ok(task) => value["task"] = json!(task),
        Err(why) => value["invalid"] = json!(why),
    }
    value
}

fn print_list(root: &str, entries: &[Entry]) {
    if entries.is_empty() {
        println!("{root}: no tasks");
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
                    .or_else(|| {
                        let runner = e.runner.as_ref().filter(|_| e.state == State::Running);
                        runner.map(|r| match &e.status {
                            Some(s) if s.total > 0 => {
                                format!("runner {r}: {} ({}/{})", s.step, s.done, s.total)
                            }
                            Some(s) => format!("runner {r}: {}", s.step),
                            None => format!("runner {r}"),
                        })
                    })
                    .or_else(|| t.verdict.clone())
                    .or_else(|| t.results.clone())
                    .unwrap_or_default(),
            ),
            Err(why) => (String::new(), String::new(), why.clone()),
        };
        // Shown, never obeyed: a control character from a shared queue becomes `?`.
        let shown = |text: &str| -> String { printable(text, false).replace('|', "\\|") };
        println!(
            "| {} | {} | {deliveries} | {} | {} |",
            e.state.name(),
            shown(&e.name),
            shown(&command),
            shown(&note.replace('\n', " "))
        );
    }
}
