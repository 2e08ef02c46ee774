//! The prepared source kept beside a build in the cache (`src.tar.gz`): a host whose
//! libraries cannot run our binaries builds its own from it (`host/build.rs`). Entries
//! made before sources were kept get theirs when next used.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::shutdown::Shutdown;

use super::build::Binaries;
use super::manifest::Manifest;
use super::source::Source;
use crate::process;

/// The prepared source's archive in a cache entry.
pub const SOURCE_ARCHIVE: &str = "src.tar.gz";

/// `tree` (a prepared source, before `make`) as a gzipped tar at `out`, without a git
/// worktree's `.git` link.
pub(crate) fn archive_source(tree: &Path, out: &Path, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut cmd = process::command("tar");
    cmd.arg("-czf")
        .arg(out)
        .arg("--exclude=./.git")
        .arg("-C")
        .arg(tree)
        .arg(".");
    let done = process::output(cmd, "tar", shutdown, Some(Duration::from_secs(600)))?;
    if !done.status.success() {
        bail!(
            "archiving the prepared source {} failed ({}): {}",
            tree.display(),
            done.status,
            process::tail(&done.stderr, 5)
        );
    }
    Ok(())
}

/// Adds the prepared source's archive to an entry that lacks it.
pub(crate) fn keep_source(
    mut hit: Binaries,
    source: &Source,
    manifest: &Manifest,
    cache: &Path,
    entry: &Path,
    shutdown: &Shutdown,
) -> anyhow::Result<Binaries> {
    // Named like a build attempt of this key, so a killed run's is swept the same way.
    let key = entry.file_name().unwrap_or_default().to_string_lossy();
    let scratch = tempfile::Builder::new()
        .prefix(&format!("{key}.tmp-"))
        .tempdir_in(entry.parent().unwrap_or(entry))?;
    let tree = scratch.path().join("src");
    let prepared = source
        .prepare(&tree, manifest, cache)
        .with_context(|| format!("preparing {}", source.describe()))?;
    let archive = scratch.path().join(SOURCE_ARCHIVE);
    archive_source(&tree, &archive, shutdown)?;
    drop(prepared);
    fs::rename(&archive, entry.join(SOURCE_ARCHIVE))?;
    hit.source_archive = Some(entry.join(SOURCE_ARCHIVE));
    let mut stored = hit.clone();
    stored.cached = false;
    crate::rundir::write_atomically(
        &entry.join("build.json"),
        &serde_json::to_vec_pretty(&stored)?,
    )?;
    Ok(hit)
}
