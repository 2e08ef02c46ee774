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

use super::archive::SOURCE_ARCHIVE;
use super::manifest::Manifest;
use super::source::Source;
use crate::process::{self, Guarded};

/// Bumped when the cache layout or the build recipe changes.
const CACHE_FORMAT: u32 = 2;

/// The environment make runs with: nothing else of the caller's. Valkey's Makefiles read
/// `CFLAGS`, `LDFLAGS`, `OPTIMIZATION`, `SANITIZER`, `MALLOC`, `BUILD_TLS`, `USE_*` and
/// more from the environment, and none of them is in the cache key; so make gets only
/// these, and every knob that changes the binary is a flag of ours and part of the key.
const MAKE_ENV: [&str; 4] = ["PATH", "HOME", "TMPDIR", "TERM"];

/// Variables that would have changed the binary had make seen them; a user who exported
/// one is told it was ignored and which flag to use.
const IGNORED_ENV: [&str; 9] = [
    "CFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "OPTIMIZATION",
    "SANITIZER",
    "MALLOC",
    "BUILD_TLS",
    "REDIS_CFLAGS",
    "SERVER_CFLAGS",
];

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
    /// The C compiler that built it: resolved path and the first line of `--version`.
    pub compiler: String,
    /// Whether this came from the cache.
    pub cached: bool,
    /// The prepared source it was built from (`src.tar.gz` in the cache entry), for a
    /// host that cannot run these binaries to build its own; `None` in entries made
    /// before sources were kept.
    #[serde(default)]
    pub source_archive: Option<PathBuf>,
}

impl Binaries {
    /// What records say about the measured server.
    pub fn info(&self) -> bench_core::result::ValkeyInfo {
        bench_core::result::ValkeyInfo {
            version: self.version.clone(),
            source_id: self.source_id.clone(),
            build: self.build.clone(),
            compiler: self.compiler.clone(),
        }
    }
}

/// The cache key: the same source, options and compiler give the same key.
pub fn cache_key(source_id: &str, options: &BuildOptions, compiler: &str) -> String {
    let mut hasher = Sha256::new();
    let text = format!(
        "format={CACHE_FORMAT}\nsource={source_id}\ntls={}\nmalloc={}\ncflags={}\ncompiler={compiler}\n",
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
    check_cflags(&options.cflags)?;
    let source_id = source.id();
    let (cc, compiler) = compiler_identity(&c_compiler(), shutdown)?;
    let key = cache_key(&source_id, options, &compiler);
    let builds = cache.join("builds");
    let entry = builds.join(&key);
    if let Some(hit) = read_entry(&entry)?.filter(|b| b.source_archive.is_some()) {
        return Ok(hit);
    }
    fs::create_dir_all(&builds)?;
    let lock = File::create(builds.join(format!("{key}.lock")))?;
    lock.lock().context("locking the build cache entry")?;
    // Another process may have built it while we waited.
    if let Some(hit) = read_entry(&entry)? {
        if hit.source_archive.is_some() {
            return Ok(hit);
        }
        // An entry from before sources were kept: keep its source now (the same source
        // id, so the same source).
        // Best effort: a local run does not need it, and must not fail for it.
        return Ok(
            match super::archive::keep_source(
                hit.clone(),
                source,
                manifest,
                cache,
                &entry,
                shutdown,
            ) {
                Ok(kept) => kept,
                Err(e) => {
                    eprintln!(
                        "note: the source of build {key} could not be kept beside it ({e:#}); \
                         a host that cannot run it will not be able to build its own"
                    );
                    hit
                }
            },
        );
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
    let ignored: Vec<&str> = IGNORED_ENV
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
        .collect();
    if !ignored.is_empty() {
        eprintln!(
            "note: {} from the environment not passed to make (the build cache could not \
             tell such builds apart); use --cflags, --malloc or --tls",
            ignored.join(", ")
        );
    }
    // The prepared source, kept beside the binaries: a host whose libraries cannot run
    // them builds its own from it.
    super::archive::archive_source(&tree, &attempt.path().join(SOURCE_ARCHIVE), shutdown)?;
    let made = make(&tree, options, &cc, &log_path, shutdown);
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
        compiler,
        cached: false,
        source_archive: Some(entry.join(SOURCE_ARCHIVE)),
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

/// Attempts left behind by a killed xtask (their directories, not their logs): those of
/// `key`, whose lock we hold, and those of any other key whose lock nobody holds (a
/// build in progress holds its key's lock, so its attempt is never touched).
fn remove_stale_attempts(builds: &Path, key: &str) {
    let Ok(entries) = fs::read_dir(builds) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((other, _)) = name.split_once(".tmp-") else {
            continue;
        };
        if other == key {
            let _ = fs::remove_dir_all(e.path());
        } else if let Ok(lock) = File::open(builds.join(format!("{other}.lock")))
            && lock.try_lock().is_ok()
        {
            // Held while removing: a build of `other` starting now waits for it.
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Characters `--cflags` may hold. Make passes CFLAGS to `sh -c` in its recipes, so
/// anything a shell would interpret (`;`, `$`, quotes, backticks, `|`, `&`, redirections,
/// globs, newlines) is refused rather than escaped: flags need none of them.
pub fn check_cflags(cflags: &str) -> anyhow::Result<()> {
    if let Some(bad) = cflags
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || " -_=.,+/:@%".contains(*c)))
    {
        bail!(
            "--cflags {cflags:?}: {bad:?} is not allowed (make hands CFLAGS to a shell); \
             flags use letters, digits, spaces and - _ = . , + / : @ %"
        );
    }
    Ok(())
}

/// The C compiler, found the way Rust build scripts find it (`CC`, then `cc`).
pub(crate) fn c_compiler() -> PathBuf {
    cc::Build::new()
        .cargo_metadata(false)
        .target(env!("XTASK_TARGET"))
        .host(env!("XTASK_HOST"))
        .opt_level(2)
        .get_compiler()
        .path()
        .to_path_buf()
}

/// What the build cache and the records call the compiler: its resolved path (through
/// `PATH` and symlinks: `/usr/bin/cc` is really `x86_64-linux-gnu-gcc-12`) and the first
/// line of its `--version`, so `CC=clang` or an upgraded gcc is another cache entry.
/// Returns the path make is given (found on `PATH`, not canonicalized: a ccache symlink
/// must keep its name) and the identity.
pub(crate) fn compiler_identity(
    cc: &Path,
    shutdown: &Shutdown,
) -> anyhow::Result<(PathBuf, String)> {
    let found = if cc.components().count() > 1 {
        Some(cc.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(cc))
                .find(|p| p.is_file())
        })
    };
    let found = found
        .filter(|p| p.is_file())
        .with_context(|| format!("the C compiler {} is not on PATH", cc.display()))?;
    let resolved = found
        .canonicalize()
        .with_context(|| format!("resolving the C compiler {}", found.display()))?;
    let mut cmd = process::command(&resolved);
    cmd.arg("--version").env("LC_ALL", "C");
    let out = process::output(cmd, "cc --version", shutdown, Some(Duration::from_secs(30)))?;
    let version = out.stdout.lines().next().unwrap_or("").trim().to_string();
    if !out.status.success() || version.is_empty() {
        bail!(
            "{} --version failed ({}): {}",
            resolved.display(),
            out.status,
            out.stderr.trim()
        );
    }
    Ok((found, format!("{} ({version})", resolved.display())))
}

/// Runs make in two steps. Valkey's src/Makefile builds deps/ from a recipe that ignores
/// failures (`-(cd ../deps && make ...)`), and jemalloc's configure can race under a
/// parallel top-level make; so the dependencies are built first on their own and checked,
/// once more serially if anything is missing, then the binaries in parallel.
pub(crate) fn make(
    tree: &Path,
    options: &BuildOptions,
    cc: &Path,
    log_path: &Path,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut vars = vec![
        format!("CC={}", cc.display()),
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
            .env_clear()
            .envs(
                MAKE_ENV
                    .iter()
                    .filter_map(|k| Some((k, std::env::var_os(k)?))),
            )
            .env("LC_ALL", "C")
            // The release header's git SHA comes from the tree's own repository (a git
            // worktree) or none: never from a repository the tree happens to sit in.
            .env(
                "GIT_CEILING_DIRECTORIES",
                tree.parent().unwrap_or(tree).as_os_str(),
            )
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

/// A spinner on an interactive stderr; elsewhere (a CI log, a file) the message as one
/// line, so a build of minutes does not look like a hang.
fn spinner(message: String) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("{message} (a few minutes)...");
    }
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
        let gcc = "/usr/bin/x86_64-linux-gnu-gcc-12 (gcc (Debian 12.2.0-14) 12.2.0)";
        let key = cache_key("git:abc", &base, gcc);
        assert_eq!(key.len(), 16);
        assert_eq!(key, cache_key("git:abc", &base.clone(), gcc));
        assert_ne!(key, cache_key("git:abd", &base, gcc));
        let clang = "/usr/lib/llvm-14/bin/clang (Debian clang version 14.0.6)";
        assert_ne!(key, cache_key("git:abc", &base, clang));
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
            assert_ne!(key, cache_key("git:abc", &options, gcc), "{options:?}");
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
    fn cflags_that_a_shell_would_interpret_are_refused() {
        for ok in [
            "",
            "-O3 -march=native",
            "-DFOO=1 -fno-omit-frame-pointer",
            "-I/opt/x",
        ] {
            check_cflags(ok).unwrap();
        }
        for bad in [
            "-O2; rm -rf ~",
            "$(id)",
            "`id`",
            "-O2 | cat",
            "-DX='1'",
            "-O2\n",
            "-O2 > f",
        ] {
            let err = check_cflags(bad).unwrap_err().to_string();
            assert!(err.contains("not allowed"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_compiler_identity_is_a_resolved_path_and_a_version() {
        let (path, id) = compiler_identity(&c_compiler(), &Shutdown::new()).unwrap();
        assert!(path.is_absolute(), "{}", path.display());
        assert!(id.starts_with('/'), "{id}");
        assert!(id.contains(" ("), "{id}");
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
