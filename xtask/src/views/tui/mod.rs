//! `cargo xtask tui`: the lab's terminal UI (ratatui). Tabs: **Status** (each running
//! task: its step, progress, heartbeat, a chart of its records' throughput and latency),
//! **Queue** (pending, running and failed tasks; cancel, retry, remove after a `y`),
//! **Results** (finished tasks: verdict, results directory, summary; two marked drawn in
//! one report), **Create** (a form whose lists make a campaign, the number of tasks shown
//! before it is queued). It reads the queue through [`Queue`] (a directory, or a Valkey
//! queue from any machine), once a second.
//!
//! `App` is the state and the keys (tested without a terminal); `view.rs` draws it
//! (tested on ratatui's test backend); `live.rs` owns the terminal (raw mode and the
//! alternate screen, restored on exit, on a stop signal and on a panic: ratatui's hook)
//! and the worker thread that makes every call to the queue.

mod form;
mod live;
mod view;

use std::collections::HashMap;
use std::path::PathBuf;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub use form::Form;
pub use live::run;

use crate::queue::{Entry, Queue, State, Status, Task, TaskKind, now_ms};

/// What the TUI asks of the command line's layer: the tasks a `queue add` would make
/// (validated as the command validates them), and a report of several runs.
pub trait Actions {
    /// The tasks `queue add KIND ARGS` would queue, and how the product was made (`2
    /// --commands × 3 --pipelines`); or why not, the flag named.
    fn plan(&self, kind: TaskKind, args: &[String]) -> Result<(Vec<Task>, String), String>;
    /// Several finished runs drawn in one report: the page's path.
    fn report(&self, dirs: &[PathBuf]) -> Result<PathBuf, String>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Status,
    Queue,
    Results,
    Create,
}

pub const TABS: [Tab; 4] = [Tab::Status, Tab::Queue, Tab::Results, Tab::Create];

impl Tab {
    pub fn title(self) -> &'static str {
        match self {
            Tab::Status => "Status",
            Tab::Queue => "Queue",
            Tab::Results => "Results",
            Tab::Create => "Create",
        }
    }
}

/// One task as the TUI shows it.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: String,
    pub state: State,
    /// `bench --quick ...`, or empty for a document that is no task.
    pub command: String,
    pub deliveries: u32,
    /// Why it failed, or why its document is no task.
    pub error: Option<String>,
    pub verdict: Option<String>,
    pub results: Option<String>,
    pub runner: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub status: Option<Status>,
    pub summary: Option<String>,
}

/// Text from the queue is shown, never obeyed (`views::printable`); a summary keeps its line
/// breaks.
fn clean(text: String) -> String {
    super::printable(&text, true)
}

fn one_line(text: String) -> String {
    clean(text).replace('\n', " ")
}

impl From<Entry> for Row {
    fn from(e: Entry) -> Row {
        let (command, deliveries, error, verdict, results) = match e.task {
            Ok(t) => (
                format!("{} {}", t.kind.name(), t.args.join(" ")),
                t.deliveries,
                t.error,
                t.verdict,
                t.results,
            ),
            Err(why) => (String::new(), 0, Some(why), None, None),
        };
        Row {
            id: one_line(e.name),
            state: e.state,
            command: one_line(command),
            deliveries,
            error: error.map(one_line),
            verdict: verdict.map(one_line),
            results: results.map(one_line),
            runner: e.runner.map(one_line),
            heartbeat_ms: e.heartbeat_ms,
            status: e.status.map(|s| Status {
                step: one_line(s.step),
                last: one_line(s.last),
                hosts: one_line(s.hosts),
                warnings: s.warnings.into_iter().map(one_line).collect(),
                unit: one_line(s.unit),
                ..s
            }),
            summary: e.summary.map(clean),
        }
    }
}

/// An action waiting for its `y`; the question names the task and its command.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    Cancel(String, String),
    Retry(String, String),
    Remove(String, String),
    Submit(TaskKind, Vec<String>, usize),
}

impl Confirm {
    pub fn question(&self) -> String {
        match self {
            Confirm::Cancel(id, command) => format!("Cancel {id} ({command})?"),
            Confirm::Retry(id, command) => format!("Queue {id} ({command}) again?"),
            Confirm::Remove(id, command) => format!("Remove {id} ({command}) from the queue?"),
            Confirm::Submit(kind, args, n) => {
                format!("Queue {n} task(s): {} {}?", kind.name(), args.join(" "))
            }
        }
    }
}

/// What the queue is asked to do, after a `y` (on the worker thread in `run`).
#[derive(Clone, Debug)]
pub enum Work {
    Cancel(String),
    Retry(String),
    Remove(String),
    /// Tasks planned from the form, and how the product was made.
    Add(Vec<Task>, String),
}

/// Does `work` on the queue; the line the TUI shows after.
pub fn perform(queue: &dyn Queue, work: Work) -> String {
    let done = |r: anyhow::Result<()>, what: &str, id: &str| match r {
        Ok(()) => format!("{id}: {what}"),
        Err(e) => format!("{id}: {e:#}"),
    };
    match work {
        Work::Cancel(id) => done(queue.cancel(&id), "cancelled", &id),
        Work::Retry(id) => done(queue.retry(&id), "queued again", &id),
        Work::Remove(id) => done(queue.remove(&id), "removed", &id),
        Work::Add(tasks, how) => {
            for (n, task) in tasks.iter().enumerate() {
                if let Err(e) = queue.add(task) {
                    return format!("queued {n} of {} tasks, then: {e:#}", tasks.len());
                }
            }
            match tasks.len() {
                1 => format!("queued 1 task: {}", tasks[0].id),
                n => format!("queued {n} tasks ({how})"),
            }
        }
    }
}

/// One record's figures as charted: (record number, figures).
pub type Point = (u64, std::collections::BTreeMap<String, f64>);

/// The most points kept per running task.
const MAX_POINTS: usize = 500;

/// The most seconds kept per running task (an hour).
const MAX_SECONDS: usize = 3600;

/// The largest summary file read from a results directory.
const MAX_SUMMARY_BYTES: u64 = 1 << 20;

/// A finished task's summary: the queue's copy (a Valkey queue keeps it), else its
/// results directory's, read only when that directory is named for the task (`<id>` or
/// `<id>.N`: a path from a shared queue is not followed anywhere else) and the file is a
/// regular file of at most 1 MiB. Control characters become `?`.
pub fn load_summary(queue: &dyn Queue, id: &str) -> String {
    let entry = match queue.find(id) {
        Ok(Some(entry)) => entry,
        Ok(None) => return format!("{id}: no longer in the queue"),
        Err(e) => return format!("{e:#}"),
    };
    if let Some(summary) = entry.summary {
        return clean(summary);
    }
    let Some(dir) = entry.task.ok().and_then(|t| t.results) else {
        return "no results directory".into();
    };
    match checked_dir(id, &dir).and_then(|dir| {
        ["summary.md", "compare.md"].iter().find_map(|f| {
            let path = dir.join(f);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            (meta.is_file() && meta.len() <= MAX_SUMMARY_BYTES)
                .then(|| std::fs::read_to_string(&path).ok())
                .flatten()
        })
    }) {
        Some(text) => clean(text),
        None => format!("{dir}: no summary here (another machine's?)"),
    }
}

/// `dir` as a local directory named for task `id` (`<id>` or `<id>.N`), or `None`.
pub fn checked_dir(id: &str, dir: &str) -> Option<PathBuf> {
    let path = std::fs::canonicalize(dir).ok()?;
    let name = path.file_name()?.to_str()?;
    let ours = name == id
        || name
            .strip_prefix(id)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (ours && path.is_dir()).then_some(path)
}

pub struct App {
    pub tab: Tab,
    pub location: String,
    pub rows: Vec<Row>,
    /// Why the last read of the queue failed (a Valkey queue out of reach).
    pub error: Option<String>,
    /// The last action's outcome, shown at the bottom.
    pub message: Option<String>,
    /// The selected row of the Queue and Results tabs, and its task (the selection
    /// follows the task when rows move).
    pub queue_at: usize,
    pub results_at: usize,
    queue_id: Option<String>,
    results_id: Option<String>,
    /// Results marked to be drawn together (at most two).
    pub marked: Vec<String>,
    pub confirm: Option<Confirm>,
    /// Each running task's records since the TUI started watching, for its chart.
    pub series: HashMap<String, Vec<Point>>,
    /// Each running task's measured seconds (`[replies, p50 µs, p99 µs]`), a record's at
    /// a time, and the last record they came from.
    pub seconds: HashMap<String, (u64, Vec<[u64; 3]>)>,
    /// The selected result's summary: (id, text).
    pub summary: Option<(String, String)>,
    pub form: Form,
    /// The form's tasks as the planner counts them, or why it refuses them.
    pub preview: Result<(usize, String), String>,
    /// When the queue was last read (ms since the epoch).
    pub read_ms: u64,
    pub quit: bool,
}

impl App {
    pub fn new(location: String) -> App {
        App {
            tab: Tab::Status,
            location,
            rows: Vec::new(),
            error: None,
            message: None,
            queue_at: 0,
            results_at: 0,
            queue_id: None,
            results_id: None,
            marked: Vec::new(),
            confirm: None,
            series: HashMap::new(),
            seconds: HashMap::new(),
            summary: None,
            form: Form::default(),
            preview: Err("fill in the form".into()),
            read_ms: 0,
            quit: false,
        }
    }

    /// The rows the Queue tab lists: pending, running, failed.
    pub fn queue_rows(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.state != State::Done)
            .collect()
    }

    /// The rows the Results tab lists: done, newest first.
    pub fn result_rows(&self) -> Vec<&Row> {
        let mut done: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.state == State::Done)
            .collect();
        done.reverse();
        done
    }

    pub fn count(&self, state: State) -> usize {
        self.rows.iter().filter(|r| r.state == state).count()
    }

    /// The selected result's id, whose summary the Results tab shows.
    pub fn selected_result(&self) -> Option<String> {
        self.result_rows()
            .get(self.results_at)
            .map(|r| r.id.clone())
    }

    /// Reads the queue again (the tests; `run` reads on its worker and calls `apply`).
    pub fn refresh(&mut self, queue: &dyn Queue) {
        self.apply(queue.list());
        if let Some(id) = self.selected_result() {
            self.summary = Some((id.clone(), load_summary(queue, &id)));
        }
    }

    /// A new reading of the queue; a running task's new record extends its chart, and the
    /// selections follow their tasks.
    pub fn apply(&mut self, listed: anyhow::Result<Vec<Entry>>) {
        match listed {
            Ok(entries) => {
                self.rows = entries.into_iter().map(Row::from).collect();
                self.error = None;
                self.read_ms = now_ms();
            }
            Err(e) => {
                self.error = Some(format!("{e:#}"));
                return;
            }
        }
        let running: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.state == State::Running)
            .map(|r| r.id.clone())
            .collect();
        self.series.retain(|id, _| running.contains(id));
        self.seconds.retain(|id, _| running.contains(id));
        for row in self.rows.iter().filter(|r| r.state == State::Running) {
            let Some(status) = &row.status else { continue };
            let (seen, seconds) = self.seconds.entry(row.id.clone()).or_default();
            if status.seconds_total < *seen {
                // Delivered again: its records start over.
                (*seen, *seconds) = (0, Vec::new());
            }
            // Only the seconds not seen yet: the status's tail holds the last ones.
            let new = (status.seconds_total - *seen) as usize;
            let tail = &status.seconds;
            seconds.extend_from_slice(&tail[tail.len() - new.min(tail.len())..]);
            *seen = status.seconds_total;
            let excess = seconds.len().saturating_sub(MAX_SECONDS);
            seconds.drain(..excess);
            if status.figures.is_empty() {
                continue;
            }
            let points = self.series.entry(row.id.clone()).or_default();
            // A task delivered again starts its records over.
            if points.last().is_some_and(|(done, _)| *done > status.done) {
                points.clear();
            }
            if points.last().is_none_or(|(done, _)| *done < status.done) {
                points.push((status.done, status.figures.clone()));
                if points.len() > MAX_POINTS {
                    points.remove(0);
                }
            }
        }
        let ids: Vec<String> = self.rows.iter().map(|r| r.id.clone()).collect();
        self.marked.retain(|m| ids.contains(m));
        let follow = |rows: Vec<&Row>, id: &Option<String>, at: usize| {
            id.as_ref()
                .and_then(|id| rows.iter().position(|r| r.id == *id))
                .unwrap_or(at.min(rows.len().saturating_sub(1)))
        };
        self.queue_at = follow(self.queue_rows(), &self.queue_id, self.queue_at);
        self.results_at = follow(self.result_rows(), &self.results_id, self.results_at);
        self.remember();
    }

    fn remember(&mut self) {
        self.queue_id = self.queue_rows().get(self.queue_at).map(|r| r.id.clone());
        self.results_id = self.selected_result();
    }

    /// Counts the form's tasks with the planner.
    pub fn replan(&mut self, actions: &dyn Actions) {
        self.preview = actions
            .plan(self.form.kind(), &self.form.args())
            .map(|(tasks, how)| (tasks.len(), how));
    }

    /// One key; the work it asks of the queue, after its `y`.
    pub fn key(&mut self, key: KeyEvent, actions: &dyn Actions) -> Option<Work> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        if let Some(confirm) = self.confirm.take() {
            if key.code != KeyCode::Char('y') {
                self.message = Some("not done".into());
                return None;
            }
            return match confirm {
                Confirm::Cancel(id, _) => Some(Work::Cancel(id)),
                Confirm::Retry(id, _) => Some(Work::Retry(id)),
                Confirm::Remove(id, _) => {
                    self.marked.retain(|m| *m != id);
                    Some(Work::Remove(id))
                }
                // Planned again: the tasks queued are the ones validated now.
                Confirm::Submit(kind, args, _) => match actions.plan(kind, &args) {
                    Ok((tasks, how)) => Some(Work::Add(tasks, how)),
                    Err(why) => {
                        self.message = Some(format!("not queued: {why}"));
                        None
                    }
                },
            };
        }
        match key.code {
            KeyCode::Tab => self.switch(1),
            KeyCode::BackTab => self.switch(TABS.len() - 1),
            KeyCode::Esc if self.tab == Tab::Create => self.tab = Tab::Status,
            _ if self.tab == Tab::Create => self.create_key(key, actions),
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char(c @ '1'..='4') => self.tab = TABS[c as usize - '1' as usize],
            KeyCode::Up | KeyCode::Char('k') => self.step(false),
            KeyCode::Down | KeyCode::Char('j') => self.step(true),
            _ => match self.tab {
                Tab::Queue => self.queue_key(key),
                Tab::Results => self.results_key(key, actions),
                _ => {}
            },
        }
        None
    }

    fn switch(&mut self, by: usize) {
        let at = TABS.iter().position(|t| *t == self.tab).unwrap_or(0);
        self.tab = TABS[(at + by) % TABS.len()];
    }

    fn step(&mut self, down: bool) {
        let (queue_len, results_len) = (self.queue_rows().len(), self.result_rows().len());
        let (at, len) = match self.tab {
            Tab::Queue => (&mut self.queue_at, queue_len),
            Tab::Results => (&mut self.results_at, results_len),
            _ => return,
        };
        *at = if down {
            (*at + 1).min(len.saturating_sub(1))
        } else {
            at.saturating_sub(1)
        };
        self.remember();
    }

    fn queue_key(&mut self, key: KeyEvent) {
        let Some(row) = self.queue_rows().get(self.queue_at).map(|r| (*r).clone()) else {
            return;
        };
        let (id, command) = (row.id.clone(), row.command.clone());
        let (confirm, allowed, why) = match key.code {
            KeyCode::Char('c') => (
                Confirm::Cancel(id, command),
                row.state == State::Pending,
                "only a pending task is cancelled",
            ),
            KeyCode::Char('r') => (
                Confirm::Retry(id, command),
                row.state == State::Failed,
                "only a failed task is queued again",
            ),
            KeyCode::Char('d') => (
                Confirm::Remove(id, command),
                row.state != State::Running,
                "a running task is not removed: stop its runner first",
            ),
            _ => return,
        };
        if allowed {
            self.confirm = Some(confirm);
        } else {
            self.message = Some(format!("{}: {why}", row.id));
        }
    }

    fn results_key(&mut self, key: KeyEvent, actions: &dyn Actions) {
        let Some(row) = self
            .result_rows()
            .get(self.results_at)
            .map(|r| (*r).clone())
        else {
            return;
        };
        match key.code {
            KeyCode::Char(' ') => {
                if let Some(at) = self.marked.iter().position(|m| *m == row.id) {
                    self.marked.remove(at);
                } else {
                    if self.marked.len() == 2 {
                        self.marked.remove(0);
                    }
                    self.marked.push(row.id.clone());
                }
            }
            KeyCode::Char('c') => {
                if self.marked.len() != 2 {
                    self.message = Some("mark two results with space first".into());
                    return;
                }
                // Only directories named for their tasks, on this machine.
                let mut dirs = Vec::new();
                for id in &self.marked {
                    let results = self
                        .rows
                        .iter()
                        .find(|r| r.id == *id)
                        .and_then(|r| r.results.clone());
                    match results.as_deref().and_then(|d| checked_dir(id, d)) {
                        Some(dir) => dirs.push(dir),
                        None => {
                            self.message = Some(format!(
                                "no report: {id}'s results ({}) are not a directory of it \
                                 on this machine",
                                results.as_deref().unwrap_or("none")
                            ));
                            return;
                        }
                    }
                }
                self.message = Some(match actions.report(&dirs) {
                    Ok(page) => format!("both runs drawn in {}", page.display()),
                    Err(why) => format!("no report: {why}"),
                });
            }
            KeyCode::Char('d') => {
                self.confirm = Some(Confirm::Remove(row.id.clone(), row.command.clone()))
            }
            _ => {}
        }
    }

    fn create_key(&mut self, key: KeyEvent, actions: &dyn Actions) {
        let form = &mut self.form;
        match key.code {
            KeyCode::Up => form.up(),
            KeyCode::Down => form.down(),
            KeyCode::Left => form.cycle(false),
            KeyCode::Right => form.cycle(true),
            KeyCode::Backspace => form.backspace(),
            KeyCode::Enter if form.on_submit() => {
                match &self.preview {
                    Ok((n, _)) => {
                        self.confirm = Some(Confirm::Submit(form.kind(), form.args(), *n));
                    }
                    Err(why) => self.message = Some(format!("not queued: {why}")),
                }
                return;
            }
            KeyCode::Enter => form.down(),
            KeyCode::Char(c) => form.type_char(c),
            _ => return,
        }
        self.replan(actions);
    }
}

#[cfg(test)]
mod tests;
