//! The TUI's keys on a real directory queue, and what it draws on ratatui's test
//! backend.

use std::path::PathBuf;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::queue::dir::DirQueue;
use crate::queue::{Outcome, Seat};

/// A planner that makes one task per comma-separated `--pipelines` value and refuses
/// `--clients 0`, naming the flag: the shape of `queue add`'s, without its validation.
struct Planner;

impl Actions for Planner {
    fn plan(&self, kind: TaskKind, args: &[String]) -> Result<(Vec<Task>, String), String> {
        if args.windows(2).any(|w| w[0] == "--clients" && w[1] == "0") {
            return Err("--clients 0: give 1 or more".into());
        }
        let at = args.iter().position(|a| a == "--pipelines");
        let values: Vec<String> = match at {
            Some(i) => args[i + 1].split(',').map(str::to_string).collect(),
            None => vec![String::new()],
        };
        let list = values
            .iter()
            .map(|v| {
                let mut a = args.to_vec();
                if let Some(i) = at {
                    a[i + 1] = v.clone();
                }
                a
            })
            .collect();
        Ok((
            Task::batch(kind, list),
            format!("{} --pipelines", values.len()),
        ))
    }

    fn report(&self, dirs: &[PathBuf]) -> Result<PathBuf, String> {
        Ok(dirs[0].join("report.html"))
    }
}

/// A key, and the work it asks for done on the queue at once (`run` does it on its
/// worker thread), then the queue read again.
fn press(app: &mut App, queue: &dyn Queue, code: KeyCode) {
    if let Some(work) = app.key(KeyEvent::new(code, KeyModifiers::NONE), &Planner) {
        app.message = Some(perform(queue, work));
        app.refresh(queue);
    }
}

fn typed(app: &mut App, queue: &dyn Queue, text: &str) {
    for c in text.chars() {
        press(app, queue, KeyCode::Char(c));
    }
}

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
    terminal.draw(|f| view::draw(f, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

fn queue() -> (tempfile::TempDir, DirQueue) {
    let tmp = tempfile::tempdir().unwrap();
    let queue = DirQueue::open(tmp.path()).unwrap();
    (tmp, queue)
}

#[test]
fn the_create_form_counts_its_tasks_and_queues_them_after_a_yes() {
    let (_tmp, queue) = queue();
    let mut app = App::new(queue.location());
    app.refresh(&queue);
    press(&mut app, &queue, KeyCode::Char('4'));
    assert_eq!(app.tab, Tab::Create);
    // Down to pipelines: kind, suite, builds, commands, value sizes, pipelines.
    for _ in 0..5 {
        press(&mut app, &queue, KeyCode::Down);
    }
    typed(&mut app, &queue, "1,16,64");
    let shown = screen(&app);
    assert!(
        shown.contains("[ queue 3 tasks: 3 --pipelines ]"),
        "{shown}"
    );
    assert!(
        shown.contains("queue add bench --pipelines 1,16,64"),
        "{shown}"
    );
    // 'q' is text here, not quit.
    assert!(!app.quit);

    // A refused form says why and queues nothing.
    press(&mut app, &queue, KeyCode::Down);
    typed(&mut app, &queue, "0");
    assert!(screen(&app).contains("--clients 0: give 1 or more"));
    for _ in 0..20 {
        press(&mut app, &queue, KeyCode::Down);
    }
    press(&mut app, &queue, KeyCode::Enter);
    assert!(app.confirm.is_none());
    assert!(app.message.as_deref().unwrap().contains("not queued"));
    for _ in 0..20 {
        press(&mut app, &queue, KeyCode::Up);
    }
    for _ in 0..6 {
        press(&mut app, &queue, KeyCode::Down);
    }
    press(&mut app, &queue, KeyCode::Backspace);

    // Enter on the last line asks; anything but y leaves the queue alone; y queues.
    for _ in 0..20 {
        press(&mut app, &queue, KeyCode::Down);
    }
    press(&mut app, &queue, KeyCode::Enter);
    assert!(screen(&app).contains("Confirm"));
    press(&mut app, &queue, KeyCode::Char('n'));
    assert!(queue.list().unwrap().is_empty());
    press(&mut app, &queue, KeyCode::Enter);
    press(&mut app, &queue, KeyCode::Char('y'));
    assert_eq!(queue.list().unwrap().len(), 3);
    assert_eq!(
        app.message.as_deref(),
        Some("queued 3 tasks (3 --pipelines)")
    );
    assert_eq!(app.count(State::Pending), 3);
}

#[test]
fn the_queue_tab_cancels_retries_and_removes_after_a_yes_and_refuses_the_rest() {
    let (_tmp, queue) = queue();
    for n in 1..=2 {
        let task = Task {
            id: format!("20261202T000000.00{n}Z-bench-00000{n}"),
            ..Task::new(TaskKind::Bench, vec!["--quick".into()])
        };
        queue.add(&task).unwrap();
    }
    let mut app = App::new(queue.location());
    app.refresh(&queue);
    press(&mut app, &queue, KeyCode::Char('2'));
    let shown = screen(&app);
    assert!(shown.contains("Queue: 2 task(s)"), "{shown}");
    assert!(shown.contains("bench --quick"), "{shown}");

    // Retry is for failed tasks: refused with why, nothing asked.
    press(&mut app, &queue, KeyCode::Char('r'));
    assert!(app.confirm.is_none());
    assert!(
        app.message
            .as_deref()
            .unwrap()
            .contains("only a failed task")
    );
    // Cancel the first after a y: it is failed, "cancelled"; then retry it.
    press(&mut app, &queue, KeyCode::Char('c'));
    press(&mut app, &queue, KeyCode::Char('y'));
    let first = "20261202T000000.001Z-bench-000001";
    assert_eq!(queue.find(first).unwrap().unwrap().state, State::Failed);
    let at = app.queue_rows().iter().position(|r| r.id == first).unwrap();
    app.queue_at = at;
    press(&mut app, &queue, KeyCode::Char('r'));
    press(&mut app, &queue, KeyCode::Char('y'));
    assert_eq!(queue.find(first).unwrap().unwrap().state, State::Pending);
    // Remove the second.
    press(&mut app, &queue, KeyCode::Down);
    let second = app.queue_rows()[app.queue_at].id.clone();
    press(&mut app, &queue, KeyCode::Char('d'));
    press(&mut app, &queue, KeyCode::Char('y'));
    assert!(queue.find(&second).unwrap().is_none());
    assert_eq!(app.rows.len(), 1);
    press(&mut app, &queue, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn the_status_tab_shows_a_running_task_live_and_results_mark_two_for_a_report() {
    let (tmp, queue) = queue();
    let mut app = App::new(queue.location());
    app.refresh(&queue);
    assert!(screen(&app).contains("No task is running; 0 pending."));

    for n in 1..=3 {
        let task = Task {
            id: format!("20261202T000000.00{n}Z-bench-00000{n}"),
            ..Task::new(TaskKind::Bench, vec!["--pipelines".into(), n.to_string()])
        };
        queue.add(&task).unwrap();
    }
    let runner = queue.join(Duration::from_secs(30)).unwrap();
    // Two finish, with results directories; the third runs and reports two records.
    for n in 1..=2 {
        let Some(crate::queue::Claimed::Task(mut t)) = runner.claim(3).unwrap() else {
            panic!("a task")
        };
        // Named for its task, as a runner names it: a summary is read from no other.
        let dir = tmp.path().join("results").join(&t.id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("summary.md"),
            format!("# run {n}\nGET 123456 ops/s\n"),
        )
        .unwrap();
        t.results = Some(dir.display().to_string());
        Seat::finish(&runner, t, Outcome::Done { summary: None }).unwrap();
    }
    let Some(crate::queue::Claimed::Task(running)) = runner.claim(3).unwrap() else {
        panic!("a task")
    };
    // Records 1 and 2 reported and read one by one, record 3's report read only after
    // record 4's: each record's two seconds are added once, the missed one's too, and a
    // read with nothing new adds nothing.
    let mut tail: Vec<[u64; 3]> = Vec::new();
    for done in 1..=4u64 {
        tail.extend([[90_000 * done, 80, 200], [110_000 * done, 85, 240]]);
        let status = Status {
            step: "case 1/1: GET-64B-p3".into(),
            done,
            total: 4,
            unit: "records".into(),
            last: format!("GET-64B-p3: {} ops/s", 100_000 * done),
            figures: [
                ("ops_per_sec".to_string(), 100_000.0 * done as f64),
                ("p50_us".to_string(), 90.0),
                ("p99_us".to_string(), 250.0),
                ("server_cpu_us_per_request".to_string(), 1.25),
            ]
            .into(),
            warnings: vec!["the client is saturated".into()],
            seconds: tail.clone(),
            seconds_total: 2 * done,
            updated_ms: now_ms(),
            hosts: "servers on h3; load from h1, h2".into(),
        };
        Seat::report(&runner, &running, &status).unwrap();
        if done != 3 {
            app.refresh(&queue);
        }
    }
    app.refresh(&queue);
    let shown = screen(&app);
    for expected in [
        running.id.as_str(),
        "step: case 1/1: GET-64B-p3",
        "last: GET-64B-p3: 400000 ops/s",
        "4 of 4 records",
        "ops/s, each measured second",
        "latency µs, each measured second",
        "s 8",
        "heartbeat",
        "server CPU: 1.25 µs per request",
        "warning: the client is saturated",
        "hosts: servers on h3; load from h1, h2",
    ] {
        assert!(shown.contains(expected), "{expected:?} in\n{shown}");
    }
    // Per record: the missed third is missed here (a point per read of the status).
    assert_eq!(app.series[&running.id].len(), 3);
    let seconds: Vec<u64> = app.seconds[&running.id].1.iter().map(|s| s[0]).collect();
    let expected: Vec<u64> = (1..=4u64).flat_map(|d| [90_000 * d, 110_000 * d]).collect();
    assert_eq!(seconds, expected);
    // What a hostile writer puts in a status is shown, not obeyed by the terminal.
    let hostile = Status {
        step: "\x1b]0;owned\x07 step".into(),
        ..Status::default()
    };
    Seat::report(&runner, &running, &hostile).unwrap();
    app.refresh(&queue);
    let row = app.rows.iter().find(|r| r.id == running.id).unwrap();
    assert_eq!(row.status.as_ref().unwrap().step, "?]0;owned? step");

    // Results: newest first; the summary is read from the results directory.
    press(&mut app, &queue, KeyCode::Char('3'));
    app.refresh(&queue);
    let shown = screen(&app);
    assert!(shown.contains("Results: 2 done"), "{shown}");
    assert!(shown.contains("# run 2"), "{shown}");
    press(&mut app, &queue, KeyCode::Char('c'));
    assert!(app.message.as_deref().unwrap().contains("mark two"));
    press(&mut app, &queue, KeyCode::Char(' '));
    press(&mut app, &queue, KeyCode::Down);
    press(&mut app, &queue, KeyCode::Char(' '));
    assert!(screen(&app).contains("* 20261202T000000.001Z"));
    press(&mut app, &queue, KeyCode::Char('c'));
    let message = app.message.clone().unwrap();
    assert!(
        message.starts_with("both runs drawn in") && message.contains("bench-000002"),
        "{message}"
    );
    // A results path from the queue that is not a directory named for its task is not
    // read, nor handed to the report.
    let first_id = "20261202T000000.001Z-bench-000001";
    assert!(checked_dir(first_id, tmp.path().to_str().unwrap()).is_none());
    assert!(checked_dir(first_id, "/etc").is_none());
    for near in [
        format!("{first_id}x"),
        format!("{first_id}.2a"),
        format!("{first_id}."),
    ] {
        let dir = tmp.path().join("results").join(&near);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(
            checked_dir(first_id, dir.to_str().unwrap()).is_none(),
            "{near}"
        );
    }
    let second = tmp.path().join("results").join(format!("{first_id}.2"));
    std::fs::create_dir_all(&second).unwrap();
    assert!(checked_dir(first_id, second.to_str().unwrap()).is_some());
    let message = app.message.clone().unwrap();
    assert!(
        message.starts_with("both runs drawn in") && message.contains("bench-000002"),
        "{message}"
    );
}
