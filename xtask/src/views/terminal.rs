//! The terminal view of a run: a progress bar on an interactive stderr, a line per record
//! otherwise (CI logs), and the run's header lines either way.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::events::{Event, Sink};

/// A bar counting `unit`s, drawn on stderr (callers that are not on a terminal use a
/// hidden one).
pub fn progress_bar(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed}}<{{eta}}] {{msg}}"
        ))
        .expect("the template is valid"),
    );
    bar
}

pub struct Terminal {
    interactive: bool,
    bar: Option<ProgressBar>,
    /// Perf: the bar counts records (repetitions); mem and sync: cases.
    per_record: bool,
    total: u64,
}

impl Terminal {
    /// Draws a bar only when stderr is a terminal.
    pub fn new() -> Terminal {
        Terminal {
            interactive: std::io::stderr().is_terminal(),
            bar: None,
            per_record: false,
            total: 0,
        }
    }
}

impl Terminal {
    /// A line on stderr, above the bar when there is one.
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) if self.interactive => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }
}

impl Default for Terminal {
    fn default() -> Terminal {
        Terminal::new()
    }
}

impl Sink for Terminal {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id,
                suite,
                cases,
                repetitions,
                expected_records,
                valkey_version,
                source_id,
                engine,
                results,
                hosts,
            } => {
                let (total, unit) = match repetitions {
                    Some(r) => {
                        eprintln!(
                            "run {run_id}: {cases} cases × {r} repetitions on Valkey \
                             {valkey_version} ({source_id}), engine {engine}"
                        );
                        (*expected_records, "repetitions")
                    }
                    None => {
                        eprintln!(
                            "run {run_id}: {cases} {suite} cases on Valkey {valkey_version} \
                             ({source_id})"
                        );
                        (*cases as u64, "cases")
                    }
                };
                eprintln!("results: {}", results.display());
                if !hosts.is_empty() {
                    eprintln!("hosts: {hosts}");
                }
                self.per_record = repetitions.is_some();
                let bar = if self.interactive {
                    progress_bar(total, unit)
                } else {
                    ProgressBar::hidden()
                };
                self.total = total;
                self.bar = Some(bar);
            }
            Event::CaseStarted { case, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(case.clone());
                }
            }
            Event::RecordWritten {
                case,
                index,
                cases,
                repetition,
                done,
                line,
                ..
            } => {
                if let Some(bar) = self.bar.as_ref().filter(|_| self.per_record) {
                    bar.inc(1);
                }
                if !self.interactive {
                    if self.per_record {
                        eprintln!("[{done}/{}] {case} rep {repetition}: {line}", self.total);
                    } else {
                        eprintln!("[{index}/{cases}] {case}: {line}");
                    }
                }
            }
            Event::CaseFinished { .. } => {
                if let Some(bar) = self.bar.as_ref().filter(|_| !self.per_record) {
                    bar.inc(1);
                }
            }
            Event::CompareStarted {
                run_id,
                mode,
                threshold_pct,
                baseline,
                baseline_version,
                baseline_source_id,
                candidate,
                candidate_version,
                candidate_source_id,
                dir,
                ..
            } => {
                eprintln!(
                    "compare {run_id}: baseline {baseline} (Valkey {baseline_version}, \
                     {baseline_source_id}) vs candidate {candidate} (Valkey {candidate_version}, \
                     {candidate_source_id}); {mode} mode, threshold {threshold_pct}%"
                );
                eprintln!("results: {}", dir.display());
                let bar = if self.interactive {
                    let bar = ProgressBar::new(0);
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {pos} trials [{elapsed}] {msg}")
                            .expect("the template is valid"),
                    );
                    bar
                } else {
                    ProgressBar::hidden()
                };
                self.bar = Some(bar);
            }
            Event::TrialStarted { case, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(case.clone());
                }
            }
            Event::TrialFinished {
                case,
                trial,
                change_pct,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                if !self.interactive {
                    let change = change_pct.map_or("-".into(), |c| format!("{c:+.2}%"));
                    eprintln!("{case} trial {trial}: {change}");
                }
            }
            Event::CaseVerdict {
                case,
                verdict,
                change_pct,
                look,
            } => {
                let text = format!("{case}: {verdict} ({change_pct:+.2}%) at look {look}");
                if self.interactive {
                    if let Some(bar) = &self.bar {
                        bar.set_message(text);
                    }
                } else {
                    eprintln!("{text}");
                }
            }
            Event::Step { message } => self.line(message),
            Event::CapacityStep { line, .. } => self.line(line),
            Event::Warning { message } => self.line(&format!("warning: {message}")),
            Event::Verdicts { .. } => {
                // The verdict table follows on stdout: the bar goes first.
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            Event::Finished { .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            // The record's line says it; the metrics endpoint counts these.
            Event::Requests { .. } | Event::Errors { .. } | Event::LoadSecond { .. } => {}
        }
    }
}
