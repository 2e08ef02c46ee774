//! Which program runs as a host's agent: this one, or (for a host of another architecture)
//! the xtask named by the host's `agent` field, built for that host from the same commit.
//! Its architecture is read from its ELF header and must be the host's `uname -m`.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The agent protocol this build speaks: an agent that reports another (or none) was
/// built from other sources, and is refused before it is asked for anything else.
pub const PROTOCOL: u32 = 1;

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
            arch: std::env::consts::ARCH,
            named: false,
        })
    }

    /// The program at `path` (a host's `agent`): an executable ELF file of a known
    /// architecture, else why not.
    pub fn named(path: &Path) -> Result<AgentBinary, String> {
        let mut header = [0u8; 20];
        let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
        if let Err(e) = read {
            return Err(format!("{}: {e}", path.display()));
        }
        let arch = elf_arch(&header).map_err(|why| format!("{}: {why}", path.display()))?;
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
             xtask --target {host_arch}-unknown-linux-gnu, or on a {host_arch} machine) and \
             name it with agent = \"PATH\" in the host's entry",
            self.arch
        ))
    }
}

/// The architecture an ELF header (its first 20 bytes) is for, as `uname -m` names it.
pub fn elf_arch(header: &[u8]) -> Result<&'static str, String> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return Err("not an ELF executable (give the xtask binary built for the host)".into());
    }
    let (class, little) = (header[4], header[5] == 1);
    let machine = if little {
        u16::from_le_bytes([header[18], header[19]])
    } else {
        u16::from_be_bytes([header[18], header[19]])
    };
    if class != 2 {
        return Err("a 32-bit ELF executable: the agent must be a 64-bit build".into());
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
    }

    #[test]
    fn this_program_is_an_agent_for_this_machine_only() {
        let this = AgentBinary::this().unwrap();
        let named = AgentBinary::named(&this.path).unwrap();
        assert_eq!(
            named.arch,
            std::env::consts::ARCH,
            "read from its own header"
        );
        assert!(this.check("a", std::env::consts::ARCH).is_ok());
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
