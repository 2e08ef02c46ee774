//! Views of a run: sinks of its events (the terminal's progress, JSON lines, a runner's
//! live status, the TUI, the Prometheus endpoint).

pub mod json_lines;
pub mod prometheus;
pub mod status;
pub mod terminal;
pub mod tui;

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

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let hostile = "r\u{1b}]0;owned\u{7}\u{1b}[2J\nnext";
        assert_eq!(super::printable(hostile, false), "r?]0;owned??[2J?next");
        assert_eq!(super::printable(hostile, true), "r?]0;owned??[2J\nnext");
    }
}
