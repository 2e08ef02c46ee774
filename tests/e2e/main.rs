//! End-to-end tests: real valkey-server processes from our own build, driven through the
//! xtask binary as a user would (and through the xtask library where a panic is needed).
//!
//! The first test to need Valkey builds it (about 2.5 minutes on 2 cores, once per
//! machine: the build is cached under $XDG_CACHE_HOME/valkey-bench).

mod build;
mod capacity;
mod cluster;
mod compare;
mod controls;
mod hostile;
mod loadgen;
mod metrics;
mod placement;
mod profile;
mod queue;
mod remote;
mod remote_commands;
mod report;
mod signals;
mod source;
mod suites;
mod testnet;
mod tls;
mod topology;
mod tui;
mod util;
mod valkey_queue;
mod verdicts;
