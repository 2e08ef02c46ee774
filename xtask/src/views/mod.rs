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

/// Files a run writes in its directory, which a progress stream must not be.
const RUN_FILES: [&str; 6] = [
    "results.jsonl",
    "run.json",
    "summary.md",
    "capacity.json",
    "report.html",
    "report.md",
];

/// A run's sinks: the terminal view, and the JSON-lines stream at `progress_json` when
/// given (refused when it is one of the run's own files under `out`).
pub fn terminal_and_json(
    progress_json: Option<&Path>,
    out: Option<&Path>,
) -> anyhow::Result<Sinks> {
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Terminal::new())];
    if let Some(path) = progress_json {
        let files = out
            .into_iter()
            .flat_map(|out| RUN_FILES.map(|name| (name, out.join(name))));
        for (name, file) in files {
            // The same file, however it is spelled (the directory may not exist yet).
            let dir = |p: &Path| p.parent().and_then(|d| d.canonicalize().ok());
            let same_dir = dir(path).is_some() && dir(path) == dir(&file);
            if path == file || (same_dir && path.file_name() == file.file_name()) {
                let what = match name {
                    "results.jsonl" => "results file",
                    other => other,
                };
                return Err(UsageError(format!(
                    "--progress-json {}: that is the run's {what}; give another path",
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
    fn a_progress_stream_is_never_one_of_the_runs_files() {
        let out = std::path::Path::new("/nonexistent/run");
        for name in super::RUN_FILES {
            let err = super::terminal_and_json(Some(&out.join(name)), Some(out))
                .err()
                .unwrap_or_else(|| panic!("{name} accepted"));
            assert!(err.to_string().contains("give another path"), "{err}");
        }
    }

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let hostile = "r\u{1b}]0;owned\u{7}\u{1b}[2J\nnext";
        assert_eq!(super::printable(hostile, false), "r?]0;owned??[2J?next");
        assert_eq!(super::printable(hostile, true), "r?]0;owned??[2J\nnext");
    }
}
