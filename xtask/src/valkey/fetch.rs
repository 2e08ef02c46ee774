//! Fetching a pinned Valkey: Debian's source package, through a private apt configuration.
//!
//! The system's apt setup is read, never changed. Its Debian mirrors (URIs and keyrings)
//! are reused in `deb-src` entries for the suites the manifest names, written under the
//! cache directory together with apt's lists and archives.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

use super::manifest::{Manifest, PinnedVersion};

/// A `deb` or `deb-src` source from the system's apt configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptEntry {
    pub uri: String,
    pub suites: Vec<String>,
    pub signed_by: Option<String>,
}

/// Debian suite names; entries for other archives (vendor repositories) are not used.
const DEBIAN_SUITES: [&str; 13] = [
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "unstable",
    "testing",
    "stable",
    "oldstable",
    "oldoldstable",
    "experimental",
];

/// Returns the path of the verified orig tarball, downloading it if it is not cached.
pub fn orig_tarball(
    pinned: &PinnedVersion,
    manifest: &Manifest,
    cache: &Path,
) -> anyhow::Result<PathBuf> {
    let dir = cache.join("sources").join(&pinned.debian_version);
    let tarball = dir.join(&pinned.orig_tarball);
    if tarball.is_file() && sha256_file(&tarball)? == pinned.sha256 {
        return Ok(tarball);
    }
    fs::create_dir_all(&dir)?;
    let apt_dir = cache.join("apt");
    fs::create_dir_all(&apt_dir)?;
    // Serialize fetches: apt's lists and our download directory are shared.
    let lock = File::create(apt_dir.join("lock"))?;
    lock.lock().context("locking the apt cache")?;
    if tarball.is_file() && sha256_file(&tarball)? == pinned.sha256 {
        return Ok(tarball);
    }
    // Every pinned version's suites, so switching versions does not refetch the lists.
    let mut suites: Vec<String> = manifest
        .versions
        .iter()
        .flat_map(|v| v.suites.clone())
        .collect();
    suites.sort();
    suites.dedup();
    let apt = PrivateApt::prepare(&apt_dir, &suites)?;
    let download = tempfile::Builder::new()
        .prefix("download-")
        .tempdir_in(&dir)?;
    apt.download_source(pinned, manifest, download.path())?;
    let fetched = download.path().join(&pinned.orig_tarball);
    if !fetched.is_file() {
        bail!(
            "apt-get source fetched {} {} but no {} came with it",
            pinned.package,
            pinned.debian_version,
            pinned.orig_tarball
        );
    }
    let actual = sha256_file(&fetched)?;
    if actual != pinned.sha256 {
        bail!(
            "{} has sha256 {actual}, but valkey/source.toml pins {}; refusing to build it",
            pinned.orig_tarball,
            pinned.sha256
        );
    }
    fs::rename(&fetched, &tarball)?;
    Ok(tarball)
}

struct PrivateApt {
    options: Vec<String>,
    lists: PathBuf,
}

impl PrivateApt {
    fn prepare(apt_dir: &Path, suites: &[String]) -> anyhow::Result<PrivateApt> {
        let entries = system_entries()?;
        let sources = private_sources(&entries, suites);
        if sources.is_empty() {
            bail!(
                "no Debian mirror is configured in /etc/apt/sources.list or /etc/apt/sources.list.d, \
                 so pinned Valkey sources cannot be fetched; pass --valkey-src DIR (or VALKEY_SRC) \
                 or place a Valkey checkout at valkey/src"
            );
        }
        let etc = apt_dir.join("etc");
        let parts = etc.join("sources.list.d");
        let lists = apt_dir.join("lists");
        let archives = apt_dir.join("cache").join("archives");
        for dir in [&parts, &lists.join("partial"), &archives.join("partial")] {
            fs::create_dir_all(dir)?;
        }
        let list = etc.join("sources.list");
        if fs::read_to_string(&list).ok().as_deref() != Some(sources.as_str()) {
            fs::write(&list, &sources)?;
            // Different entries: the old lists do not describe them.
            clear_lists(&lists)?;
        }
        let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
        let options = [
            opt("Dir::Etc::SourceList", &list),
            opt("Dir::Etc::SourceParts", &parts),
            opt("Dir::State::Lists", &lists),
            opt("Dir::Cache", &apt_dir.join("cache")),
            // Our directories belong to the invoking user; apt's `_apt` sandbox user
            // could not write them.
            "APT::Sandbox::User=root".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect();
        Ok(PrivateApt { options, lists })
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(&self.lists)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("Sources"))
            })
            .unwrap_or(false)
    }

    fn update(&self, sh: &Shell) -> anyhow::Result<()> {
        let options = &self.options;
        eprintln!("fetching Debian's source package lists (private apt configuration)");
        cmd!(sh, "apt-get -q {options...} update")
            .quiet()
            .ignore_stdout()
            .run()
            .context("apt-get update with the private source list failed")
    }

    fn download_source(
        &self,
        pinned: &PinnedVersion,
        manifest: &Manifest,
        into: &Path,
    ) -> anyhow::Result<()> {
        let sh = Shell::new()?;
        if cmd!(sh, "apt-get --version")
            .quiet()
            .ignore_stdout()
            .run()
            .is_err()
        {
            bail!(
                "apt-get is not available, so pinned Valkey {} cannot be fetched; pass \
                 --valkey-src DIR (or VALKEY_SRC) or place a Valkey checkout at valkey/src",
                pinned.version
            );
        }
        let mut updated = false;
        if !self.has_lists() {
            self.update(&sh)?;
            updated = true;
        }
        sh.change_dir(into);
        let options = &self.options;
        let spec = format!("{}={}", pinned.package, pinned.debian_version);
        loop {
            let out = cmd!(sh, "apt-get -q {options...} source --download-only {spec}")
                .quiet()
                .ignore_status()
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            if !updated {
                // The lists may be older than the version; refresh once.
                self.update(&sh)?;
                updated = true;
                continue;
            }
            let served = self.served_versions(&sh, &pinned.package);
            bail!(
                "Debian's mirrors no longer serve {spec} (suites {}): {}\n\
                 versions they do serve: {}\n\
                 fix: pick another pinned version with --valkey-version ({}), add a served \
                 version to valkey/source.toml, or build a source tree with --valkey-src DIR",
                pinned.suites.join(", "),
                String::from_utf8_lossy(&out.stderr).trim(),
                if served.is_empty() {
                    "none".to_string()
                } else {
                    served.join(", ")
                },
                manifest.known().join(", "),
            );
        }
    }

    fn served_versions(&self, sh: &Shell, package: &str) -> Vec<String> {
        let options = &self.options;
        let text = cmd!(sh, "apt-cache {options...} showsrc {package}")
            .quiet()
            .ignore_status()
            .read()
            .unwrap_or_default();
        let mut versions: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Version: "))
            .map(str::to_string)
            .collect();
        versions.dedup();
        versions
    }
}

fn clear_lists(lists: &Path) -> io::Result<()> {
    for entry in fs::read_dir(lists)?.flatten() {
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The machine's apt entries from `/etc/apt/sources.list` and `sources.list.d/*.{list,sources}`.
fn system_entries() -> anyhow::Result<Vec<AptEntry>> {
    let mut entries = Vec::new();
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        entries.extend(parse_one_line(&text));
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => entries.extend(parse_one_line(&text)),
                Some("sources") => entries.extend(parse_deb822(&text)),
                _ => {} // apt itself ignores other names (.disabled, .save, ...)
            }
        }
    }
    Ok(entries)
}

/// Parses the one-line format: `deb [opts] URI SUITE COMPONENT...`.
pub fn parse_one_line(text: &str) -> Vec<AptEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = match line.split_once(char::is_whitespace) {
            Some(("deb" | "deb-src", rest)) => rest.trim(),
            _ => continue,
        };
        let mut signed_by = None;
        if let Some(after) = rest.strip_prefix('[') {
            let Some((opts, tail)) = after.split_once(']') else {
                continue;
            };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = tail.trim();
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            entries.push(AptEntry {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
                signed_by,
            });
        }
    }
    entries
}

/// Parses the deb822 format of `*.sources` files (paragraphs of `Field: value`).
pub fn parse_deb822(text: &str) -> Vec<AptEntry> {
    let mut entries = Vec::new();
    for paragraph in text.split("\n\n") {
        let field = |name: &str| {
            paragraph
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
        };
        let types = field("Types").unwrap_or_default();
        if !types
            .split_whitespace()
            .any(|t| t == "deb" || t == "deb-src")
        {
            continue;
        }
        if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            continue;
        }
        let suites: Vec<String> = field("Suites")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let signed_by = field("Signed-By");
        for uri in field("URIs").unwrap_or_default().split_whitespace() {
            entries.push(AptEntry {
                uri: uri.to_string(),
                suites: suites.clone(),
                signed_by: signed_by.clone(),
            });
        }
    }
    entries
}

/// `deb-src` lines for `suites`, one per distinct Debian mirror of the system's entries.
/// Security mirrors are left out: the pinned versions live in the main archive.
pub fn private_sources(entries: &[AptEntry], suites: &[String]) -> String {
    let mut seen: Vec<(&str, Option<&str>)> = Vec::new();
    let mut out = String::new();
    for entry in entries {
        let debian_main = entry.suites.iter().any(|s| {
            let base = s.split('-').next().unwrap_or(s);
            DEBIAN_SUITES.contains(&base) && !s.ends_with("-security") && !s.contains('/')
        });
        let key = (entry.uri.trim_end_matches('/'), entry.signed_by.as_deref());
        if !debian_main || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        // Keyring paths come from root-owned config; a path with spaces or ']' would not
        // survive the one-line format, so such an entry falls back to apt's default keyrings.
        let opts = match entry.signed_by.as_deref() {
            Some(k) if k.starts_with('/') && !k.contains([' ', ']']) => format!("[signed-by={k}] "),
            _ => String::new(),
        };
        for suite in suites {
            out.push_str(&format!("deb-src {opts}{} {suite} main\n", key.0));
        }
    }
    out
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIRROR: &str = "http://mirror.example/debian";

    #[test]
    fn reads_deb822_and_one_line_entries() {
        let deb822 = format!(
            "Types: deb\n# note\nURIs: {MIRROR}\nSuites: bookworm bookworm-updates\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: http://vendor.example/apt\nSuites: nodistro\nComponents: main\nEnabled: no\n"
        );
        let entries = parse_deb822(&deb822);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].uri, MIRROR);
        assert_eq!(entries[0].suites, ["bookworm", "bookworm-updates"]);
        let line =
            format!("deb [arch=amd64 signed-by=/k.gpg] {MIRROR}/ trixie main\n# deb x y z\n");
        let entries = parse_one_line(&line);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].signed_by.as_deref(), Some("/k.gpg"));
    }

    #[test]
    fn private_sources_reuse_debian_mirrors_only_once() {
        let entries = vec![
            AptEntry {
                uri: MIRROR.into(),
                suites: vec!["bookworm".into()],
                signed_by: Some("/k.gpg".into()),
            },
            AptEntry {
                uri: format!("{MIRROR}/"),
                suites: vec!["bookworm-updates".into()],
                signed_by: Some("/k.gpg".into()),
            },
            AptEntry {
                uri: "http://mirror.example/debian-security".into(),
                suites: vec!["bookworm-security".into()],
                signed_by: None,
            },
            AptEntry {
                uri: "https://vendor.example/node".into(),
                suites: vec!["nodistro".into()],
                signed_by: None,
            },
        ];
        let out = private_sources(&entries, &["sid".into(), "forky".into()]);
        assert_eq!(
            out,
            format!(
                "deb-src [signed-by=/k.gpg] {MIRROR} sid main\ndeb-src [signed-by=/k.gpg] {MIRROR} forky main\n"
            )
        );
        assert_eq!(private_sources(&entries[3..], &["sid".into()]), "");
    }

    #[test]
    fn hashes_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
