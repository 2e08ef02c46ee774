//! `valkey/source.toml`: the pinned Valkey versions and where Debian serves them.

use anyhow::{Context, bail};
use serde::Deserialize;

/// The manifest, embedded at compile time so xtask needs no working directory.
const MANIFEST: &str = include_str!("../../../valkey/source.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The version built when nothing else is asked for.
    pub default: String,
    pub versions: Vec<PinnedVersion>,
}

/// One pinned version: an orig tarball of a Debian source package, by name and hash. Any
/// Debian revision whose source lists this tarball is acceptable.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PinnedVersion {
    /// Upstream version, e.g. `8.1.1`.
    pub version: String,
    /// Debian source package name.
    pub package: String,
    /// Debian suites to look for it in, e.g. `trixie`.
    pub suites: Vec<String>,
    /// File name of the orig tarball.
    pub orig_tarball: String,
    /// sha256 of the orig tarball, hex.
    pub sha256: String,
}

impl Manifest {
    pub fn embedded() -> Manifest {
        Manifest::parse(MANIFEST).expect("valkey/source.toml is checked by a unit test")
    }

    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let manifest: Manifest = toml::from_str(text).context("parsing valkey/source.toml")?;
        for v in &manifest.versions {
            if v.sha256.len() != 64 || !v.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "valkey/source.toml: version {}: sha256 must be 64 hex digits",
                    v.version
                );
            }
            let safe = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.~_".contains(&b))
            };
            if ![&v.version, &v.package, &v.orig_tarball]
                .iter()
                .all(|s| safe(s))
                || !v.suites.iter().all(|s| safe(s))
            {
                bail!(
                    "valkey/source.toml: version {:?} has a field with unexpected characters",
                    v.version
                );
            }
        }
        if manifest.find(&manifest.default).is_none() {
            bail!(
                "valkey/source.toml: default {:?} is not listed in [[versions]]",
                manifest.default
            );
        }
        Ok(manifest)
    }

    pub fn find(&self, version: &str) -> Option<&PinnedVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The pinned version named `version`, or an error that lists the known ones.
    pub fn get(&self, version: &str) -> anyhow::Result<&PinnedVersion> {
        self.find(version).with_context(|| {
            format!(
                "--valkey-version {version:?} is not pinned; pinned versions: {} \
                 (valkey/source.toml), or build any tree with --valkey-src DIR or a \
                 release tarball with --valkey-tarball FILE",
                self.known().join(", ")
            )
        })
    }

    pub fn known(&self) -> Vec<&str> {
        self.versions.iter().map(|v| v.version.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_pins_both_versions() {
        let m = Manifest::embedded();
        assert_eq!(m.default, "8.1.1");
        assert_eq!(
            m.get("8.1.1").unwrap().orig_tarball,
            "valkey_8.1.1+dfsg1.orig.tar.xz"
        );
        assert_eq!(
            m.get("9.1.2").unwrap().orig_tarball,
            "valkey_9.1.2.orig.tar.gz"
        );
        let err = m.get("8.0.1").unwrap_err().to_string();
        assert!(err.contains("8.1.1, 9.1.2"), "{err}");
    }

    #[test]
    fn rejects_bad_hashes_and_unknown_default() {
        let text = MANIFEST.replace(
            "d9bbd82eecb82f359e649a0007ad3dc1b47cc15afa626348ca86b73c4ae2c7ee",
            "xyz",
        );
        assert!(
            Manifest::parse(&text)
                .unwrap_err()
                .to_string()
                .contains("sha256")
        );
        let text = MANIFEST.replace("default = \"8.1.1\"", "default = \"7.0\"");
        assert!(
            Manifest::parse(&text)
                .unwrap_err()
                .to_string()
                .contains("default")
        );
    }
}
