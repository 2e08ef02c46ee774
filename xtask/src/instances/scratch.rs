//! Where servers keep their files. Instance directories live under the scratch root
//! ([`scratch_root`]): a real disk by default (`$XDG_CACHE_HOME/valkey-bench/scratch`), not
//! `$TMPDIR`, which is tmpfs on current Debian and would turn the sync suite's disk mode
//! into a memory copy. Each directory's name carries the owner token of the xtask that
//! made it, so one killed outright (destructors skipped) is swept by the next run
//! ([`sweep_stale`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// `VALKEY_BENCH_SCRATCH` if set, else `<cache>/scratch`: where servers keep their files.
pub fn scratch_root() -> PathBuf {
    std::env::var_os("VALKEY_BENCH_SCRATCH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project::cache_dir().join("scratch"))
}

/// The prefix of our instance directories: `valkey-bench-<xtask pid>-<port>-`.
pub(super) const DIR_PREFIX: &str = "valkey-bench-";

/// A scratch directory of ours (`<kind>` names what it holds: `profile`, `callgrind`,
/// ...), under [`scratch_root`] and named for this process, so [`sweep_stale`] finds it if
/// we are killed before it is removed.
pub fn scratch_dir(kind: &str) -> anyhow::Result<tempfile::TempDir> {
    scratch_dir_in(&scratch_root(), kind)
}

/// [`scratch_dir`] under `root` (an agent's, in its host's work directory).
pub fn scratch_dir_in(root: &Path, kind: &str) -> anyhow::Result<tempfile::TempDir> {
    fs::create_dir_all(root)
        .with_context(|| format!("creating the scratch directory {}", root.display()))?;
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-{kind}-", owner(root)?))
        .tempdir_in(root)
        .with_context(|| format!("creating a {kind} directory under {}", root.display()))
}

/// This process's owner token in `root` (`<pid>.<8 hex>`), the first part of the name of
/// every directory it makes there, and the lock it holds for its whole life on
/// `root/.valkey-bench-<token>.owner`. The pid alone cannot say whether a directory's owner
/// lives when the cache is shared (NFS, a container's bind mount: another host or pid
/// namespace); a lock held by a live owner anywhere on the kernel (or the NFS server)
/// can.
pub(super) fn owner(root: &Path) -> anyhow::Result<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static OWNERS: OnceLock<Mutex<HashMap<PathBuf, (String, fs::File)>>> = OnceLock::new();
    let mut owners = OWNERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((token, _)) = owners.get(root) {
        return Ok(token.clone());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let salt = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    let token = format!("{}.{salt:08x}", std::process::id());
    // Locked under a name no sweep reads, then renamed into place: a sweep never sees
    // the lock file unlocked.
    let path = root.join(format!(".{DIR_PREFIX}{token}.owner"));
    let new = root.join(format!(".{DIR_PREFIX}{token}.owner.new"));
    let file = fs::File::create(&new)
        .with_context(|| format!("creating the owner lock {}", new.display()))?;
    file.try_lock()
        .map_err(|e| anyhow::anyhow!("locking {}: {e}", new.display()))?;
    fs::rename(&new, &path)
        .with_context(|| format!("placing the owner lock {}", path.display()))?;
    owners.insert(root.to_path_buf(), (token.clone(), file));
    Ok(token)
}

/// Removes instance directories left by xtask processes that no longer exist (killed
/// outright, so their destructors never ran). A directory is its owner's while the
/// owner's lock ([`owner`]) is held; one named by a bare pid (an older xtask's) while a
/// process of that pid exists here. Anything else (a live owner, a name that is not ours)
/// is left alone. Returns how many were removed.
pub fn sweep_stale(root: &Path) -> usize {
    let Ok(entries) = fs::read_dir(root) else {
        return 0;
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    // First the owner locks: the owners whose lock no one holds ended. Their locks are
    // held here until their directories are gone, then removed.
    let mut ended = BTreeMap::new();
    let mut held = std::collections::BTreeSet::new();
    for name in &names {
        let Some(token) = name
            .strip_prefix(&format!(".{DIR_PREFIX}"))
            .and_then(|n| n.strip_suffix(".owner"))
        else {
            continue;
        };
        let path = root.join(name);
        match crate::untrusted::open_regular_for_lock(&path) {
            Ok(file) => match file.try_lock() {
                Ok(()) => {
                    ended.insert(token.to_string(), (path, file));
                }
                // Held; or a lock that cannot be taken here, which is not a dead owner.
                Err(_) => {
                    held.insert(token.to_string());
                }
            },
            // Another user's: not ours to judge.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                held.insert(token.to_string());
            }
            // Not a lock file (a FIFO, a link): its owner cannot hold it either.
            Err(_) => {}
        }
    }
    let mut removed = 0;
    for name in &names {
        let Some(owner) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let alive = match owner.split_once('.') {
            // A token: alive while its lock is held (a missing lock is removed last, so
            // its owner ended).
            Some(_) => held.contains(owner),
            // A bare pid (an older xtask's): alive while a process of that pid exists here.
            None => match owner.parse::<i32>() {
                Ok(pid) => pid as u32 == std::process::id() || process_exists(pid),
                Err(_) => continue,
            },
        };
        let path = root.join(name);
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if !alive && is_dir && fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    for (path, _lock) in ended.into_values() {
        let _ = fs::remove_file(path);
    }
    removed
}

/// Whether a process with this pid exists (signal 0 delivers nothing).
fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The file system type of `path` (`ext4`, `tmpfs`, ...), for records: a disk-mode sync on
/// tmpfs measures memory, not a disk.
pub fn fs_type(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs fills the zeroed struct for a NUL-terminated path.
    let magic = unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        if libc::statfs(c_path.as_ptr(), &mut buf) != 0 {
            return "unknown".into();
        }
        buf.f_type as u64
    };
    match magic {
        0xEF53 => "ext4".into(), // ext2/3/4 share the magic
        0x0102_1994 => "tmpfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        0x0102_1997 => "9p".into(),
        other => format!("0x{other:x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory whose owner holds its lock is never swept, whatever its pid says (the
    /// owner may be in another pid namespace); once the lock is free it is.
    #[test]
    fn an_owners_lock_keeps_its_directories_and_a_free_one_does_not() {
        let root = tempfile::tempdir().unwrap();
        let token = owner(root.path()).unwrap();
        assert!(token.starts_with(&format!("{}.", std::process::id())));
        let mine = root.path().join(format!("valkey-bench-{token}-9000-abc"));
        // Owned elsewhere: a pid that cannot exist here, its lock held (by this test).
        let elsewhere = root.path().join("valkey-bench-99999999.0badf00d-9001-abc");
        let lock = root.path().join(".valkey-bench-99999999.0badf00d.owner");
        let held = fs::File::create(&lock).unwrap();
        held.try_lock().unwrap();
        // Dead: its lock free.
        let dead = root.path().join("valkey-bench-99999998.deadbeef-9002-abc");
        let dead_lock = root.path().join(".valkey-bench-99999998.deadbeef.owner");
        fs::File::create(&dead_lock).unwrap();
        for dir in [&mine, &elsewhere, &dead] {
            fs::create_dir_all(dir.join("sub")).unwrap();
        }
        assert_eq!(sweep_stale(root.path()), 1);
        assert!(mine.exists() && elsewhere.exists());
        assert!(!dead.exists() && !dead_lock.exists());
        drop(held);
        assert_eq!(sweep_stale(root.path()), 1);
        assert!(!elsewhere.exists() && mine.exists());
    }

    #[test]
    fn sweeps_only_dirs_of_dead_owners() {
        let root = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum (4194304) cannot exist.
        let dead = root.path().join("valkey-bench-99999999-9000-abc");
        let ours = root
            .path()
            .join(format!("valkey-bench-{}-9001-abc", std::process::id()));
        let init = root.path().join("valkey-bench-1-9002-abc"); // pid 1 is alive
        let other = root.path().join("someone-elses-99999999");
        for dir in [&dead, &ours, &init, &other] {
            fs::create_dir_all(dir.join("sub")).unwrap();
        }
        assert_eq!(sweep_stale(root.path()), 1);
        assert!(!dead.exists());
        assert!(ours.exists() && init.exists() && other.exists());
        assert_eq!(sweep_stale(&root.path().join("missing")), 0);
    }

    #[test]
    fn names_file_systems() {
        assert_eq!(fs_type(Path::new("/proc/self")), "0x9fa0"); // procfs
        assert_eq!(fs_type(Path::new("/dev/shm")), "tmpfs");
        assert_eq!(fs_type(Path::new("/no/such/path")), "unknown");
    }
}
