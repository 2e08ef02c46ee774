//! The valkey-bench domain: everything that can be tested with a socket and a clock.
//!
//! This crate never spawns a process, never touches `results/`, and knows nothing about
//! git or make. It gets addresses and specs and returns measurements and records.

pub mod benchmark_csv;
pub mod capacity;
pub mod charts;
pub mod client;
pub mod cluster;
pub mod command;
pub mod compare;
pub mod distribution;
pub mod engine;
pub mod info;
pub mod loadgen;
pub mod mem;
pub mod metrics;
pub mod perf;
pub mod placement;
pub mod populate;
pub mod profile;
pub mod ranges;
pub mod report_page;
pub mod resp;
pub mod result;
pub mod server_config;
pub mod shutdown;
pub mod stats;
pub mod sync;
pub mod tables;
pub mod topology;
pub mod transport;
pub mod workload;
