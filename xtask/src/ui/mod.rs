//! Views of a run: sinks of its events.

pub mod json_lines;
pub mod metrics;
pub mod status;
pub mod terminal;
pub mod tui;
