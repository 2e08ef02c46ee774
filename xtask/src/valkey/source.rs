//! Where the Valkey source comes from, its identity (the cache key's first half), and how
//! a scratch copy of it is made for building.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use walkdir::WalkDir;

use super::fetch;
use super::manifest::{Manifest, PinnedVersion};
use crate::process;

/// How long a git or tar run may take (a repository on a stalled network file system
/// must not stall a run forever).
const TOOL_TIME: Duration = Duration::from_secs(600);

/// `git -C DIR ARGS...`, which must succeed: its stdout, trimmed.
fn git(dir: &Path, args: &[&dyn AsRef<OsStr>]) -> anyhow::Result<String> {
    let mut all: Vec<OsString> = vec!["-C".into(), dir.into()];
    all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
    process::tool_read("git", all, TOOL_TIME)
}

/// What the user asked for. First match wins: an explicit tree (`--valkey-src` or
/// `VALKEY_SRC`) or tarball (`--valkey-tarball`), an explicit pinned version, a checkout at
/// `valkey/src`, the default pin.
#[derive(Clone, Debug, Default)]
pub struct SourceRequest {
    pub valkey_src: Option<PathBuf>,
    pub valkey_tarball: Option<PathBuf>,
    pub git_ref: Option<String>,
    pub valkey_version: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Source {
    /// A pinned orig tarball of a Debian source package, fetched into the cache.
    Pinned(PinnedVersion),
    /// A release tarball the user has (offline machines); `sha256` is of its bytes.
    Tarball { path: PathBuf, sha256: String },
    /// A commit of a git repository, built through `git worktree` in a scratch directory.
    GitCommit { repo: PathBuf, commit: String },
    /// A directory as it is now (a git working tree included, local changes and all).
    Tree { dir: PathBuf, id: String },
}

impl Source {
    pub fn resolve(
        req: &SourceRequest,
        project_root: &Path,
        manifest: &Manifest,
    ) -> anyhow::Result<Source> {
        if let Some(tarball) = &req.valkey_tarball {
            if req.valkey_src.is_some() || req.valkey_version.is_some() || req.git_ref.is_some() {
                bail!(
                    "--valkey-tarball {} goes alone: drop --valkey-src (and VALKEY_SRC), \
                     --valkey-version and --ref",
                    tarball.display()
                );
            }
            return Source::from_tarball(tarball);
        }
        if let Some(dir) = &req.valkey_src {
            if let Some(version) = &req.valkey_version {
                bail!(
                    "both --valkey-src {} and --valkey-version {version} were given; pick one \
                     (VALKEY_SRC in the environment counts as --valkey-src)",
                    dir.display()
                );
            }
            return Source::from_dir(dir, req.git_ref.as_deref());
        }
        let placed = project_root.join("valkey").join("src");
        if let Some(version) = &req.valkey_version {
            if req.git_ref.is_some() {
                bail!(
                    "--ref selects a commit of a git source tree; it does not go with --valkey-version"
                );
            }
            return Ok(Source::Pinned(manifest.get(version)?.clone()));
        }
        if placed.is_dir() {
            return Source::from_dir(&placed, req.git_ref.as_deref());
        }
        if let Some(rev) = &req.git_ref {
            bail!(
                "--ref {rev} needs a git source tree: pass --valkey-src DIR (or VALKEY_SRC) or \
                 place a Valkey checkout at valkey/src"
            );
        }
        Ok(Source::Pinned(manifest.get(&manifest.default)?.clone()))
    }

    fn from_tarball(path: &Path) -> anyhow::Result<Source> {
        let path = path.canonicalize().with_context(|| {
            format!(
                "--valkey-tarball {}: no such file; give a Valkey release tarball \
                 (valkey-X.Y.Z.tar.gz)",
                path.display()
            )
        })?;
        if !path.is_file() {
            bail!(
                "--valkey-tarball {}: not a file; for a source directory use --valkey-src DIR",
                path.display()
            );
        }
        // Listing reads the whole archive once; it is cheap next to a build and lets bad
        // input be refused before anything starts.
        let listing = process::tool_read("tar", [OsStr::new("-tf"), path.as_os_str()], TOOL_TIME)
            .map_err(|_| {
            anyhow::anyhow!(
                "--valkey-tarball {}: tar cannot read it; give a Valkey release tarball \
                     (.tar.gz or .tar.xz)",
                path.display()
            )
        })?;
        let has_server_c = listing.lines().any(|member| {
            member
                .trim_start_matches("./")
                .split_once('/')
                .is_some_and(|(_, rest)| rest == "src/server.c")
        });
        if !has_server_c {
            bail!(
                "--valkey-tarball {}: not a Valkey source tarball (no TOP/src/server.c under \
                 one top directory)",
                path.display()
            );
        }
        let sha256 = fetch::sha256_file(&path)?;
        Ok(Source::Tarball { path, sha256 })
    }

    fn from_dir(dir: &Path, rev: Option<&str>) -> anyhow::Result<Source> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("--valkey-src {}: no such directory", dir.display()))?;
        if !dir.join("src").join("server.c").is_file() {
            bail!(
                "--valkey-src {}: not a Valkey source tree (no src/server.c); point it at the \
                 top of a Valkey checkout",
                dir.display()
            );
        }
        let commit = git_head(&dir);
        match (rev, commit) {
            (Some(rev), Some(_)) => {
                let spec = format!("{rev}^{{commit}}");
                let commit = git(&dir, &[&"rev-parse", &"--verify", &"--quiet", &spec])
                    .ok()
                    .filter(|c| !c.is_empty())
                    .with_context(|| {
                        format!(
                            "--ref {rev:?}: not a commit of the git repository {}",
                            dir.display()
                        )
                    })?;
                Ok(Source::GitCommit { repo: dir, commit })
            }
            (Some(rev), None) => bail!(
                "--ref {rev}: {} is not a git checkout; drop --ref to build the tree as it is",
                dir.display()
            ),
            (None, Some(commit)) => {
                let status = git(
                    &dir,
                    &[&"status", &"--porcelain", &"--untracked-files=normal"],
                )?;
                let id = if status.trim().is_empty() {
                    format!("git:{commit}")
                } else {
                    format!("git:{commit}-dirty-{}", tree_hash(&dir)?)
                };
                Ok(Source::Tree { dir, id })
            }
            (None, None) => {
                let id = format!("tree:{}", tree_hash(&dir)?);
                Ok(Source::Tree { dir, id })
            }
        }
    }

    /// Identity of the source: the same id means the same code.
    pub fn id(&self) -> String {
        match self {
            Source::Pinned(p) => format!("pinned:{}:sha256:{}", p.version, &p.sha256[..16]),
            Source::Tarball { sha256, .. } => format!("tarball:{}", &sha256[..16]),
            Source::GitCommit { commit, .. } => format!("git:{commit}"),
            Source::Tree { id, .. } => id.clone(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Pinned(p) => format!("pinned Valkey {} ({})", p.version, p.orig_tarball),
            Source::Tarball { path, .. } => format!("{} ({})", path.display(), self.id()),
            Source::GitCommit { repo, commit } => {
                format!("{} at {}", repo.display(), &commit[..12.min(commit.len())])
            }
            Source::Tree { dir, id } => format!("{} ({id})", dir.display()),
        }
    }

    /// Puts a buildable copy of the source at `dest` (which must not exist). The user's
    /// tree is never built in place; a git worktree is removed when the guard drops.
    pub fn prepare(
        &self,
        dest: &Path,
        manifest: &Manifest,
        cache: &Path,
    ) -> anyhow::Result<Prepared> {
        match self {
            Source::Pinned(pinned) => {
                let fetched = fetch::orig_tarball(pinned, manifest, cache)?;
                extract(&fetched.tarball, dest)?;
                Ok(Prepared { worktree: None })
            }
            Source::Tarball { path, .. } => {
                extract(path, dest)?;
                Ok(Prepared { worktree: None })
            }
            Source::GitCommit { repo, commit } => {
                // Registrations of our scratch worktrees whose directories a killed run's
                // successor swept (or that were deleted) go first.
                let _ = git(repo, &[&"worktree", &"prune"]);
                git(
                    repo,
                    &[&"worktree", &"add", &"--detach", &"--quiet", &dest, commit],
                )
                .with_context(|| {
                    format!("creating a git worktree of {} at {commit}", repo.display())
                })?;
                Ok(Prepared {
                    worktree: Some((repo.clone(), dest.to_path_buf())),
                })
            }
            Source::Tree { dir, .. } => {
                copy_tree(dir, dest)?;
                Ok(Prepared { worktree: None })
            }
        }
    }
}

/// Removes a scratch git worktree (and its registration in the user's repository) on drop.
#[derive(Debug)]
pub struct Prepared {
    worktree: Option<(PathBuf, PathBuf)>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some((repo, dest)) = self.worktree.take() {
            let _ = git(&repo, &[&"worktree", &"remove", &"--force", &dest]);
            let _ = git(&repo, &[&"worktree", &"prune"]);
        }
    }
}

/// Extracts a tarball with one top directory (as releases and Debian's orig tarballs have)
/// into `dest`, and checks that it is a Valkey tree. GNU tar refuses members with `..`.
fn extract(tarball: &Path, dest: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dest)?;
    let args: [&OsStr; 6] = [
        "-xf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        dest.as_os_str(),
        "--strip-components=1".as_ref(),
        "--no-same-owner".as_ref(),
    ];
    process::tool_read("tar", args, TOOL_TIME)
        .with_context(|| format!("extracting {}", tarball.display()))?;
    if !dest.join("src").join("server.c").is_file() {
        bail!(
            "{} is not a Valkey source tarball: after stripping its top directory there is \
             no src/server.c",
            tarball.display()
        );
    }
    Ok(())
}

fn git_head(dir: &Path) -> Option<String> {
    let top = git(dir, &[&"rev-parse", &"--show-toplevel"]).ok()?;
    if Path::new(&top).canonicalize().ok()? != dir {
        return None; // a directory inside some other repository is a plain tree
    }
    git(dir, &[&"rev-parse", &"HEAD"]).ok()
}

/// Build outputs that do not identify the source (a tree built in place hashes the same
/// as before, as far as these go).
fn is_build_output(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or("");
    matches!(ext, "o" | "d" | "a" | "so" | "log")
        || matches!(name, ".make-settings" | ".make-prerequisites")
        || (rel.parent() == Some(Path::new("src"))
            && name.starts_with("valkey-")
            && !name.contains('.'))
}

fn source_files(dir: &Path) -> impl Iterator<Item = walkdir::DirEntry> + '_ {
    WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .flatten()
        .filter(move |e| {
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
            !is_build_output(rel)
        })
}

/// Content hash of a tree: relative paths and bytes of every file but `.git` and build
/// outputs, in sorted order. 16 hex digits.
pub fn tree_hash(dir: &Path) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    for entry in source_files(dir) {
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(
            fs::read(entry.path())
                .with_context(|| format!("reading {}", entry.path().display()))?,
        );
        hasher.update([0]);
    }
    Ok(fetch::hex(&hasher.finalize()[..8]))
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in source_files(from) {
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        let target = to.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs::create_dir_all(&target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("src")).unwrap();
        fs::write(
            dir.path().join("src/server.c"),
            "int main(void) { return 0; }\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn tree_hash_follows_content_not_build_outputs() {
        let dir = fake_tree();
        let before = tree_hash(dir.path()).unwrap();
        fs::write(dir.path().join("src/server.o"), "object").unwrap();
        fs::write(dir.path().join("src/valkey-server"), "binary").unwrap();
        assert_eq!(tree_hash(dir.path()).unwrap(), before);
        fs::write(
            dir.path().join("src/server.c"),
            "int main(void) { return 1; }\n",
        )
        .unwrap();
        assert_ne!(tree_hash(dir.path()).unwrap(), before);
    }

    #[test]
    fn resolution_order_and_conflicts() {
        let manifest = Manifest::embedded();
        let project = tempfile::tempdir().unwrap();
        let req = SourceRequest::default();
        let src = Source::resolve(&req, project.path(), &manifest).unwrap();
        assert!(matches!(&src, Source::Pinned(p) if p.version == "8.1.1"));
        assert!(src.id().starts_with("pinned:8.1.1:sha256:d9bbd82eecb82f35"));

        let tree = fake_tree();
        let req = SourceRequest {
            valkey_src: Some(tree.path().into()),
            ..SourceRequest::default()
        };
        let src = Source::resolve(&req, project.path(), &manifest).unwrap();
        assert!(src.id().starts_with("tree:"), "{}", src.id());

        let both = SourceRequest {
            valkey_version: Some("9.1.2".into()),
            ..req.clone()
        };
        let err = Source::resolve(&both, project.path(), &manifest)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--valkey-src") && err.contains("--valkey-version"),
            "{err}"
        );

        let not_git = SourceRequest {
            git_ref: Some("HEAD~1".into()),
            ..req
        };
        let err = Source::resolve(&not_git, project.path(), &manifest)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a git checkout"), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let bad = SourceRequest {
            valkey_src: Some(empty.path().into()),
            ..SourceRequest::default()
        };
        let err = Source::resolve(&bad, project.path(), &manifest)
            .unwrap_err()
            .to_string();
        assert!(err.contains("src/server.c"), "{err}");
    }

    #[test]
    fn copies_skip_git_and_build_outputs() {
        let dir = fake_tree();
        fs::create_dir_all(dir.path().join(".git")).unwrap();
        fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        fs::write(dir.path().join("src/server.o"), "object").unwrap();
        let dest = tempfile::tempdir().unwrap();
        copy_tree(dir.path(), dest.path()).unwrap();
        assert!(dest.path().join("src/server.c").is_file());
        assert!(!dest.path().join(".git").exists());
        assert!(!dest.path().join("src/server.o").exists());
    }
}
