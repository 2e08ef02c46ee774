//! `--progress-json FILE`: every event as one JSON line, flushed as it happens, for a
//! program that follows a run (a dashboard, a queue runner, `tail -f`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use crate::events::{Event, Sink};

pub struct JsonLines<W: Write> {
    out: W,
    failed: bool,
}

impl JsonLines<BufWriter<File>> {
    /// Creates (or truncates) `path`, and its directory. A path that cannot be created is
    /// a usage error of the flag, reported before the run starts.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| {
                format!(
                    "--progress-json {}: cannot create its directory",
                    path.display()
                )
            })?;
        }
        let file = File::create(path)
            .with_context(|| format!("--progress-json {}: cannot create it", path.display()))?;
        Ok(JsonLines::new(BufWriter::new(file)))
    }
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out, failed: false }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn event(&mut self, event: &Event) {
        // What a metrics endpoint counts: the record already carries it, and the progress
        // stream keeps the events it documents.
        if self.failed
            || matches!(
                event,
                Event::Requests { .. } | Event::Errors { .. } | Event::LoadSecond { .. }
            )
        {
            return;
        }
        let line = serde_json::to_string(event).expect("events serialize");
        let written = writeln!(self.out, "{line}").and_then(|()| self.out.flush());
        if let Err(e) = written {
            // Progress is not a result: say so once and let the run go on.
            eprintln!("warning: the progress stream stopped ({e}); the run goes on");
            self.failed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_event() {
        let mut sink = JsonLines::new(Vec::new());
        sink.event(&Event::CaseStarted {
            case: "a".into(),
            index: 1,
            cases: 1,
        });
        sink.event(&Event::CaseFinished {
            case: "a".into(),
            index: 1,
        });
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "case_started");
        assert_eq!(lines[1]["event"], "case_finished");
    }

    /// A writer that fails: the sink warns once and stops writing, never panics.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("no space left"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_stream_does_not_stop_the_run() {
        let mut sink = JsonLines::new(Full);
        for _ in 0..3 {
            sink.event(&Event::CaseFinished {
                case: "a".into(),
                index: 1,
            });
        }
        assert!(sink.failed);
    }
}
