//! The subcommands, one module each; the flag groups they share are in `args`.

mod args;
pub mod bench;
pub mod build;
pub mod compare;
pub mod fetch;
pub mod flamegraph;
pub mod loadgen;
pub mod report;
pub mod selfbench;
pub mod start;

pub use args::*;
