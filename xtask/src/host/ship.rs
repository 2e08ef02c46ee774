//! Copying files to a host by content: each goes to `<work>/bin/<key>/<name>` only when
//! what is there is not already it (`sha256sum` there, one command for them all), through
//! a checked temporary file; here a file's content key is remembered by its identity, so
//! a run does not hash the same agent again.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::agent;
use super::ssh::Ssh;

/// How long one copy may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(600);

/// The SHA-256 `sha256sum` printed, if it names `key` (its first 16 hex digits).
fn hash_matches(printed: &str, key: &str) -> bool {
    printed
        .split_whitespace()
        .next()
        .is_some_and(|hex| hex.len() == 64 && hex.starts_with(key))
}

/// A file to have on the host: `local`, as `<work>/bin/<key>/<name>`, whose content key
/// is `own`.
pub struct Wanted<'a> {
    pub local: &'a Path,
    pub key: &'a str,
    pub name: &'a str,
    pub own: String,
}

/// Copies each file to the host unless it is there with its content (its
/// [`content_key`]: a file there is what it should be, or it is replaced). One command
/// looks at them all; each copy goes to a new temporary file (`mktemp`), is checked, then
/// renamed.
pub fn ship_all(ssh: &Ssh, files: &[Wanted<'_>]) -> anyhow::Result<()> {
    let work = ssh.spec().work_dir.display().to_string();
    let paths: Vec<String> = files
        .iter()
        .map(|f| {
            debug_assert!(agent::valid_key(f.key) && agent::valid_key(&f.own));
            format!("{work}/bin/{}/{}", f.key, f.name)
        })
        .collect();
    // One line per file: its hash, or `-` when it is not there.
    let present = ssh.run(
        &format!(
            "for f in {}; do if [ -f \"$f\" ] && [ -x \"$f\" ]; then sha256sum \"$f\"; else echo -; fi; done",
            paths.join(" ")
        ),
        None,
        Duration::from_secs(120),
    )?;
    let lines: Vec<&str> = present.lines().collect();
    for (i, f) in files.iter().enumerate() {
        if lines.get(i).is_some_and(|l| hash_matches(l, &f.own)) {
            eprintln!(
                "host {}: {} {} is there already (0 bytes copied)",
                ssh.name(),
                f.name,
                f.own
            );
        } else {
            copy(ssh, f.local, f.key, f.name, &f.own)?;
        }
    }
    Ok(())
}

/// Copies `local` to `<work>/bin/<key>/<name>` through a checked temporary file.
fn copy(ssh: &Ssh, local: &Path, key: &str, name: &str, own: &str) -> anyhow::Result<()> {
    let dir = format!("{}/bin/{key}", ssh.spec().work_dir.display());
    let size = std::fs::metadata(local)?.len();
    eprintln!(
        "host {}: copying {name} ({:.1} MB, content {own})",
        ssh.name(),
        size as f64 / 1e6
    );
    let copied = ssh
        .run(
            &format!(
                "umask 077 && mkdir -p {dir} && t=$(mktemp {dir}/.{name}.XXXXXX) && cat > \"$t\" && \
                 chmod 700 \"$t\" && echo \"$t\" && sha256sum \"$t\""
            ),
            Some(local),
            COPY_TIMEOUT,
        )
        .with_context(|| format!("copying {} to host {:?}", local.display(), ssh.name()))?;
    let mut lines = copied.lines();
    let temp = lines.next().unwrap_or("").trim();
    let temp_ok = temp.starts_with(&format!("{dir}/.{name}."))
        && temp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if !temp_ok || !hash_matches(lines.next().unwrap_or(""), own) {
        if temp_ok {
            let _ = ssh.run(&format!("rm -f {temp}"), None, Duration::from_secs(30));
        }
        bail!(
            "copying {name} to host {:?}: what arrived is not what was sent ({copied:?})",
            ssh.name()
        );
    }
    ssh.run(
        &format!("mv -f {temp} {dir}/{name}"),
        None,
        Duration::from_secs(30),
    )?;
    Ok(())
}

/// [`content_key`] of a file here, remembered under the cache's `content-keys/` by the
/// file's identity (device, inode, size, modification and change times), so a run does
/// not hash the same 90 MB agent again. Any change to the file changes its ctime, which
/// nothing can set back, so a changed file is hashed again.
pub fn local_key(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    // ctime too: nothing can set it back, so a changed file is never taken for the one
    // remembered (an inode is reused, an mtime copied with `cp -p`).
    let id = format!(
        "{}-{}-{}-{}.{}-{}.{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let memo = crate::project::cache_dir().join("content-keys").join(id);
    if let Ok(known) = std::fs::read_to_string(&memo)
        && known.len() == 16
        && agent::valid_key(&known)
    {
        return Ok(known);
    }
    let key = content_key(path)?;
    if let Some(dir) = memo.parent() {
        let _ = std::fs::create_dir_all(dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| crate::rundir::write_atomically(&memo, key.as_bytes()));
    }
    Ok(key)
}

/// The first 16 hex digits of the SHA-256 of a file's content: what names it on a host.
pub fn content_key(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_trusted_only_with_its_hash() {
        let hex = "59c9bb220119d0b4".to_string() + &"a".repeat(48);
        assert!(hash_matches(
            &format!("{hex}  /w/bin/x/valkey-server\n"),
            "59c9bb220119d0b4"
        ));
        assert!(!hash_matches(&format!("{hex}  f"), "59c9bb220119d0b5"));
        assert!(!hash_matches("", "59c9bb220119d0b4"));
        assert!(!hash_matches("59c9bb220119d0b4  f", "59c9bb220119d0b4"));
    }

    #[test]
    fn a_files_key_is_its_contents_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"valkey").unwrap();
        std::fs::write(&b, b"valkey").unwrap();
        let key = content_key(&a).unwrap();
        assert_eq!(key.len(), 16);
        assert!(agent::valid_key(&key));
        assert_eq!(key, content_key(&b).unwrap());
        std::fs::write(&b, b"valkey2").unwrap();
        assert_ne!(key, content_key(&b).unwrap());
    }
}
