//! System calls a server makes in a counted window, by kind: what instruction counts
//! cannot see (a system call costs hundreds of nanoseconds in the kernel and a handful of
//! user-space instructions).
//!
//! `perf record -e raw_syscalls:sys_enter -p PID` attaches to the server (every thread)
//! with its events disabled (`-D -1`) and a control FIFO (`--control fifo:CTL,ACK`): the
//! window opens with `enable` and closes with `disable`, each acknowledged by perf, so
//! nothing outside the window is counted, however long perf takes to start. Then
//! `perf script -F trace` lists one `NR n (...)` line per call, named from the kernel
//! headers' `__NR_*` table (`syscall N` where it is missing).
//!
//! Under callgrind every call the server makes passes through valgrind, which adds
//! `rt_sigprocmask` calls of its own around blocking ones (dropped in the kernel by a
//! tracepoint filter, [`VALGRIND_ONLY`]); both sides run under the same valgrind, so a
//! kind that moved moved in the server.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::shutdown::Shutdown;

use crate::process::{self, Guarded};

/// System calls of one window, by kind.
pub type Calls = BTreeMap<String, u64>;

/// Kinds counted under valgrind that a server running natively does not make per
/// request, so perf drops them in the kernel where the headers number them (they are
/// neither in the records nor compared; compare also leaves them out where perf could
/// not drop them): the clock reads the
/// vDSO serves without entering the kernel (`clock_gettime`, `gettimeofday`, `time`,
/// `getcpu`), which valgrind turns into real calls (9.1.2 reads the TSC instead, so
/// these fell by 9 per request against 8.1.1 without any kernel work changing), and the
/// calls of valgrind's own scheduler and signal handling (`gettid`, `rt_sigprocmask`,
/// `rt_sigtimedwait`). A change in these kinds made by the server itself is not seen.
pub const VALGRIND_ONLY: [&str; 7] = [
    "clock_gettime",
    "gettimeofday",
    "time",
    "getcpu",
    "gettid",
    "rt_sigprocmask",
    "rt_sigtimedwait",
];

/// Whether system calls can be counted here, tried the way the screen counts them: perf
/// attached to this very process with its events off, switched on around a few
/// `getppid()` calls and off again, and the calls found in its data. `Err` says why not
/// and how to fix it.
pub fn available(shutdown: &Shutdown) -> Result<(), String> {
    if !process::runs("perf") {
        return Err(
            "perf is not installed, so system calls are not counted: install it with apt-get install linux-perf"
                .into(),
        );
    }
    let tried = || -> anyhow::Result<u64> {
        let dir = tempfile::tempdir()?;
        let mut tracer = Tracer::attach(std::process::id(), dir.path())?;
        tracer.enable(shutdown)?;
        for _ in 0..3 {
            // SAFETY: a plain syscall without arguments.
            unsafe { libc::getppid() };
        }
        tracer.disable(shutdown)?;
        let calls = tracer.finish(shutdown)?;
        Ok(calls.get("getppid").copied().unwrap_or(0))
    };
    match tried() {
        Ok(n) if n >= 3 => Ok(()),
        Ok(n) => Err(format!(
            "perf traced {n} of 3 test system calls here, so system calls are not counted"
        )),
        Err(e) => Err(format!(
            "perf cannot trace system calls here ({e:#}), so they are not counted: run as root, \
             or lower kernel.perf_event_paranoid and make tracefs readable"
        )),
    }
}

/// perf attached to a process with its events off, and the FIFOs that switch them.
pub struct Tracer {
    perf: Guarded,
    control: File,
    ack: File,
    data: PathBuf,
    log: PathBuf,
    /// perf was told to exit.
    stopped: bool,
}

/// perf lost events of a counted window (its buffer overflowed), so the window's count
/// would be short: the caller may count the window again.
#[derive(Debug, thiserror::Error)]
#[error("perf lost system-call events, so the count is short: {0}")]
pub struct LostEvents(pub String);

impl Tracer {
    /// Attaches to `pid` (every thread), events off; its files go under `dir`.
    pub fn attach(pid: u32, dir: &Path) -> anyhow::Result<Tracer> {
        let control_path = dir.join("perf-control");
        let ack_path = dir.join("perf-ack");
        for fifo in [&control_path, &ack_path] {
            let _ = std::fs::remove_file(fifo);
            let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
                .context("a FIFO path with a NUL byte")?;
            // SAFETY: a plain syscall on a NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("mkfifo {}", fifo.display()));
            }
        }
        // Read-write opens of a FIFO never block (Linux), so neither end waits for perf.
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))
        };
        let control = open(&control_path)?;
        let ack = open(&ack_path)?;
        let data = dir.join("syscalls.data");
        let log = dir.join("perf-syscalls.log");
        let mut cmd = process::command("perf");
        cmd.args([
            "record",
            "-q",
            "--no-buildid-cache",
            // No build-id pass over the data at exit (a second per window).
            "--no-buildid",
            "-e",
            "raw_syscalls:sys_enter",
        ]);
        // Valgrind's own kinds are dropped in the kernel: at pipeline 1 they are three
        // quarters of the events, and perf's exit and script take a second longer with them.
        if let Some(filter) = valgrind_only_filter() {
            cmd.args(["--filter", &filter]);
        }
        cmd.args([
            // A buffer for the bursts: under valgrind a window can hold a few hundred
            // thousand calls (valgrind's own among them), and on a busy machine the
            // default one overflowed (events lost, the count refused).
            "-m", "16M",
        ])
        .args(["-D", "-1", "--control"])
        .arg(format!(
            "fifo:{},{}",
            control_path.display(),
            ack_path.display()
        ))
        .arg("-p")
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(File::create(&log)?);
        let perf = Guarded::spawn(cmd, "perf record (system calls)")?;
        Ok(Tracer {
            perf,
            control,
            ack,
            data,
            log,
            stopped: false,
        })
    }

    /// Opens the window; returns once perf says its events are on.
    pub fn enable(&mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        self.command("enable", shutdown)
    }

    /// Closes the window; returns once perf says its events are off.
    pub fn disable(&mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        self.command("disable", shutdown)
    }

    /// The last lines perf logged, for an error message.
    fn log_tail(&self) -> String {
        process::tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 5)
    }

    fn command(&mut self, what: &str, shutdown: &Shutdown) -> anyhow::Result<()> {
        self.control
            .write_all(format!("{what}\n").as_bytes())
            .with_context(|| format!("telling perf to {what}"))?;
        // perf answers "ack\n" (with a NUL after it); it may take a moment to attach first.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"ack\n") {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "perf did not acknowledge `{what}` within 30 s: {}",
                    self.log_tail()
                );
            }
            if shutdown.is_triggered() {
                bail!("interrupted");
            }
            if let Ok(Some(status)) = self.perf.try_wait() {
                bail!(
                    "perf record exited ({status}) before `{what}`: {}",
                    self.log_tail()
                );
            }
            let mut poll = libc::pollfd {
                fd: self.ack.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a short timeout so perf's exit is noticed.
            let ready = unsafe { libc::poll(&mut poll, 1, 100) };
            if ready > 0 {
                let mut buf = [0u8; 64];
                let n = self.ack.read(&mut buf)?;
                got.extend_from_slice(&buf[..n]);
            }
        }
        Ok(())
    }

    /// Tells perf to write its data out and exit (after [`disable`](Self::disable));
    /// [`finish`](Self::finish) waits for it.
    pub fn stop(&mut self) {
        if !self.stopped {
            self.perf.interrupt();
            self.stopped = true;
        }
    }

    /// Stops perf (if [`stop`](Self::stop) did not) and counts the window's calls by kind.
    pub fn finish(mut self, shutdown: &Shutdown) -> anyhow::Result<Calls> {
        self.stop();
        let status = self.perf.wait(shutdown, Some(Duration::from_secs(60)))?;
        use std::os::unix::process::ExitStatusExt;
        let interrupted = status.code() == Some(130) || status.signal() == Some(libc::SIGINT);
        if !status.success() && !interrupted {
            bail!(
                "perf record (system calls) failed ({status}): {}",
                self.log_tail()
            );
        }
        let mut cmd = process::command("perf");
        cmd.args(["script", "-F", "trace", "-i"]).arg(&self.data);
        let out = process::output(cmd, "perf script", shutdown, Some(Duration::from_secs(120)))?;
        if !out.status.success() {
            bail!(
                "perf script failed ({}): {}",
                out.status,
                process::tail(&out.stderr, 10)
            );
        }
        let _ = std::fs::remove_file(&self.data);
        // A count with events lost would be short of the truth: refuse it.
        if let Some(lost) = out
            .stderr
            .lines()
            .chain(
                std::fs::read_to_string(&self.log)
                    .unwrap_or_default()
                    .lines(),
            )
            .map(str::to_ascii_lowercase)
            .find(|l| l.contains("lost") && !l.contains("lost 0 "))
        {
            return Err(LostEvents(lost).into());
        }
        Ok(tally(&out.stdout))
    }
}

/// Counts `perf script -F trace` lines of `raw_syscalls:sys_enter` (`NR 232 (...)`) by
/// name.
pub fn tally(script: &str) -> Calls {
    let mut calls = Calls::new();
    for line in script.lines() {
        let Some(nr) = line
            .trim_start()
            .strip_prefix("NR ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        *calls.entry(name(nr)).or_default() += 1;
    }
    calls
}

/// A system call's name from its number on this machine's architecture: the kernel
/// headers' `__NR_*` table, read once, else `syscall N`.
fn name(nr: u32) -> String {
    table()
        .get(&nr)
        .cloned()
        .unwrap_or_else(|| format!("syscall {nr}"))
}

/// This machine's system call numbers and names, read once.
fn table() -> &'static BTreeMap<u32, String> {
    static TABLE: OnceLock<BTreeMap<u32, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let arch = std::env::consts::ARCH;
        let paths = [
            format!("/usr/include/{arch}-linux-gnu/asm/unistd_64.h"),
            "/usr/include/asm/unistd_64.h".to_string(),
            format!("/usr/include/{arch}-linux-gnu/asm/unistd.h"),
        ];
        let text = paths
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        parse_table(&text)
    })
}

/// The tracepoint filter that leaves out [`VALGRIND_ONLY`]'s kinds (`id != 228 && ...`),
/// or `None` where the kernel headers do not name them.
fn valgrind_only_filter() -> Option<String> {
    let numbers: Vec<String> = table()
        .iter()
        .filter(|(_, name)| VALGRIND_ONLY.contains(&name.as_str()))
        .map(|(nr, _)| format!("id != {nr}"))
        .collect();
    (!numbers.is_empty()).then(|| numbers.join(" && "))
}

/// `#define __NR_read 0` lines into number → name.
fn parse_table(text: &str) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "#define").then_some(())?;
            let name = words.next()?.strip_prefix("__NR_")?;
            let nr = words.next()?.parse().ok()?;
            Some((nr, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_lines_are_counted_by_kind() {
        let table = parse_table(
            "#ifndef _ASM\n#define __NR_read 0\n#define __NR_write 1\n#define __NR_getppid 110\n#define X 5\n",
        );
        assert_eq!(table.get(&110).map(String::as_str), Some("getppid"));
        assert_eq!(table.len(), 3);
        let script =
            "  NR 0 (7, 7f00, 4000, 0, 0, 0)\nNR 0 (7, 1, 2, 3, 4, 5)\n NR 99999 (0)\ngarbage\n";
        let calls = tally(script);
        assert_eq!(calls.values().sum::<u64>(), 3);
        assert_eq!(calls.get("syscall 99999"), Some(&1));
    }
}
