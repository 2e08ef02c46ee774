//! `cargo xtask fetch`: download and verify pinned Valkey sources into the cache, without
//! building them (to prepare a machine before it goes offline, and for the fresh-cache test).

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::error::UsageError;
use crate::project;
use crate::valkey::{Manifest, fetch};

#[derive(Args, Debug)]
pub struct FetchCmd {
    /// Pinned versions to fetch (default: every version in valkey/source.toml).
    #[arg(long = "valkey-version", value_name = "VERSION")]
    pub versions: Vec<String>,
    /// Print one JSON object per version: {"version","tarball","sha256","revision"}.
    #[arg(long)]
    pub json: bool,
}

impl FetchCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let manifest = Manifest::embedded();
        let versions = if self.versions.is_empty() {
            manifest.versions.clone()
        } else {
            self.versions
                .iter()
                .map(|v| manifest.get(v).cloned())
                .collect::<anyhow::Result<Vec<_>>>()
                .map_err(|e| UsageError(format!("{e:#}")))?
        };
        let cache = project::cache_dir();
        for pinned in &versions {
            let fetched = fetch::orig_tarball(pinned, &manifest, &cache)
                .with_context(|| format!("fetching pinned Valkey {}", pinned.version))?;
            if self.json {
                println!(
                    "{}",
                    json!({
                        "version": pinned.version,
                        "tarball": fetched.tarball,
                        "sha256": pinned.sha256,
                        "revision": fetched.revision,
                    })
                );
            } else {
                println!(
                    "Valkey {}: {} (sha256 {}){}",
                    pinned.version,
                    fetched.tarball.display(),
                    &pinned.sha256[..16],
                    match &fetched.revision {
                        Some(r) => format!(", from Debian {} {r}", pinned.package),
                        None => ", cached".to_string(),
                    }
                );
            }
        }
        Ok(())
    }
}
