//! Valkey sources and builds: which tree, fetched how, built with which options, cached
//! where.

pub mod build;
pub mod fetch;
pub mod manifest;
pub mod source;

pub use build::{Binaries, build};
pub use manifest::Manifest;
pub use source::{Source, SourceRequest};

use bench_core::result::BuildOptions;
use bench_core::shutdown::Shutdown;

use crate::error::UsageError;

/// Which Valkey to build and how: a source and build options, checked when built.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub source: SourceRequest,
    pub options: BuildOptions,
}

impl BuildRequest {
    /// Resolves the source and returns its binaries, building them if they are not
    /// cached. A bad source or `cflags` is a [`UsageError`] (exit 2), before any build.
    pub fn binaries(&self, shutdown: &Shutdown) -> anyhow::Result<Binaries> {
        let manifest = Manifest::embedded();
        build::check_cflags(&self.options.cflags).map_err(|e| UsageError(format!("{e:#}")))?;
        let source = Source::resolve(&self.source, &crate::project::root(), &manifest)
            .map_err(|e| UsageError(format!("{e:#}")))?;
        build(
            &source,
            &self.options,
            &manifest,
            &crate::project::cache_dir(),
            shutdown,
        )
    }
}
