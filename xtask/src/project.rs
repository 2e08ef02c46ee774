//! Where things live: the project root and the per-user cache directory.

use std::path::PathBuf;

/// The workspace root (xtask always runs from it through `cargo xtask`).
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `results/` at the workspace root: where run directories go unless `--out` (or a
/// runner's `--results`) says otherwise.
pub fn results_dir() -> PathBuf {
    root().join("results")
}

/// `$XDG_CACHE_HOME/valkey-bench`, else `~/.cache/valkey-bench`: outside the clone, so
/// fresh clones and CI runs share Valkey builds.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("valkey-bench")
}
