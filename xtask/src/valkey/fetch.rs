//! Fetching a pinned Valkey: the orig tarball of Debian's source package, through a
//! private apt configuration, whatever Debian revision currently lists it.
//!
//! The system's apt setup is read, never changed. Its Debian mirrors (URIs and keyrings)
//! are reused in `deb-src` entries for the suites the manifest names, written under the
//! cache directory together with apt's lists and archives.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, PinnedVersion};

/// A `deb` or `deb-src` source from the system's apt configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptEntry {
    pub uri: String,
    pub suites: Vec<String>,
    pub signed_by: Option<String>,
}

/// How long one apt-get, apt-cache or apt-helper run may take: a mirror that stops
/// answering must not stall a run (or a queued task, whose heartbeat goes on) forever.
const NETWORK_TIME: Duration = Duration::from_secs(600);

/// apt's helper that downloads one URI and checks its hash.
const APT_HELPER: &str = "/usr/lib/apt/apt-helper";

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

/// A verified orig tarball in the cache, and the Debian revision it came with.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub tarball: PathBuf,
    /// The Debian revision whose source listed the tarball; `None` when it was cached.
    pub revision: Option<String>,
}

/// Returns the path of the verified orig tarball, downloading it if it is not cached.
pub fn orig_tarball(
    pinned: &PinnedVersion,
    manifest: &Manifest,
    cache: &Path,
) -> anyhow::Result<Fetched> {
    let dir = cache.join("sources").join(&pinned.version);
    let tarball = dir.join(&pinned.orig_tarball);
    let cached = || -> anyhow::Result<Option<Fetched>> {
        Ok(
            (tarball.is_file() && sha256_file(&tarball)? == pinned.sha256).then(|| Fetched {
                tarball: tarball.clone(),
                revision: None,
            }),
        )
    };
    if let Some(hit) = cached()? {
        return Ok(hit);
    }
    fs::create_dir_all(&dir)?;
    let apt_dir = cache.join("apt");
    fs::create_dir_all(&apt_dir)?;
    // Serialize fetches: apt's lists and our download directory are shared.
    let lock = File::create(apt_dir.join("lock"))?;
    lock.lock().context("locking the apt cache")?;
    if let Some(hit) = cached()? {
        return Ok(hit);
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
    let fetched = download.path().join(&pinned.orig_tarball);
    let revision = apt.download_orig(pinned, manifest, &fetched)?;
    // apt-helper checked the hash already; check it again with our own code, so the
    // guarantee does not rest on a flag of another tool.
    let actual = sha256_file(&fetched)?;
    if actual != pinned.sha256 {
        bail!(
            "{} has sha256 {actual}, but valkey/source.toml pins {}; refusing to build it",
            pinned.orig_tarball,
            pinned.sha256
        );
    }
    fs::rename(&fetched, &tarball)?;
    Ok(Fetched {
        tarball,
        revision: Some(revision),
    })
}

/// One source package paragraph of `apt-cache showsrc`: its version and its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRecord {
    pub version: String,
    /// `(sha256, file name)` from `Checksums-Sha256`.
    pub files: Vec<(String, String)>,
}

impl SourceRecord {
    fn carries(&self, pinned: &PinnedVersion) -> bool {
        self.files
            .iter()
            .any(|(hash, name)| *name == pinned.orig_tarball && *hash == pinned.sha256)
    }

    /// The orig tarball(s) this revision lists, for error messages.
    fn origs(&self) -> Vec<&str> {
        self.files
            .iter()
            .map(|(_, name)| name.as_str())
            .filter(|n| n.contains(".orig."))
            .collect()
    }
}

/// Parses `apt-cache showsrc` output: paragraphs with `Version:` and a
/// `Checksums-Sha256:` block of ` HASH SIZE NAME` lines.
pub fn parse_showsrc(text: &str) -> Vec<SourceRecord> {
    let mut records = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut version = None;
        let mut files = Vec::new();
        let mut in_sha256 = false;
        for line in paragraph.lines() {
            if let Some(rest) = line.strip_prefix(' ') {
                if in_sha256
                    && let [hash, _size, name] = rest.split_whitespace().collect::<Vec<_>>()[..]
                {
                    files.push((hash.to_ascii_lowercase(), name.to_string()));
                }
                continue;
            }
            in_sha256 = line.starts_with("Checksums-Sha256:");
            if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim().to_string());
            }
        }
        if let Some(version) = version {
            records.push(SourceRecord { version, files });
        }
    }
    records
}

/// The URI `apt-get source --print-uris` gives for `file`: lines of
/// `'URI' NAME SIZE HASH`.
pub fn uri_for(print_uris: &str, file: &str) -> Option<String> {
    print_uris.lines().find_map(|line| {
        let (uri, rest) = line.strip_prefix('\'')?.split_once('\'')?;
        (rest.split_whitespace().next() == Some(file)).then(|| uri.to_string())
    })
}

/// The error for a pin no served revision carries: what is served, and the ways out.
pub fn not_served(pinned: &PinnedVersion, manifest: &Manifest, served: &[SourceRecord]) -> String {
    let served = if served.is_empty() {
        "none".to_string()
    } else {
        served
            .iter()
            .map(|r| format!("{} ({})", r.version, r.origs().join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "no Debian revision served for suites {} lists the pinned {} with sha256 {} \
         (Valkey {} in valkey/source.toml)\n\
         revisions of {} served: {served}\n\
         fix: build offline from a copy of that tarball or an upstream release tarball with \
         --valkey-tarball FILE, build a source tree with --valkey-src DIR, pick another pinned \
         version with --valkey-version ({}), or pin a served tarball in valkey/source.toml",
        pinned.suites.join(", "),
        pinned.orig_tarball,
        pinned.sha256,
        pinned.version,
        pinned.package,
        manifest.known().join(", "),
    )
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

    fn update(&self) -> anyhow::Result<()> {
        eprintln!("fetching Debian's source package lists (private apt configuration)");
        self.apt("apt-get", &["update"])
            .map(drop)
            .context("apt-get update with the private source list failed")
    }

    /// `PROGRAM -q OPTIONS... ARGS...` (apt-get, apt-cache) with the private
    /// configuration, which must succeed: its stdout.
    fn apt(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-q"];
        all.extend(self.options.iter().map(String::as_str));
        all.extend_from_slice(args);
        crate::process::tool_read(program, all, NETWORK_TIME)
    }

    /// Finds a served revision whose source lists the pinned orig tarball and downloads
    /// only that file to `dest`, its hash checked by apt-helper. Returns the revision.
    fn download_orig(
        &self,
        pinned: &PinnedVersion,
        manifest: &Manifest,
        dest: &Path,
    ) -> anyhow::Result<String> {
        if crate::process::tool_read("apt-get", ["--version"], NETWORK_TIME).is_err()
            || !Path::new(APT_HELPER).is_file()
        {
            bail!(
                "apt-get (and {APT_HELPER}) is not available, so pinned Valkey {} cannot be \
                 fetched; pass --valkey-tarball FILE, --valkey-src DIR (or VALKEY_SRC), or place \
                 a Valkey checkout at valkey/src",
                pinned.version
            );
        }
        let mut updated = false;
        if !self.has_lists() {
            self.update()?;
            updated = true;
        }
        let package = &pinned.package;
        loop {
            let served = self.source_records(package);
            let Some(record) = served.iter().find(|r| r.carries(pinned)) else {
                if !updated {
                    // The lists may be older than the revision that carries it.
                    self.update()?;
                    updated = true;
                    continue;
                }
                bail!(not_served(pinned, manifest, &served));
            };
            let spec = format!("{package}={}", record.version);
            let uris = self
                .apt("apt-get", &["source", "--print-uris", &spec])
                .with_context(|| format!("apt-get source --print-uris {spec} failed"))?;
            let uri = uri_for(&uris, &pinned.orig_tarball).with_context(|| {
                format!(
                    "apt-get source --print-uris {spec} lists no URI for {}",
                    pinned.orig_tarball
                )
            })?;
            let hash = format!("SHA256:{}", pinned.sha256);
            let mut args: Vec<std::ffi::OsString> = self.options.iter().map(|o| o.into()).collect();
            args.extend([
                "download-file".into(),
                (&uri).into(),
                dest.into(),
                hash.into(),
            ]);
            let out = crate::process::tool(APT_HELPER, args, NETWORK_TIME)?;
            if out.status.success() {
                eprintln!(
                    "fetched {} (Debian {spec}, sha256 checked)",
                    pinned.orig_tarball
                );
                return Ok(record.version.clone());
            }
            if !updated {
                // Old lists can name a revision whose files the mirror dropped.
                self.update()?;
                updated = true;
                continue;
            }
            bail!(
                "downloading {uri} (Debian {spec}) failed: {}\n\
                 fix: build offline from a copy of {} with --valkey-tarball FILE, or a source \
                 tree with --valkey-src DIR",
                out.stderr.trim(),
                pinned.orig_tarball
            );
        }
    }

    fn source_records(&self, package: &str) -> Vec<SourceRecord> {
        // What apt-cache lists counts even when it exits non-zero (some suites unknown).
        let mut args = vec!["-q"];
        args.extend(self.options.iter().map(String::as_str));
        args.extend(["showsrc", package]);
        let text = crate::process::tool("apt-cache", args, NETWORK_TIME)
            .map(|out| out.stdout)
            .unwrap_or_default();
        parse_showsrc(&text)
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

    const SHOWSRC: &str = "Package: valkey\nVersion: 8.1.1+dfsg1-3+deb13u3\nFiles:\n \
        0123 2271 valkey_8.1.1+dfsg1-3+deb13u3.dsc\nChecksums-Sha256:\n \
        317246ffea280a14427d83f059a0696f1aef51247b30d7f1675f45849ea5d774 2271 valkey_8.1.1+dfsg1-3+deb13u3.dsc\n \
        D9BBD82EECB82F359E649A0007AD3DC1B47CC15AFA626348CA86B73C4AE2C7EE 2726128 valkey_8.1.1+dfsg1.orig.tar.xz\n\
        Package-List:\n valkey-server deb database optional arch=any\n\n\
        Package: valkey\nVersion: 9.1.2-1\nChecksums-Sha256:\n \
        8e8557da7426a51b4e0fb514a65ef6241dc7c85cb408243af389070abf379cec 4418246 valkey_9.1.2.orig.tar.gz\n\n";

    fn pinned(tarball: &str, sha256: &str) -> PinnedVersion {
        PinnedVersion {
            version: "8.1.1".into(),
            package: "valkey".into(),
            suites: vec!["trixie".into()],
            orig_tarball: tarball.into(),
            sha256: sha256.into(),
        }
    }

    #[test]
    fn any_served_revision_listing_the_pinned_tarball_will_do() {
        let records = parse_showsrc(SHOWSRC);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].version, "8.1.1+dfsg1-3+deb13u3");
        assert_eq!(
            records[0].files.len(),
            2,
            "Files: and Package-List: are not hashes"
        );
        let pin = pinned(
            "valkey_8.1.1+dfsg1.orig.tar.xz",
            "d9bbd82eecb82f359e649a0007ad3dc1b47cc15afa626348ca86b73c4ae2c7ee",
        );
        let found: Vec<_> = records.iter().filter(|r| r.carries(&pin)).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].version, "8.1.1+dfsg1-3+deb13u3");
        // The same name with another hash is not the pinned tarball.
        let other = pinned("valkey_8.1.1+dfsg1.orig.tar.xz", &"0".repeat(64));
        assert!(!records.iter().any(|r| r.carries(&other)));
    }

    #[test]
    fn an_unserved_pin_lists_what_is_served_and_the_offline_way_out() {
        let pin = pinned("valkey_8.0.0.orig.tar.gz", &"0".repeat(64));
        let text = not_served(&pin, &Manifest::embedded(), &parse_showsrc(SHOWSRC));
        for part in [
            "valkey_8.0.0.orig.tar.gz",
            "8.1.1+dfsg1-3+deb13u3 (valkey_8.1.1+dfsg1.orig.tar.xz)",
            "9.1.2-1 (valkey_9.1.2.orig.tar.gz)",
            "--valkey-tarball FILE",
            "--valkey-src DIR",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
        assert!(not_served(&pin, &Manifest::embedded(), &[]).contains("served: none"));
    }

    #[test]
    fn print_uris_give_the_file_uri() {
        let text = "Need to get 2766 kB of source archives.\n\
            'http://m.example/debian/pool/main/v/valkey/valkey_8.1.1%2bdfsg1-3%2bdeb13u3.dsc' valkey_8.1.1+dfsg1-3+deb13u3.dsc 2271 SHA256:31\n\
            'http://m.example/debian/pool/main/v/valkey/valkey_8.1.1%2bdfsg1.orig.tar.xz' valkey_8.1.1+dfsg1.orig.tar.xz 2726128 SHA256:d9\n";
        assert_eq!(
            uri_for(text, "valkey_8.1.1+dfsg1.orig.tar.xz").as_deref(),
            Some("http://m.example/debian/pool/main/v/valkey/valkey_8.1.1%2bdfsg1.orig.tar.xz")
        );
        assert_eq!(uri_for(text, "valkey_8.1.1+dfsg1"), None);
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
