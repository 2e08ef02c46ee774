//! Views of a run: sinks of its events (the terminal's progress, JSON lines, a runner's
//! live status, the TUI, the Prometheus endpoint).

pub mod json_lines;
pub mod prometheus;
pub mod status;
pub mod terminal;
pub mod tui;

use std::path::Path;

use crate::error::UsageError;
use crate::events::{Sink, Sinks};
use json_lines::JsonLines;
use terminal::Terminal;

/// Text from outside (a queue's file names, task fields, runner names, refusal reasons)
/// as a terminal may show it: every control character, escape sequences' ESC among them,
/// becomes `?`, so such text is shown, never obeyed; line breaks too unless `lines`.
pub fn printable(text: &str, lines: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' if lines => c,
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// A run's sinks: the terminal view, and the JSON-lines stream at `progress_json` when
/// given (refused when it is the run's own results file under `out`).
pub fn terminal_and_json(
    progress_json: Option<&Path>,
    out: Option<&Path>,
) -> anyhow::Result<Sinks> {
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Terminal::new())];
    if let Some(path) = progress_json {
        if let Some(out) = out {
            let results = out.join("results.jsonl");
            // The same file, however it is spelled (the directory may not exist yet).
            let dir = |p: &Path| p.parent().and_then(|d| d.canonicalize().ok());
            let same_dir = dir(path).is_some() && dir(path) == dir(&results);
            if path == results || (same_dir && path.file_name() == results.file_name()) {
                return Err(UsageError(format!(
                    "--progress-json {}: that is the run's results file; give another path",
                    path.display()
                ))
                .into());
            }
        }
        let stream = JsonLines::create(path).map_err(|e| UsageError(format!("{e:#}")))?;
        sinks.push(Box::new(stream));
    }
    Ok(Sinks::new(sinks))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let hostile = "r\u{1b}]0;owned\u{7}\u{1b}[2J\nnext";
        assert_eq!(super::printable(hostile, false), "r?]0;owned??[2J?next");
        assert_eq!(super::printable(hostile, true), "r?]0;owned??[2J\nnext");
    }
}
