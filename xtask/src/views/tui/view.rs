//! Draws the TUI's state: the tab bar and the queue's counts, the tab, the keys and the
//! last message, and a confirmation over it all. Pure: an `App` in, a frame out.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, Gauge, GraphType, Paragraph, Row, Table,
    TableState, Tabs, Wrap,
};

use super::form::FieldKind;
use super::{App, Point, TABS, Tab};
use crate::queue::{State, now_ms};

pub fn draw(frame: &mut Frame, app: &App) {
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    header(frame, app, top);
    match app.tab {
        Tab::Status => status(frame, app, body),
        Tab::Queue => queue(frame, app, body),
        Tab::Results => results(frame, app, body),
        Tab::Create => create(frame, app, body),
    }
    footer(frame, app, bottom);
    if let Some(confirm) = &app.confirm {
        let area = centered(frame.area(), 100, 7);
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(confirm.question()),
                Line::from(""),
                Line::from("y: yes   any other key: no".dim()),
            ])
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" Confirm ").yellow()),
            area,
        );
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn header(frame: &mut Frame, app: &App, area: Rect) {
    let [tabs, info] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let at = TABS.iter().position(|t| *t == app.tab).unwrap_or(0);
    let titles = TABS
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, t.title()));
    frame.render_widget(
        Tabs::new(titles)
            .select(at)
            .highlight_style(Style::new().bold().reversed())
            .divider("|"),
        tabs,
    );
    let mut spans = vec![
        Span::raw(format!(" {}  ", app.location)),
        Span::raw(format!(
            "pending {}  running {}  done {}  failed {}",
            app.count(State::Pending),
            app.count(State::Running),
            app.count(State::Done),
            app.count(State::Failed)
        )),
    ];
    if let Some(e) = &app.error {
        spans.push(Span::styled(format!("  {e}"), Style::new().red().bold()));
    }
    frame.render_widget(Line::from(spans), info);
}

fn footer(frame: &mut Frame, app: &App, area: Rect) {
    let keys = match app.tab {
        Tab::Status => "Tab/1-4 tabs  q quit",
        Tab::Queue => "↑↓ select  c cancel  r retry  d remove  Tab/1-4 tabs  q quit",
        Tab::Results => "↑↓ select  space mark  c report of the two marked  d remove  q quit",
        Tab::Create => {
            "↑↓ field  ←→ choice  type to edit  Enter on the last line queues  Esc leave"
        }
    };
    let [message, hints] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    if let Some(m) = &app.message {
        frame.render_widget(Line::from(format!(" {m}")).yellow(), message);
    }
    frame.render_widget(Line::from(format!(" {keys}")).dim(), hints);
}

/// `12 s ago`.
fn ago(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms > 0 => format!("{:.0} s ago", now_ms().saturating_sub(ms) as f64 / 1e3),
        _ => "never".into(),
    }
}

fn status(frame: &mut Frame, app: &App, area: Rect) {
    let running: Vec<_> = app
        .rows
        .iter()
        .filter(|r| r.state == State::Running)
        .collect();
    if running.is_empty() {
        let last = app.rows.iter().rfind(|r| r.state == State::Done);
        let mut lines = vec![Line::from(format!(
            "No task is running; {} pending.",
            app.count(State::Pending)
        ))];
        if let Some(r) = last {
            lines.push(Line::from(format!(
                "Last done: {}  {}",
                r.id,
                r.results.as_deref().unwrap_or("")
            )));
        }
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" Status ")),
            area,
        );
        return;
    }
    let shown = running.len().min(3);
    let area = if running.len() > shown {
        let [more, rest] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        frame.render_widget(
            Line::from(format!(
                " {} tasks running; the first {shown} shown (all are in the Queue tab)",
                running.len()
            ))
            .yellow(),
            more,
        );
        rest
    } else {
        area
    };
    let areas = Layout::vertical(vec![Constraint::Ratio(1, shown as u32); shown]).split(area);
    for (row, area) in running.iter().zip(areas.iter()) {
        let s = row.status.clone().unwrap_or_default();
        let block = Block::bordered().title(format!(
            " {}  runner {}  heartbeat {} ",
            row.id,
            row.runner.as_deref().unwrap_or("?"),
            ago(row.heartbeat_ms)
        ));
        let inner = block.inner(*area);
        frame.render_widget(block, *area);
        let mut lines = vec![
            Line::from(row.command.clone()).dim(),
            Line::from(format!("step: {}", s.step)),
            Line::from(format!("last: {}", s.last)),
        ];
        if !s.hosts.is_empty() {
            lines.push(Line::from(format!("hosts: {}", s.hosts)));
        }
        if let Some(cpu) = s.figures.get("server_cpu_us_per_request") {
            lines.push(Line::from(format!(
                "server CPU: {cpu:.2} µs per request (the last record's, user + system)"
            )));
        }
        for w in &s.warnings {
            lines.push(Line::from(format!("warning: {w}")).red());
        }
        let [text, gauge, charts] = Layout::vertical([
            Constraint::Length(lines.len() as u16),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .areas(inner);
        frame.render_widget(Paragraph::new(lines), text);
        let ratio = if s.total > 0 {
            (s.done as f64 / s.total as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        frame.render_widget(
            Gauge::default()
                .gauge_style(Style::new().green())
                .ratio(ratio)
                .label(if s.total > 0 {
                    let unit = if s.unit.is_empty() { "done" } else { &s.unit };
                    format!("{} of {} {unit}", s.done, s.total)
                } else {
                    format!("{} done", s.done)
                }),
            gauge,
        );
        if charts.height >= 5 {
            let seconds = app
                .seconds
                .get(&row.id)
                .map_or(&[][..], |(_, s)| s.as_slice());
            if seconds.is_empty() {
                series_charts(
                    frame,
                    app.series.get(&row.id).map_or(&[][..], Vec::as_slice),
                    charts,
                );
            } else {
                second_charts(frame, seconds, charts);
            }
        }
    }
}

/// A perf task's measured seconds, a record's at a time (each record's per-second series,
/// added when it is written): throughput on the left, p50 and p99 on the right.
fn second_charts(frame: &mut Frame, seconds: &[[u64; 3]], area: Rect) {
    let pick = |i: usize| -> Vec<(f64, f64)> {
        seconds
            .iter()
            .enumerate()
            .map(|(n, s)| (n as f64 + 1.0, s[i] as f64))
            .collect()
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let ops = pick(0);
    chart(
        frame,
        left,
        "ops/s, each measured second",
        "s",
        &[("ops/s", Color::Cyan, &ops)],
    );
    let (p50, p99) = (pick(1), pick(2));
    chart(
        frame,
        right,
        "latency µs, each measured second",
        "s",
        &[("p50", Color::Green, &p50), ("p99", Color::Magenta, &p99)],
    );
}

/// The running task's records: throughput on the left, p50 and p99 on the right (perf);
/// another suite's first figure alone.
fn series_charts(frame: &mut Frame, points: &[Point], area: Rect) {
    let pick = |key: &str| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|(n, f)| f.get(key).map(|v| (*n as f64, *v)))
            .collect()
    };
    let ops = pick("ops_per_sec");
    if ops.is_empty() {
        let first = points.last().and_then(|(_, f)| f.keys().next().cloned());
        if let Some(key) = first {
            let data = pick(&key);
            chart(
                frame,
                area,
                &key,
                "record",
                &[(key.as_str(), Color::Cyan, &data)],
            );
        } else {
            frame.render_widget(Paragraph::new("no record yet").dim(), area);
        }
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    chart(
        frame,
        left,
        "ops/s per record",
        "record",
        &[("ops/s", Color::Cyan, &ops)],
    );
    let (p50, p99) = (pick("p50_us"), pick("p99_us"));
    chart(
        frame,
        right,
        "latency µs per record",
        "record",
        &[("p50", Color::Green, &p50), ("p99", Color::Magenta, &p99)],
    );
}

/// A line of a chart: its name, colour and points.
type Series<'a> = (&'a str, Color, &'a Vec<(f64, f64)>);

fn chart(frame: &mut Frame, area: Rect, title: &str, unit: &str, sets: &[Series<'_>]) {
    let all = sets.iter().flat_map(|(_, _, d)| d.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for (x, y) in all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1.0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let datasets = sets
        .iter()
        .map(|(name, color, data)| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(*color))
                .data(data)
        })
        .collect();
    let number = |v: f64| {
        if v >= 1e6 {
            format!("{:.1}M", v / 1e6)
        } else if v >= 1e3 {
            format!("{:.1}k", v / 1e3)
        } else {
            format!("{v:.0}")
        }
    };
    frame.render_widget(
        Chart::new(datasets)
            .block(Block::new().borders(Borders::TOP).title(title.to_string()))
            .x_axis(
                Axis::default()
                    .bounds([x0, x1])
                    .labels([format!("{x0:.0}"), format!("{unit} {x1:.0}")]),
            )
            .y_axis(Axis::default().bounds([0.0, y1]).labels([
                "0".to_string(),
                number(y1 / 2.0),
                number(y1),
            ])),
        area,
    );
}

fn table_state(at: usize, len: usize) -> TableState {
    TableState::default().with_selected((len > 0).then_some(at))
}

fn queue(frame: &mut Frame, app: &App, area: Rect) {
    let rows = app.queue_rows();
    let table = Table::new(
        rows.iter().map(|r| {
            let note = r
                .error
                .clone()
                .or_else(|| {
                    r.status.as_ref().map(|s| match s.total {
                        0 => s.step.clone(),
                        t => format!("{} ({}/{t})", s.step, s.done),
                    })
                })
                .unwrap_or_default();
            let state = Cell::from(r.state.name()).style(match r.state {
                State::Failed => Style::new().red(),
                State::Running => Style::new().green(),
                _ => Style::new(),
            });
            Row::new(vec![
                state,
                Cell::from(r.id.clone()),
                Cell::from(r.deliveries.to_string()),
                Cell::from(r.command.clone()),
                Cell::from(note),
            ])
        }),
        [
            Constraint::Length(8),
            Constraint::Length(38),
            Constraint::Length(5),
            Constraint::Percentage(35),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["state", "id", "del.", "command", "note"]).bold())
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(Block::bordered().title(format!(" Queue: {} task(s) ", rows.len())));
    frame.render_stateful_widget(table, area, &mut table_state(app.queue_at, rows.len()));
}

fn results(frame: &mut Frame, app: &App, area: Rect) {
    let rows = app.result_rows();
    let [list, detail] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let table = Table::new(
        rows.iter().map(|r| {
            let mark = if app.marked.contains(&r.id) { "*" } else { " " };
            Row::new(vec![
                Cell::from(mark),
                Cell::from(r.id.clone()),
                Cell::from(r.command.clone()),
                Cell::from(r.verdict.clone().unwrap_or_default()),
                Cell::from(r.results.clone().unwrap_or_default()),
            ])
        }),
        [
            Constraint::Length(1),
            Constraint::Length(38),
            Constraint::Fill(2),
            Constraint::Length(16),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["", "id", "command", "verdict", "results"]).bold())
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(Block::bordered().title(format!(" Results: {} done ", rows.len())));
    frame.render_stateful_widget(table, list, &mut table_state(app.results_at, rows.len()));
    let text = match (rows.get(app.results_at), &app.summary) {
        (None, _) => "No task has finished yet.".to_string(),
        (Some(r), Some((id, text))) if *id == r.id => text.clone(),
        (Some(_), _) => "reading its summary...".to_string(),
    };
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Summary ")),
        detail,
    );
}

fn create(frame: &mut Frame, app: &App, area: Rect) {
    let form = &app.form;
    let visible = form.visible();
    let mut lines = Vec::new();
    for (row, &i) in visible.iter().enumerate() {
        let f = &form.fields[i];
        let focused = form.focus == row;
        let value = match f.kind {
            FieldKind::Choice(_) => format!("< {} >", f.value),
            FieldKind::Text if focused => format!("{}_", f.value),
            FieldKind::Text => f.value.clone(),
        };
        let style = if focused {
            Style::new().reversed()
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::raw(format!(" {:>12}  ", f.label)),
            Span::styled(format!("{value:<40}"), style),
            Span::raw(format!("  {}", f.hint)).dim(),
        ]));
    }
    lines.push(Line::from(""));
    let submit = match &app.preview {
        Ok((1, _)) => "[ queue 1 task ]".to_string(),
        Ok((n, how)) => format!("[ queue {n} tasks: {how} ]"),
        Err(_) => "[ nothing to queue yet ]".to_string(),
    };
    let style = if form.on_submit() {
        Style::new().reversed().bold()
    } else {
        Style::new().bold()
    };
    lines.push(Line::from(Span::styled(format!(" {submit}"), style)));
    if let Err(why) = &app.preview {
        lines.push(Line::from(format!(" {why}")).red());
    }
    lines.push(Line::from(""));
    lines.push(
        Line::from(format!(
            " queue add {} {}",
            form.kind().name(),
            form.args().join(" ")
        ))
        .dim(),
    );
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Create ")),
        area,
    );
}
