//! Valkey sources and builds: which tree, fetched how, built with which options, cached
//! where.

mod archive;
pub mod build;
pub mod fetch;
pub mod manifest;
pub mod source;

pub use build::{Binaries, build};
pub use manifest::Manifest;
pub use source::{Source, SourceRequest};

use std::path::Path;

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
    /// `source` with the default build options (jemalloc, no TLS, no extra flags).
    pub fn with_defaults(source: SourceRequest) -> BuildRequest {
        BuildRequest {
            source,
            options: BuildOptions {
                tls: false,
                malloc: bench_core::result::Malloc::Jemalloc,
                cflags: String::new(),
            },
        }
    }

    /// How a SPEC (compare's `--baseline`/`--candidate`, flamegraph's `--valkey`/`--diff`)
    /// becomes a build with the default options: a pinned version, an existing directory,
    /// an existing file (a release tarball), or a revision of `valkey_src`. Anything else is
    /// a usage error naming `flag`.
    pub fn from_spec(
        flag: &str,
        spec: &str,
        valkey_src: Option<&Path>,
        manifest: &Manifest,
    ) -> anyhow::Result<BuildRequest> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(UsageError(format!(
                "{flag} is empty; give a version, a directory or a revision"
            ))
            .into());
        }
        if manifest.find(spec).is_some() {
            return Ok(BuildRequest::with_defaults(SourceRequest {
                valkey_version: Some(spec.to_string()),
                ..SourceRequest::default()
            }));
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(BuildRequest::with_defaults(SourceRequest {
                valkey_src: Some(path.to_path_buf()),
                ..SourceRequest::default()
            }));
        }
        if path.is_file() {
            return Ok(BuildRequest::with_defaults(SourceRequest {
                valkey_tarball: Some(path.to_path_buf()),
                ..SourceRequest::default()
            }));
        }
        if let Some(src) = valkey_src {
            return Ok(BuildRequest::with_defaults(SourceRequest {
                valkey_src: Some(src.to_path_buf()),
                git_ref: Some(spec.to_string()),
                ..SourceRequest::default()
            }));
        }
        Err(UsageError(format!(
            "{flag} {spec:?} is not a pinned version ({}), not a directory or tarball, and there is no \
             --valkey-src (or VALKEY_SRC) repository to find it in as a revision",
            manifest.known().join(", ")
        ))
        .into())
    }

    /// A SPEC as the command line takes it (`from_spec`), or as a queued task may name it
    /// (`from_task_spec`).
    pub fn resolve_spec(
        task: bool,
        flag: &str,
        spec: &str,
        valkey_src: Option<&Path>,
        manifest: &Manifest,
    ) -> anyhow::Result<BuildRequest> {
        if task {
            BuildRequest::from_task_spec(flag, spec, valkey_src, manifest)
        } else {
            BuildRequest::from_spec(flag, spec, valkey_src, manifest)
        }
    }

    /// A SPEC in a queued task: a pinned version, or a revision of the runner's own
    /// repository (its `VALKEY_SRC`). Never a path: a task's paths are the queueing
    /// machine's, and a task may not point a build at the runner's files.
    pub fn from_task_spec(
        flag: &str,
        spec: &str,
        valkey_src: Option<&Path>,
        manifest: &Manifest,
    ) -> anyhow::Result<BuildRequest> {
        if manifest.find(spec).is_some() {
            return BuildRequest::from_spec(flag, spec, None, manifest);
        }
        check_revision(flag, spec)?;
        let Some(src) = valkey_src else {
            return Err(UsageError(format!(
                "{flag} {spec:?}: a task names a pinned version ({}) or a revision of the \
                 runner's repository (VALKEY_SRC), and VALKEY_SRC is not set",
                manifest.known().join(", ")
            ))
            .into());
        };
        Ok(BuildRequest::with_defaults(SourceRequest {
            valkey_src: Some(src.to_path_buf()),
            git_ref: Some(spec.to_string()),
            ..SourceRequest::default()
        }))
    }

    /// What `binaries` refuses before it builds, checked without resolving anything: the
    /// cflags' characters and a pinned version's name (a task is checked this way when it
    /// is queued).
    pub fn check(&self) -> Result<(), UsageError> {
        build::check_cflags(&self.options.cflags).map_err(|e| UsageError(format!("{e:#}")))?;
        let pinned_only = self.source.valkey_src.is_none() && self.source.valkey_tarball.is_none();
        if let Some(version) = self
            .source
            .valkey_version
            .as_deref()
            .filter(|_| pinned_only)
        {
            let manifest = Manifest::embedded();
            if manifest.find(version).is_none() {
                return Err(UsageError(format!(
                    "--valkey-version {version:?}: not a pinned version ({})",
                    manifest.known().join(", ")
                )));
            }
        }
        Ok(())
    }

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

/// A git revision as a task may name one: a branch, tag, hash or `HEAD~2`, not an option
/// (`-...`), not a path, not a range.
pub fn check_revision(flag: &str, rev: &str) -> Result<(), UsageError> {
    let ok = !rev.is_empty()
        && rev.len() <= 200
        && !rev.starts_with(['-', '/', '.'])
        && !rev.contains("..")
        && rev.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'~' | b'^')
        });
    if ok {
        Ok(())
    } else if rev.starts_with(['/', '.']) {
        Err(UsageError(format!(
            "{flag} {rev:?}: a path; a task builds a pinned version or a revision of the \
             runner's repository (VALKEY_SRC), never a path on the queueing machine"
        )))
    } else {
        Err(UsageError(format!(
            "{flag} {rev:?}: not a revision a task may name; use a pinned version, a branch, \
             a tag or a commit hash (letters, digits, . _ - / ~ ^)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_resolve_to_versions_directories_or_revisions() {
        let manifest = Manifest::embedded();
        let a = BuildRequest::from_spec("--baseline", "8.1.1", None, &manifest).unwrap();
        assert_eq!(a.source.valkey_version.as_deref(), Some("8.1.1"));
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().to_str().unwrap();
        let a = BuildRequest::from_spec("--candidate", spec, None, &manifest).unwrap();
        assert_eq!(a.source.valkey_src.as_deref(), Some(dir.path()));
        assert_eq!(a.source.git_ref, None);
        let a =
            BuildRequest::from_spec("--candidate", "HEAD~1", Some(dir.path()), &manifest).unwrap();
        assert_eq!(a.source.git_ref.as_deref(), Some("HEAD~1"));
        let err = BuildRequest::from_spec("--candidate", "HEAD~1", None, &manifest)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--candidate \"HEAD~1\"") && err.contains("8.1.1"),
            "{err}"
        );
    }
}
