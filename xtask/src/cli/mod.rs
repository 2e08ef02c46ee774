//! The subcommands, one module each, and the flags they share.

pub mod bench;
pub mod build;
pub mod compare;
pub mod fetch;
pub mod flamegraph;
pub mod loadgen;
pub mod report;
pub mod selfbench;
pub mod start;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use bench_core::result::{BuildOptions, Malloc};
use bench_core::shutdown::Shutdown;
use clap::{Args, ValueEnum};

use crate::project;
use crate::valkey::{self, Binaries, Manifest, Source, SourceRequest};

/// The longest duration a flag may ask for: 7 days. Far beyond any benchmark, and far
/// below where `Instant + Duration` overflows.
pub const MAX_SECONDS: f64 = 7.0 * 86_400.0;

/// An error in what the user asked for (flags, files): exit code 2, not 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Which Valkey to build and how. Shared by every subcommand that needs binaries.
#[derive(Args, Clone, Debug, Default)]
pub struct ValkeyArgs {
    /// A Valkey source tree to build instead of the pinned version.
    #[arg(long, env = "VALKEY_SRC", value_name = "DIR")]
    pub valkey_src: Option<PathBuf>,
    /// A Valkey release tarball to build (offline machines); its sha256 is the source id.
    #[arg(long, value_name = "FILE")]
    pub valkey_tarball: Option<PathBuf>,
    /// With a git source tree: build this commit (through a scratch git worktree).
    #[arg(long = "ref", value_name = "REV")]
    pub git_ref: Option<String>,
    /// A pinned version from valkey/source.toml (default: its `default`).
    #[arg(long, value_name = "VERSION")]
    pub valkey_version: Option<String>,
    /// Build with TLS support (BUILD_TLS=yes; needs libssl-dev).
    #[arg(long)]
    pub tls: bool,
    /// The allocator Valkey is built with.
    #[arg(long, value_enum, default_value_t = MallocArg::Jemalloc)]
    pub malloc: MallocArg,
    /// Extra C compiler flags, appended to Valkey's own.
    #[arg(long, default_value = "", value_name = "FLAGS")]
    pub cflags: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum MallocArg {
    #[default]
    Jemalloc,
    Libc,
}

impl ValkeyArgs {
    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            tls: self.tls,
            malloc: match self.malloc {
                MallocArg::Jemalloc => Malloc::Jemalloc,
                MallocArg::Libc => Malloc::Libc,
            },
            cflags: self.cflags.trim().to_string(),
        }
    }

    /// Resolves the source and returns its binaries, building them if they are not cached.
    pub fn binaries(&self, shutdown: &Shutdown) -> anyhow::Result<Binaries> {
        let manifest = Manifest::embedded();
        let request = SourceRequest {
            valkey_src: self.valkey_src.clone(),
            valkey_tarball: self.valkey_tarball.clone(),
            git_ref: self.git_ref.clone(),
            valkey_version: self.valkey_version.clone(),
        };
        valkey::build::check_cflags(self.cflags.trim())
            .map_err(|e| UsageError(format!("{e:#}")))?;
        let source = Source::resolve(&request, &project::root(), &manifest)
            .map_err(|e| UsageError(format!("{e:#}")))?;
        valkey::build(
            &source,
            &self.options(),
            &manifest,
            &project::cache_dir(),
            shutdown,
        )
    }
}

/// Parses repeated `--server-config name=value` flags.
pub fn parse_server_config(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut config = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!(UsageError(format!(
                "--server-config {pair:?}: expected name=value, e.g. io-threads=4"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if let Err(why) = bench_core::server_config::check(key, value) {
            bail!(UsageError(format!("--server-config {pair:?}: {why}")));
        }
        config.insert(key.to_string(), value.to_string());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_config_pairs() {
        let c = parse_server_config(&["io-threads=4".into(), "save=900 1".into()]).unwrap();
        assert_eq!(c["io-threads"], "4");
        assert_eq!(c["save"], "900 1");
        let err = parse_server_config(&["io-threads".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("name=value"), "{err}");
        let err = parse_server_config(&["IO=4".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"IO\""), "{err}");
        for (pair, why) in [
            ("BIND=0.0.0.0", "lowercase"),
            ("pidfile=/etc/passwd", "set by the harness"),
            ("maxclients=--bind 0.0.0.0", "starts with '-'"),
        ] {
            let err = parse_server_config(&[pair.into()]).unwrap_err();
            assert!(err.is::<UsageError>(), "{pair}");
            assert!(err.to_string().contains(why), "{pair}: {err}");
        }
    }
}
