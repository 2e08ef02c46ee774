//! `cargo xtask tui`: the lab's terminal UI (ratatui). Tabs: **Status** (each running
//! task: its step, progress, heartbeat, a chart of its records' throughput and latency),
//! **Queue** (pending, running and failed tasks; cancel, retry, remove after a `y`),
//! **Results** (finished tasks: verdict, results directory, summary; two marked drawn in
//! one report), **Create** (a form whose lists make a campaign, the number of tasks shown
//! before it is queued). It reads the queue through [`Queue`] (a directory, or a Valkey
//! queue from any machine), once a second.
//!
//! `App` is the state and the keys (tested without a terminal); `view.rs` draws it
//! (tested on ratatui's test backend); `run` owns the terminal: raw mode and the
//! alternate screen, restored on exit, on a stop signal and on a panic (ratatui's hook).

mod form;
mod view;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bench_core::shutdown::Shutdown;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub use form::Form;

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

/// Text from the queue is shown, never obeyed: control characters (an escape sequence a
/// hostile writer put in a field) become `?`; a summary keeps its line breaks.
fn clean(text: String) -> String {
    if text.chars().any(|c| c.is_control() && c != '\n') {
        text.chars()
            .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
            .collect()
    } else {
        text
    }
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
                warnings: s.warnings.into_iter().map(one_line).collect(),
                ..s
            }),
            summary: e.summary.map(clean),
        }
    }
}

/// An action waiting for its `y`.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    Cancel(String),
    Retry(String),
    Remove(String),
    Submit(TaskKind, Vec<String>),
}

impl Confirm {
    pub fn question(&self) -> String {
        match self {
            Confirm::Cancel(id) => format!("Cancel {id}?"),
            Confirm::Retry(id) => format!("Queue {id} again?"),
            Confirm::Remove(id) => format!("Remove {id} from the queue?"),
            Confirm::Submit(kind, args) => {
                format!("Queue {} {}?", kind.name(), args.join(" "))
            }
        }
    }
}

/// One record's figures as charted: (record number, figures).
pub type Point = (u64, std::collections::BTreeMap<String, f64>);

/// The most points kept per running task.
const MAX_POINTS: usize = 500;

pub struct App {
    pub tab: Tab,
    pub location: String,
    pub rows: Vec<Row>,
    /// Why the last read of the queue failed (a Valkey queue out of reach).
    pub error: Option<String>,
    /// The last action's outcome, shown at the bottom.
    pub message: Option<String>,
    /// The selected row of the Queue and Results tabs.
    pub queue_at: usize,
    pub results_at: usize,
    /// Results marked to be drawn together (at most two).
    pub marked: Vec<String>,
    pub confirm: Option<Confirm>,
    /// Each running task's records so far, for its chart.
    pub series: HashMap<String, Vec<Point>>,
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
            marked: Vec::new(),
            confirm: None,
            series: HashMap::new(),
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

    /// Reads the queue again; a running task's new record extends its chart.
    pub fn refresh(&mut self, queue: &dyn Queue) {
        match queue.list() {
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
        for row in self.rows.iter().filter(|r| r.state == State::Running) {
            let Some(status) = &row.status else { continue };
            if status.figures.is_empty() {
                continue;
            }
            let points = self.series.entry(row.id.clone()).or_default();
            if points.last().is_none_or(|(done, _)| *done < status.done) {
                points.push((status.done, status.figures.clone()));
                if points.len() > MAX_POINTS {
                    points.remove(0);
                }
            }
        }
        self.queue_at = self.queue_at.min(self.queue_rows().len().saturating_sub(1));
        self.results_at = self
            .results_at
            .min(self.result_rows().len().saturating_sub(1));
    }

    /// Counts the form's tasks with the planner.
    pub fn replan(&mut self, actions: &dyn Actions) {
        self.preview = actions
            .plan(self.form.kind(), &self.form.args())
            .map(|(tasks, how)| (tasks.len(), how));
    }

    /// One key. Actions on the queue happen after their `y`.
    pub fn key(&mut self, key: KeyEvent, queue: &dyn Queue, actions: &dyn Actions) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(confirm) = self.confirm.take() {
            if key.code == KeyCode::Char('y') {
                self.message = Some(self.perform(confirm, queue, actions));
                self.refresh(queue);
            } else {
                self.message = Some("not done".into());
            }
            return;
        }
        match key.code {
            KeyCode::Tab => return self.switch(1),
            KeyCode::BackTab => return self.switch(TABS.len() - 1),
            KeyCode::Esc if self.tab == Tab::Create => return self.tab = Tab::Status,
            _ => {}
        }
        if self.tab == Tab::Create {
            return self.create_key(key, actions);
        }
        match key.code {
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
    }

    fn queue_key(&mut self, key: KeyEvent) {
        let Some(row) = self.queue_rows().get(self.queue_at).map(|r| (*r).clone()) else {
            return;
        };
        let (confirm, allowed, why) = match key.code {
            KeyCode::Char('c') => (
                Confirm::Cancel(row.id.clone()),
                row.state == State::Pending,
                "only a pending task is cancelled",
            ),
            KeyCode::Char('r') => (
                Confirm::Retry(row.id.clone()),
                row.state == State::Failed,
                "only a failed task is queued again",
            ),
            KeyCode::Char('d') => (
                Confirm::Remove(row.id.clone()),
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
                let dirs: Vec<PathBuf> = self
                    .marked
                    .iter()
                    .filter_map(|id| self.rows.iter().find(|r| r.id == *id))
                    .filter_map(|r| r.results.clone().map(PathBuf::from))
                    .collect();
                self.message = Some(match actions.report(&dirs) {
                    Ok(page) => format!("both runs drawn in {}", page.display()),
                    Err(why) => format!("no report: {why}"),
                });
            }
            KeyCode::Char('d') => self.confirm = Some(Confirm::Remove(row.id.clone())),
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
                    Ok(_) => {
                        self.confirm = Some(Confirm::Submit(form.kind(), form.args()));
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

    fn perform(&mut self, confirm: Confirm, queue: &dyn Queue, actions: &dyn Actions) -> String {
        let done = |r: anyhow::Result<()>, what: &str, id: &str| match r {
            Ok(()) => format!("{id}: {what}"),
            Err(e) => format!("{id}: {e:#}"),
        };
        match confirm {
            Confirm::Cancel(id) => done(queue.cancel(&id), "cancelled", &id),
            Confirm::Retry(id) => done(queue.retry(&id), "queued again", &id),
            Confirm::Remove(id) => {
                self.marked.retain(|m| *m != id);
                done(queue.remove(&id), "removed", &id)
            }
            Confirm::Submit(kind, args) => match actions.plan(kind, &args) {
                Err(why) => format!("not queued: {why}"),
                Ok((tasks, how)) => {
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
            },
        }
    }
}

/// How often the queue is read.
const REFRESH: Duration = Duration::from_secs(1);

/// Runs the TUI on this terminal until `q`, Ctrl-C or a stop signal.
pub fn run(queue: &dyn Queue, actions: &dyn Actions, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut app = App::new(queue.location());
    app.refresh(queue);
    app.replan(actions);
    // Raw mode and the alternate screen, and a panic hook that restores the terminal
    // before the panic is printed.
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> anyhow::Result<()> {
        let mut read = Instant::now();
        let fault = std::env::var_os("VALKEY_BENCH_TUI_PANIC").is_some();
        while !app.quit && !shutdown.is_triggered() {
            terminal.draw(|frame| view::draw(frame, &app))?;
            // Fault injection for the e2e test of the panic hook.
            if fault {
                panic!("VALKEY_BENCH_TUI_PANIC is set: the TUI panics after its first frame");
            }
            if event::poll(Duration::from_millis(100))?
                && let Event::Key(key) = event::read()?
            {
                app.key(key, queue, actions);
            }
            if read.elapsed() >= REFRESH {
                app.refresh(queue);
                read = Instant::now();
            }
        }
        Ok(())
    })();
    ratatui::try_restore()?;
    result
}

#[cfg(test)]
mod tests;
