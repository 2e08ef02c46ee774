//! Valkey sources and builds: which tree, fetched how, built with which options, cached
//! where.

pub mod build;
pub mod fetch;
pub mod manifest;
pub mod source;

pub use build::{Binaries, build};
pub use manifest::Manifest;
pub use source::{Source, SourceRequest};
