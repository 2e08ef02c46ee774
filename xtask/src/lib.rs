//! valkey-bench's orchestration, in layers that only point down (ARCHITECTURE.md):
//! `cli` → `runner`, `compare` → `plan` → `suites` → `run` → `topology` → `host` →
//! `instances`, `process`.
//!
//! `main.rs` only parses flags and dispatches to `cli`. The library form exists so the
//! end-to-end tests in `tests/` can drive instances directly.

pub mod cli;
pub mod compare;
pub mod error;
pub mod events;
pub mod host;
pub mod instances;
pub mod plan;
pub mod process;
pub mod project;
pub mod publish;
pub mod queue;
pub mod run;
pub mod rundir;
pub mod runner;
pub mod suites;
pub mod tls;
pub mod topology;
pub mod ui;
pub mod untrusted;
pub mod valkey;
pub mod valkey_benchmark;
