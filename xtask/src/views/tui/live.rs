//! The TUI on a real terminal: the event loop (draw, a key, the worker's answers) and the
//! worker thread that makes every call to the queue, so a slow or unreachable queue never
//! freezes the screen or the keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_core::shutdown::Shutdown;
use ratatui::crossterm::event::{self, Event};

use super::{Actions, App, Tab, Work, load_summary, perform, view};
use crate::queue::{Entry, Queue};

/// How often the queue is read.
const REFRESH: Duration = Duration::from_secs(1);

/// What the UI thread asks its worker.
enum Ask {
    /// The queue's tasks, and the summary of this result.
    Read(Option<String>),
    Do(Work),
}

/// What the worker answers.
enum Answer {
    Read(anyhow::Result<Vec<Entry>>, Option<(String, String)>),
    Done(String),
}

/// Runs the TUI on this terminal until `q`, Ctrl-C or a stop signal. Every call to the
/// queue (a Valkey queue may be slow or down) is made on a worker thread, so the screen
/// and the keys never wait for it.
pub fn run(
    queue: Arc<dyn Queue>,
    actions: &dyn Actions,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut app = App::new(queue.location());
    app.replan(actions);
    let (ask, asked) = std::sync::mpsc::channel::<Ask>();
    let (answer, answers) = std::sync::mpsc::channel::<Answer>();
    // Not joined: a call in flight to a queue that is down must not hold up quitting (the
    // process ends with the TUI, and the worker with it).
    std::thread::Builder::new()
        .name("tui-queue".into())
        .spawn(move || {
            for request in asked {
                let reply = match request {
                    Ask::Read(selected) => {
                        let listed = queue.list();
                        let summary = selected.map(|id| {
                            let text = load_summary(&*queue, &id);
                            (id, text)
                        });
                        Answer::Read(listed, summary)
                    }
                    Ask::Do(work) => Answer::Done(perform(&*queue, work)),
                };
                if answer.send(reply).is_err() {
                    return;
                }
            }
        })?;
    // Raw mode and the alternate screen, and a panic hook that restores the terminal
    // before the panic is printed.
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, &mut app, actions, shutdown, &ask, &answers);
    drop(ask);
    ratatui::try_restore()?;
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    actions: &dyn Actions,
    shutdown: &Shutdown,
    ask: &std::sync::mpsc::Sender<Ask>,
    answers: &std::sync::mpsc::Receiver<Answer>,
) -> anyhow::Result<()> {
    let fault = std::env::var_os("VALKEY_BENCH_TUI_PANIC").is_some();
    let mut reading = false;
    let mut last_read: Option<Instant> = None;
    while !app.quit && !shutdown.is_triggered() {
        for reply in answers.try_iter() {
            match reply {
                Answer::Read(listed, summary) => {
                    reading = false;
                    app.apply(listed);
                    if summary.is_some() {
                        app.summary = summary;
                    }
                }
                Answer::Done(message) => {
                    app.message = Some(message);
                    last_read = None; // read again now
                }
            }
        }
        if !reading && last_read.is_none_or(|t| t.elapsed() >= REFRESH) {
            let selected = (app.tab == Tab::Results)
                .then(|| app.selected_result())
                .flatten();
            reading = ask.send(Ask::Read(selected)).is_ok();
            last_read = Some(Instant::now());
        }
        terminal.draw(|frame| view::draw(frame, app))?;
        // Fault injection for the e2e test of the panic hook.
        if fault {
            panic!("VALKEY_BENCH_TUI_PANIC is set: the TUI panics after its first frame");
        }
        if event::poll(Duration::from_millis(100))?
            && let Event::Key(key) = event::read()?
        {
            let asking = app.confirm.is_none();
            if let Some(work) = app.key(key, actions) {
                app.message = Some("working...".into());
                let _ = ask.send(Ask::Do(work));
            }
            // A question just asked is answered by a key pressed after it was shown, not
            // by one typed ahead.
            if asking && app.confirm.is_some() {
                while event::poll(Duration::ZERO)? {
                    event::read()?;
                }
            }
        }
    }
    Ok(())
}
