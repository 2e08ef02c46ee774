//! Which program runs as a host's agent: this one, or (for a host of another architecture)
//! the xtask named by the host's `agent` field, built for that host from the same commit.
//! A named one must carry this build's [`MARK`] (so the hosts file cannot have us run
//! some other program there), and its ELF header's architecture must be the host's
//! `uname -m`.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The agent protocol this build speaks. Bump it when a request or reply changes shape.
pub const PROTOCOL: u32 = 1;

/// Bytes every xtask binary carries (this constant is in its read-only data): a file named
/// as an agent without them is not an xtask speaking our protocol, and is never copied
/// or run. Keep the protocol number in it equal to [`PROTOCOL`].
pub const MARK: &[u8] = b"valkey-bench agent protocol 1;";

/// Kept in every build, whether or not anything here searches for it.
#[used]
static MARK_KEPT: &[u8] = MARK;

/// The most a named agent may be (an xtask release build is under 100 MB).
const LARGEST: u64 = 512 << 20;

/// A program to run as an agent, and the architecture it is built for (as `uname -m`
/// names it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentBinary {
    pub path: PathBuf,
    pub arch: &'static str,
    /// It came from the hosts file (not this program).
    pub named: bool,
}

impl AgentBinary {
    /// This program.
    pub fn this() -> anyhow::Result<AgentBinary> {
        let path = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("finding this program to ship as the agent: {e}"))?;
        Ok(AgentBinary {
            path,
            arch: this_arch(),
            named: false,
        })
    }

    /// The program at `path` (a host's `agent`): a regular file, an ELF program of a known
    /// architecture, carrying [`MARK`]; else why not, with the fix.
    pub fn named(path: &Path) -> Result<AgentBinary, String> {
        let fix = "give the xtask built for that host from this commit";
        let bad = |why: String| format!("{}: {why}: {fix}", path.display());
        // Non-blocking, so a FIFO named here cannot hang the read; then a regular file only.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| bad(e.to_string()))?;
        let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() || meta.len() > LARGEST {
            return Err(bad(format!(
                "not a regular file of at most {} MiB",
                LARGEST >> 20
            )));
        }
        let mut content = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut content)
            .map_err(|e| bad(e.to_string()))?;
        let arch = elf_arch(&content).map_err(bad)?;
        if memchr::memmem::find(&content, MARK).is_none() {
            return Err(bad(format!(
                "an ELF program, but not an xtask speaking agent protocol {PROTOCOL}"
            )));
        }
        Ok(AgentBinary {
            path: path.to_path_buf(),
            arch,
            named: true,
        })
    }

    /// Whether it runs on a host whose `uname -m` is `host_arch`; else the message that
    /// says what to do (naming `host`).
    pub fn check(&self, host: &str, host_arch: &str) -> Result<(), String> {
        if self.arch == host_arch {
            return Ok(());
        }
        if self.named {
            return Err(format!(
                "host {host:?} is {host_arch}, but its agent {} is built for {}: build xtask for \
                 {host_arch} from this commit and name that",
                self.path.display(),
                self.arch
            ));
        }
        Err(format!(
            "host {host:?} is {host_arch} and this machine {}: the agent there would be this \
             program; build xtask for {host_arch} from this commit (cargo build --release -p \
             xtask --target {}, or on a {host_arch} machine) and name it with \
             agent = \"PATH\" in the host's entry",
            self.arch,
            target_of(host_arch)
        ))
    }
}

/// This machine's architecture as `uname -m` names it (Rust says `powerpc64`).
pub fn this_arch() -> &'static str {
    match std::env::consts::ARCH {
        "powerpc64" => "ppc64le",
        arch => arch,
    }
}

/// The Rust target to build xtask for a host whose `uname -m` is `arch`.
fn target_of(arch: &str) -> String {
    match arch {
        "riscv64" => "riscv64gc-unknown-linux-gnu".into(),
        "ppc64le" => "powerpc64le-unknown-linux-gnu".into(),
        other => format!("{other}-unknown-linux-gnu"),
    }
}

/// The architecture an ELF program (its first 20 bytes at least) is for, as `uname -m`
/// names it.
pub fn elf_arch(header: &[u8]) -> Result<&'static str, String> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return Err("not an ELF program".into());
    }
    let little = match header[5] {
        1 => true,
        2 => false,
        other => return Err(format!("an ELF file of unknown byte order {other}")),
    };
    let half = |at: usize| {
        let b = [header[at], header[at + 1]];
        if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    // ET_EXEC or ET_DYN (a position-independent program): not an object or a core file.
    if !matches!(half(16), 2 | 3) {
        return Err("an ELF file that is not a program".into());
    }
    let (class, machine) = (header[4], half(18));
    if class != 2 {
        return Err("a 32-bit ELF program: the agent must be a 64-bit build".into());
    }
    Ok(match (machine, little) {
        (62, true) => "x86_64",
        (183, true) => "aarch64",
        (243, true) => "riscv64",
        (21, true) => "ppc64le",
        (22, false) => "s390x",
        (m, _) => {
            return Err(format!(
                "an ELF executable for machine {m}, which we do not know (x86_64, aarch64, \
                 riscv64, ppc64le and s390x are)"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: [u8; 2]) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        h[16] = if data == 2 { 0 } else { 3 };
        h[17] = if data == 2 { 3 } else { 0 };
        h[18..20].copy_from_slice(&machine);
        h
    }

    #[test]
    fn elf_headers_name_their_architecture() {
        assert_eq!(elf_arch(&header(2, 1, [62, 0])), Ok("x86_64"));
        assert_eq!(elf_arch(&header(2, 1, [183, 0])), Ok("aarch64"));
        assert_eq!(elf_arch(&header(2, 2, [0, 22])), Ok("s390x"));
        assert!(
            elf_arch(&header(1, 1, [3, 0]))
                .unwrap_err()
                .contains("32-bit")
        );
        assert!(
            elf_arch(&header(2, 1, [99, 0]))
                .unwrap_err()
                .contains("machine 99")
        );
        assert!(
            elf_arch(b"#!/bin/sh\nexec true\n")
                .unwrap_err()
                .contains("not an ELF")
        );
        assert!(elf_arch(b"\x7fELF").unwrap_err().contains("not an ELF"));
        let mut object = header(2, 1, [62, 0]);
        object[16] = 1;
        assert!(elf_arch(&object).unwrap_err().contains("not a program"));
        assert!(
            elf_arch(&header(2, 7, [62, 0]))
                .unwrap_err()
                .contains("byte order")
        );
    }

    #[test]
    fn the_mark_names_this_protocol() {
        let mark = String::from_utf8_lossy(MARK);
        assert!(mark.ends_with(&format!("protocol {PROTOCOL};")), "{mark}");
    }

    #[test]
    fn a_named_agent_must_be_a_regular_file_carrying_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        // An ELF program of this machine's architecture without the mark (like /bin/sh).
        let mut elf = header(2, 1, [62, 0]).to_vec();
        let this = std::fs::read(AgentBinary::this().unwrap().path).unwrap();
        elf[18..20].copy_from_slice(&this[18..20]);
        elf.extend_from_slice(&[0u8; 64]);
        let plain = dir.path().join("plain");
        std::fs::write(&plain, &elf).unwrap();
        let why = AgentBinary::named(&plain).unwrap_err();
        assert!(
            why.contains("not an xtask") && why.contains("give the xtask"),
            "{why}"
        );
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let why = AgentBinary::named(&fifo).unwrap_err();
        assert!(why.contains("not a regular file"), "{why}");
        let short = dir.path().join("short");
        std::fs::write(&short, b"\x7fEL").unwrap();
        assert!(
            AgentBinary::named(&short)
                .unwrap_err()
                .contains("not an ELF")
        );
    }

    #[test]
    fn this_program_is_an_agent_for_this_machine_only() {
        let this = AgentBinary::this().unwrap();
        let named = AgentBinary::named(&this.path).unwrap();
        assert_eq!(named.arch, this_arch(), "read from its own header");
        assert!(this.check("a", this_arch()).is_ok());
        let other = if this.arch == "aarch64" {
            "x86_64"
        } else {
            "aarch64"
        };
        let why = this.check("a", other).unwrap_err();
        assert!(why.contains("agent = \"PATH\""), "{why}");
        let why = named.check("a", other).unwrap_err();
        assert!(why.contains("is built for"), "{why}");
        assert!(AgentBinary::named(Path::new("/nonexistent/xtask")).is_err());
    }
}
