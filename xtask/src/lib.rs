//! valkey-bench's orchestration: the CLI, Valkey builds, child processes, suites, files.
//!
//! `main.rs` only parses flags and dispatches to `cli`. The library form exists so the
//! end-to-end tests in `tests/` can drive instances directly.

pub mod cli;
pub mod compare;
pub mod error;
pub mod events;
pub mod flamegraph;
pub mod host;
pub mod instances;
pub mod instructions;
pub mod mem;
pub mod monitor;
pub mod perf;
pub mod process;
pub mod project;
pub mod report;
pub mod results;
pub mod runner;
pub mod suite;
pub mod sync;
pub mod topology;
pub mod ui;
pub mod valkey;
pub mod valkey_benchmark;
