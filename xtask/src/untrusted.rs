//! Reading files that others can write (the directory queue's, owner locks in a shared
//! scratch directory), which anyone who can write their directory can replace: a FIFO
//! would block a plain open or read forever, a symlink to /dev/zero would read without
//! end, a link could point anywhere. So every such file is opened
//! without following a final symlink and without blocking, must be a regular file, and is
//! read through a size limit.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The most bytes any small file (a queue's error reason, lease or status) may hold.
pub const MAX_SMALL: usize = 64 * 1024;

/// Opens `path` for reading: not through a final symlink, without blocking on a FIFO or
/// device, and only if it is a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    open(path, false)
}

/// [`open_regular`] for reading and writing: an exclusive `flock` on NFS (emulated with
/// POSIX locks) needs a file open for writing.
pub fn open_regular_for_lock(path: &Path) -> io::Result<File> {
    open(path, true)
}

fn open(path: &Path, write: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// The bytes of the regular file at `path`, refused past `limit` bytes.
pub fn read_limited(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// [`read_limited`] to [`MAX_SMALL`], as text (invalid UTF-8 replaced).
pub fn read_small_text(path: &Path) -> io::Result<String> {
    Ok(String::from_utf8_lossy(&read_limited(path, MAX_SMALL)?).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_links_and_large_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_limited(&fifo, 10).is_err());
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_limited(&link, 10).is_err());
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "0123456789").unwrap();
        assert_eq!(read_limited(&plain, 10).unwrap(), b"0123456789");
        assert!(read_limited(&plain, 9).is_err());
        let to_plain = dir.path().join("to-plain");
        std::os::unix::fs::symlink(&plain, &to_plain).unwrap();
        assert!(
            read_limited(&to_plain, 10).is_err(),
            "a link is not followed"
        );
        assert!(read_limited(&dir.path().join("absent"), 10).is_err());
    }
}
