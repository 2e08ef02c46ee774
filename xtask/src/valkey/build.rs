//! Building Valkey with make, and the build cache.
//!
//! An entry is `<cache>/builds/<key>/` with `bin/`, `build.json` and `build.log`; the key
//! hashes the source id and the build options. An entry is built in a temporary directory
//! beside it and renamed into place only when complete, so a failed or interrupted build
//! leaves no half-written entry. A lock file per key makes concurrent builds of the same
//! key wait for each other instead of racing.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::result::BuildOptions;
use bench_core::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::Manifest;
use super::source::Source;
use crate::process::{self, Guarded};

/// Bumped when the cache layout or the build recipe changes.
const CACHE_FORMAT: u32 = 1;

/// Built binaries and what they are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Binaries {
    pub server: PathBuf,
    pub cli: PathBuf,
    pub benchmark: PathBuf,
    /// `valkey-server --version`'s `v=`.
    pub version: String,
    pub source_id: String,
    pub build: BuildOptions,
    /// Whether this came from the cache.
    pub cached: bool,
}

impl Binaries {
    /// What records say about the measured server.
    pub fn info(&self) -> bench_core::result::ValkeyInfo {
        bench_core::result::ValkeyInfo {
            version: self.version.clone(),
            source_id: self.source_id.clone(),
            build: self.build.clone(),
        }
    }
}

/// The cache key: the same source and options give the same key.
pub fn cache_key(source_id: &str, options: &BuildOptions) -> String {
    let mut hasher = Sha256::new();
    let text = format!(
        "format={CACHE_FORMAT}\nsource={source_id}\ntls={}\nmalloc={}\ncflags={}\n",
        options.tls,
        options.malloc.as_str(),
        options.cflags
    );
    hasher.update(text.as_bytes());
    super::fetch::hex(&hasher.finalize()[..8])
}

/// Returns cached binaries for `source` + `options`, building them first if needed.
pub fn build(
    source: &Source,
    options: &BuildOptions,
    manifest: &Manifest,
    cache: &Path,
    shutdown: &Shutdown,
) -> anyhow::Result<Binaries> {
    let source_id = source.id();
    let key = cache_key(&source_id, options);
    let builds = cache.join("builds");
    let entry = builds.join(&key);
    if let Some(hit) = read_entry(&entry)? {
        return Ok(hit);
    }
    fs::create_dir_all(&builds)?;
    let lock = File::create(builds.join(format!("{key}.lock")))?;
    lock.lock().context("locking the build cache entry")?;
    // Another process may have built it while we waited.
    if let Some(hit) = read_entry(&entry)? {
        return Ok(hit);
    }
    remove_stale_attempts(&builds, &key);
    let attempt = tempfile::Builder::new()
        .prefix(&format!("{key}.tmp-"))
        .tempdir_in(&builds)?;
    let tree = attempt.path().join("src");
    let log_path = attempt.path().join("build.log");
    let prepared = source
        .prepare(&tree, manifest, cache)
        .with_context(|| format!("preparing {}", source.describe()))?;
    let started = Instant::now();
    let bar = spinner(format!("building {}", source.describe()));
    let made = make(&tree, options, &log_path, shutdown);
    bar.finish_and_clear();
    if let Err(e) = made {
        // Keep the log of the failure beside the cache for inspection.
        let kept = builds.join(format!("{key}.failed.log"));
        let _ = fs::copy(&log_path, &kept);
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let errors = first_errors(&log, 10);
        let errors = if errors.is_empty() {
            String::new()
        } else {
            format!("\nfirst error lines of the build log:\n{errors}")
        };
        bail!(
            "{e:#}{errors}\nlast lines of the build log ({}):\n{}",
            kept.display(),
            process::tail(&log, 30)
        );
    }
    let bin = attempt.path().join("bin");
    fs::create_dir_all(&bin)?;
    for name in ["valkey-server", "valkey-cli", "valkey-benchmark"] {
        fs::copy(tree.join("src").join(name), bin.join(name))
            .with_context(|| format!("the build produced no src/{name}"))?;
    }
    // Removing a git worktree deletes its directory; other sources leave a copy.
    drop(prepared);
    if tree.exists() {
        fs::remove_dir_all(&tree)
            .with_context(|| format!("removing the scratch tree {}", tree.display()))?;
    }
    let version = server_version(&bin.join("valkey-server"), shutdown)?;
    let meta = Binaries {
        server: entry.join("bin/valkey-server"),
        cli: entry.join("bin/valkey-cli"),
        benchmark: entry.join("bin/valkey-benchmark"),
        version,
        source_id,
        build: options.clone(),
        cached: false,
    };
    fs::write(
        attempt.path().join("build.json"),
        serde_json::to_vec_pretty(&meta)?,
    )?;
    let attempt = attempt.keep();
    fs::rename(&attempt, &entry)
        .with_context(|| format!("moving the build into {}", entry.display()))?;
    eprintln!(
        "built Valkey {} in {:.0} s ({})",
        meta.version,
        started.elapsed().as_secs_f64(),
        entry.display()
    );
    Ok(meta)
}

fn read_entry(entry: &Path) -> anyhow::Result<Option<Binaries>> {
    let meta = entry.join("build.json");
    if !meta.is_file() {
        return Ok(None);
    }
    let mut binaries: Binaries = serde_json::from_slice(&fs::read(&meta)?)
        .with_context(|| format!("reading {}", meta.display()))?;
    binaries.cached = true;
    Ok(Some(binaries))
}

/// Attempts left behind by a killed xtask (their directories, not their logs).
fn remove_stale_attempts(builds: &Path, key: &str) {
    let prefix = format!("{key}.tmp-");
    if let Ok(entries) = fs::read_dir(builds) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The C compiler, found the way Rust build scripts find it (`CC`, then `cc`).
fn c_compiler() -> PathBuf {
    cc::Build::new()
        .cargo_metadata(false)
        .target(env!("XTASK_TARGET"))
        .host(env!("XTASK_HOST"))
        .opt_level(2)
        .get_compiler()
        .path()
        .to_path_buf()
}

/// Runs make in two steps. Valkey's src/Makefile builds deps/ from a recipe that ignores
/// failures (`-(cd ../deps && make ...)`), and jemalloc's configure can race under a
/// parallel top-level make; so the dependencies are built first on their own and checked,
/// once more serially if anything is missing, then the binaries in parallel.
fn make(
    tree: &Path,
    options: &BuildOptions,
    log_path: &Path,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut vars = vec![
        format!("CC={}", c_compiler().display()),
        format!("BUILD_TLS={}", if options.tls { "yes" } else { "no" }),
        format!("MALLOC={}", options.malloc.as_str()),
    ];
    if !options.cflags.is_empty() {
        vars.push(format!("CFLAGS={}", options.cflags));
    }
    let log = File::create(log_path)?;
    let run = |jobs: usize, target: &str| -> anyhow::Result<()> {
        let mut cmd = process::command("make");
        cmd.current_dir(tree)
            .arg(format!("-j{jobs}"))
            .args(&vars)
            .arg(target)
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log.try_clone()?));
        let mut child = Guarded::spawn(cmd, "make")?;
        let status = child.wait(shutdown, Some(Duration::from_secs(3600)))?;
        if !status.success() {
            bail!(
                "make -j{jobs} {target} failed ({status}) in {}",
                tree.display()
            );
        }
        Ok(())
    };
    run(jobs, ".make-prerequisites")?;
    let missing = missing_deps(tree, options);
    if !missing.is_empty() {
        eprintln!(
            "dependencies missing after a parallel build ({}); rebuilding them serially",
            missing.join(", ")
        );
        fs::remove_file(tree.join("src/.make-prerequisites")).ok();
        fs::remove_file(tree.join("src/.make-settings")).ok();
        run(1, ".make-prerequisites")?;
        let missing = missing_deps(tree, options);
        if !missing.is_empty() {
            bail!(
                "building Valkey's dependencies produced no {}",
                missing.join(", ")
            );
        }
    }
    run(jobs, "all")
}

/// Dependency libraries the parallel step must have produced. Only jemalloc is checked:
/// it is the one whose configure races, and the other dependencies differ between
/// versions (hiredis in 8.x, libvalkey in 9.x); a missing one of those fails the link
/// loudly in the second step.
fn missing_deps(tree: &Path, options: &BuildOptions) -> Vec<String> {
    let mut wanted = Vec::new();
    if options.malloc == bench_core::result::Malloc::Jemalloc {
        wanted.push("deps/jemalloc/lib/libjemalloc.a");
    }
    wanted
        .into_iter()
        .filter(|p| !tree.join(p).is_file())
        .map(String::from)
        .collect()
}

/// Lines of a build log that say what went wrong (a parallel make's tail is often
/// other jobs' output).
pub fn first_errors(log: &str, max: usize) -> String {
    const MARKS: [&str; 5] = [
        "error:",
        "Error ",
        "not found",
        "No such file",
        "undefined reference",
    ];
    log.lines()
        .filter(|l| MARKS.iter().any(|m| l.contains(m)) && !l.contains("(ignored)"))
        .take(max)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Valkey server v=8.1.1 sha=...` → `8.1.1`.
pub fn parse_version(output: &str) -> Option<String> {
    output
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .map(str::to_string)
}

fn server_version(server: &Path, shutdown: &Shutdown) -> anyhow::Result<String> {
    let mut cmd = process::command(server);
    cmd.arg("--version");
    let out = process::output(
        cmd,
        "valkey-server --version",
        shutdown,
        Some(Duration::from_secs(10)),
    )?;
    parse_version(&out.stdout)
        .with_context(|| format!("{} --version printed {:?}", server.display(), out.stdout))
}

fn spinner(message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .expect("the template is valid"),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_core::result::Malloc;

    #[test]
    fn cache_key_covers_source_and_every_option() {
        let base = BuildOptions::default();
        let key = cache_key("git:abc", &base);
        assert_eq!(key.len(), 16);
        assert_eq!(key, cache_key("git:abc", &base.clone()));
        assert_ne!(key, cache_key("git:abd", &base));
        let variants = [
            BuildOptions {
                tls: true,
                ..base.clone()
            },
            BuildOptions {
                malloc: Malloc::Libc,
                ..base.clone()
            },
            BuildOptions {
                cflags: "-O3".into(),
                ..base.clone()
            },
        ];
        for options in variants {
            assert_ne!(key, cache_key("git:abc", &options), "{options:?}");
        }
    }

    #[test]
    fn picks_error_lines_out_of_a_build_log() {
        let log = "cc -c a.c\n/bin/sh: 1: ./configure: not found\nmake[2]: *** [Makefile:116: jemalloc] Error 127\n\
                   make[1]: [Makefile:474: persist-settings] Error 2 (ignored)\ncc -c b.c\nb.c:3:1: error: boom\n";
        assert_eq!(
            first_errors(log, 10),
            "/bin/sh: 1: ./configure: not found\nmake[2]: *** [Makefile:116: jemalloc] Error 127\nb.c:3:1: error: boom"
        );
        assert_eq!(first_errors(log, 1), "/bin/sh: 1: ./configure: not found");
        assert_eq!(first_errors("all good\n", 10), "");
    }

    #[test]
    fn parses_server_version() {
        assert_eq!(
            parse_version(
                "Valkey server v=8.1.1 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1\n"
            ),
            Some("8.1.1".into())
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn finds_a_c_compiler_that_runs() {
        let mut cmd = process::command(c_compiler());
        cmd.arg("--version");
        let out = process::output(
            cmd,
            "cc --version",
            &Shutdown::new(),
            Some(Duration::from_secs(30)),
        )
        .unwrap();
        assert!(out.status.success(), "{}", out.stderr);
    }
}
