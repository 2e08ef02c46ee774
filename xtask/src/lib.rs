//! valkey-bench's orchestration, in layers that only point down (ARCHITECTURE.md):
//! `cli` → `bench`, `compare` → `plan` → `suites` → `case` → `topology` → `host` →
//! `instances`, `process`.
//!
//! `main.rs` only parses flags and dispatches to `cli`. The library form exists so the
//! end-to-end tests in `tests/` can drive instances directly.

pub mod bench;
pub mod capacity;
pub mod case;
pub mod cli;
pub mod compare;
pub mod counts;
pub mod error;
pub mod events;
pub mod flamegraph;
pub mod host;
pub mod instances;
pub mod plan;
pub mod process;
pub mod project;
pub mod publish;
pub mod queue;
pub mod rundir;
pub mod runner;
pub mod selfbench;
pub mod suites;
pub mod tls;
pub mod topology;
pub mod untrusted;
pub mod valkey;
pub mod valkey_benchmark;
pub mod views;
