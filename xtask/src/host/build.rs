//! Building Valkey on a host whose libraries cannot run the build made here (or whose
//! hosts-file entry says `build = "host"`): the agent there unpacks the prepared source
//! that was built here (shipped as `bin/<key>/valkey-src.tar.gz`) and runs the same
//! `make` with the same options and its own compiler, into `bin/<built key>/`, one build
//! of a key at a time (a lock there). A build there is kept and reused while its server's
//! content is what the agent recorded. Its git SHA is `00000000` (the archive holds no
//! repository).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::result::BuildOptions;
use bench_core::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::agent::{bin_dir, scratch, valid_key};
use crate::instances;
use crate::process;
use crate::valkey::build as valkey_build;

/// The source's file name under `bin/<key>/`.
pub const SOURCE: &str = "valkey-src.tar.gz";

/// The record, beside a build made there, of its server's content key.
const BUILT_MARK: &str = "valkey-server.key";

/// The record of the compiler that made it.
const COMPILER: &str = "compiler.txt";

/// What a build there was.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Built {
    /// The host's compiler: its path and the first line of `--version`.
    pub compiler: String,
    /// It was there already (nothing was built).
    pub reused: bool,
}

/// The key a host's own build of the binaries under `key` is kept under.
pub fn built_key(key: &str) -> String {
    let digest = Sha256::digest(format!("built on the host from {key}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// On the host (the agent): builds the source shipped under `key` into `into`, or finds
/// it built there already.
pub fn build(
    work_dir: &Path,
    key: &str,
    into: &str,
    options: &BuildOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<Built> {
    if !valid_key(key) || !valid_key(into) || into != built_key(key) {
        bail!("build keys {key:?} → {into:?}: expected the hex keys of a build and its own");
    }
    valkey_build::check_cflags(&options.cflags)?;
    let dir = bin_dir(work_dir, into);
    if let Some(compiler) = built_before(&dir)? {
        return Ok(Built {
            compiler,
            reused: true,
        });
    }
    // One build of a key at a time on this host (two runs may share it): the second
    // waits, then finds the first's.
    fs::create_dir_all(work_dir.join("bin"))?;
    let lock = fs::File::create(work_dir.join("bin").join(format!("{into}.lock")))?;
    lock.lock().context("locking the build")?;
    if let Some(compiler) = built_before(&dir)? {
        return Ok(Built {
            compiler,
            reused: true,
        });
    }
    let source = bin_dir(work_dir, key).join(SOURCE);
    if !source.is_file() {
        bail!("no source here ({} is missing)", source.display());
    }
    let attempt = instances::scratch_dir_in(&scratch(work_dir), "build")?;
    let tree = attempt.path().join("src");
    fs::create_dir_all(&tree)?;
    let mut untar = process::command("tar");
    untar.arg("-xzf").arg(&source).arg("-C").arg(&tree);
    let out = process::output(untar, "tar", shutdown, Some(Duration::from_secs(600)))?;
    if !out.status.success() {
        bail!(
            "unpacking {} failed ({}): {}",
            source.display(),
            out.status,
            process::tail(&out.stderr, 5)
        );
    }
    let (cc, compiler) = valkey_build::compiler_identity(&valkey_build::c_compiler(), shutdown)?;
    let log = attempt.path().join("build.log");
    if let Err(e) = valkey_build::make(&tree, options, &cc, &log, shutdown) {
        let text = fs::read_to_string(&log).unwrap_or_default();
        bail!(
            "{e:#}\nfirst error lines:\n{}\nlast lines of the build log:\n{}",
            valkey_build::first_errors(&text, 10),
            process::tail(&text, 20)
        );
    }
    // Into a new directory, then renamed into place: a half-written build is never used.
    let staged = attempt.path().join("bin");
    fs::create_dir_all(&staged)?;
    for name in ["valkey-server", "valkey-cli", "valkey-benchmark"] {
        fs::copy(tree.join("src").join(name), staged.join(name))
            .with_context(|| format!("the build produced no src/{name}"))?;
    }
    let server_key = super::ship::content_key(&staged.join("valkey-server"))?;
    fs::write(staged.join(BUILT_MARK), &server_key)?;
    fs::write(staged.join(COMPILER), &compiler)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::rename(&staged, &dir).with_context(|| format!("moving the build to {}", dir.display()))?;
    Ok(Built {
        compiler,
        reused: false,
    })
}

/// The compiler of a build made there before, if it is whole: its server's content is
/// what was recorded when it was made.
fn built_before(dir: &Path) -> anyhow::Result<Option<String>> {
    let (Ok(mark), Ok(compiler)) = (
        fs::read_to_string(dir.join(BUILT_MARK)),
        fs::read_to_string(dir.join(COMPILER)),
    ) else {
        return Ok(None);
    };
    let server = dir.join("valkey-server");
    if !server.is_file() {
        return Ok(None);
    }
    Ok((super::ship::content_key(&server)? == mark.trim()).then_some(compiler))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builds_own_key_is_hex_and_tied_to_its_source() {
        let own = built_key("06aeb930ac1cb66c");
        assert!(valid_key(&own) && own.len() == 16, "{own}");
        assert_ne!(own, built_key("06aeb930ac1cb66d"));
        assert_eq!(own, built_key("06aeb930ac1cb66c"));
    }

    #[test]
    fn a_build_there_is_reused_only_while_its_server_is_what_was_recorded() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(built_before(dir.path()).unwrap(), None);
        fs::write(dir.path().join("valkey-server"), b"a server").unwrap();
        let key = super::super::ship::content_key(&dir.path().join("valkey-server")).unwrap();
        fs::write(dir.path().join(BUILT_MARK), &key).unwrap();
        fs::write(dir.path().join(COMPILER), "/usr/bin/cc: gcc 12").unwrap();
        assert_eq!(
            built_before(dir.path()).unwrap().as_deref(),
            Some("/usr/bin/cc: gcc 12")
        );
        fs::write(dir.path().join("valkey-server"), b"replaced").unwrap();
        assert_eq!(built_before(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_build_asks_for_its_own_key_and_safe_flags() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = Shutdown::new();
        let options = BuildOptions::default();
        let err = build(dir.path(), "06aeb930ac1cb66c", "ffff", &options, &shutdown).unwrap_err();
        assert!(err.to_string().contains("hex keys"), "{err}");
        let key = "06aeb930ac1cb66c";
        let bad = BuildOptions {
            cflags: "-O2; reboot".into(),
            ..Default::default()
        };
        let err = build(dir.path(), key, &built_key(key), &bad, &shutdown).unwrap_err();
        assert!(err.to_string().contains("--cflags"), "{err}");
        let err = build(dir.path(), key, &built_key(key), &options, &shutdown).unwrap_err();
        assert!(err.to_string().contains("no source here"), "{err}");
    }
}
