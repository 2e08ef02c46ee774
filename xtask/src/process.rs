//! The one module that owns child processes: spawning, waiting, and guaranteed teardown.
//!
//! Every child is started in its own process group with `PR_SET_PDEATHSIG`, and is
//! registered while it lives. Three layers make sure none outlives a run:
//! 1. [`Guarded`] kills the whole group and reaps the child in `Drop` (normal end, errors,
//!    panics);
//! 2. the SIGINT/SIGTERM/SIGHUP handler ([`install_signal_handler`]) triggers the run's
//!    [`Shutdown`], kills every registered group at once, and exits if the main thread has
//!    not finished unwinding within a grace period;
//! 3. the kernel kills the child if xtask itself dies without running either (SIGKILL).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::shutdown::Shutdown;

/// Exit code of a run stopped by a signal (128 + SIGINT, the shell convention).
pub const INTERRUPTED_EXIT: i32 = crate::error::INTERRUPTED as i32;

/// How long the signal handler lets the main thread tear down before exiting itself.
const SIGNAL_GRACE: Duration = Duration::from_secs(5);

/// Process ids (= process group ids) of the children alive right now.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// The environment variable that may hold the Valkey queue's password
/// (`queue/valkey/access.rs`); no child inherits it.
pub const QUEUE_PASSWORD: &str = "VALKEY_BENCH_QUEUE_PASSWORD";

/// A command whose child will be torn down with xtask. The only way in this crate to make
/// a `std::process::Command`.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    #[allow(clippy::disallowed_methods)] // this module is where children are made
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null());
    // The Valkey queue's password, when it came from the environment, is ours alone: no
    // server, tool or build a runner starts inherits it.
    cmd.env_remove(QUEUE_PASSWORD);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setpgid, prctl, getppid).
    unsafe {
        cmd.pre_exec(|| {
            // Own group: a terminal's Ctrl-C reaches xtask, which decides, and a kill of
            // the group also reaches the server's own forks (BGSAVE, replication).
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // xtask may have died between fork and prctl. No allocation after fork: a raw
            // OS error, not a message.
            if libc::getppid() == 1 {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd
}

/// Makes the child's `/dev/urandom` read the bytes of `file`, and its address space
/// unrandomized: a private mount namespace with `file` bind-mounted over `/dev/urandom`,
/// and `ADDR_NO_RANDOMIZE`. For counting instructions, where Valkey's hash seed (read
/// from `/dev/urandom` at startup) would otherwise change the work of every lookup.
/// Needs CAP_SYS_ADMIN (root); without it the child fails to start, which
/// [`fixed_urandom_works`] tells in advance.
pub fn fix_urandom(cmd: &mut Command, file: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let source = std::ffi::CString::new(file.as_os_str().as_bytes())?;
    let target = c"/dev/urandom";
    let root = c"/";
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (unshare, mount, personality) on strings allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Keep our mounts from propagating back to the host's namespace.
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Whether [`fix_urandom`] works here: runs `true` with it and checks it started.
pub fn fixed_urandom_works(file: &std::path::Path) -> bool {
    let mut cmd = command("true");
    if fix_urandom(&mut cmd, file).is_err() {
        return false;
    }
    output(cmd, "true", &Shutdown::new(), Some(Duration::from_secs(10)))
        .is_ok_and(|o| o.status.success())
}

/// Whether `program --version` runs and succeeds (a tool is installed), through the guard.
pub fn runs(program: &str) -> bool {
    let mut cmd = command(program);
    cmd.arg("--version");
    output(
        cmd,
        program,
        &Shutdown::new(),
        Some(Duration::from_secs(30)),
    )
    .is_ok_and(|o| o.status.success())
}

/// A running child that is killed (with its process group) and reaped when dropped.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    name: String,
}

impl Guarded {
    pub fn spawn(mut cmd: Command, name: impl Into<String>) -> anyhow::Result<Guarded> {
        let name = name.into();
        // Hold the registry lock across spawn so the signal handler cannot miss the child.
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        live.insert(child.id() as i32);
        Ok(Guarded { child, name })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Some(status)` once the child has exited. An exited child is first seen without
    /// being reaped (`waitid` with `WNOWAIT`): while it is a zombie its pid and group id are
    /// still ours, so its group (forks it left behind) is killed then, and it leaves the
    /// registry before the reap, under the registry's lock. After the reap no signal of
    /// ours can reach that pid, which the kernel may give to another process.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let pid = self.child.id() as i32;
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if !live.contains(&pid) {
            drop(live);
            return self.child.try_wait(); // already reaped: std keeps the status
        }
        if !exited_unreaped(pid)? {
            return Ok(None);
        }
        // SAFETY: a plain syscall on the group of an unreaped child of ours.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        live.remove(&pid);
        drop(live);
        self.child.wait().map(Some)
    }

    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits for the child to exit on its own, polling `shutdown`; kills it when the
    /// shutdown triggers or `timeout` passes.
    pub fn wait(
        &mut self,
        shutdown: &Shutdown,
        timeout: Option<Duration>,
    ) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if shutdown.is_triggered() {
                self.kill_and_reap();
                bail!("interrupted");
            }
            if timeout.is_some_and(|t| start.elapsed() > t) {
                self.kill_and_reap();
                bail!(
                    "{} did not finish within {:?}",
                    self.name,
                    timeout.unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGINT to the child alone (e.g. `perf record`, which then writes its data
    /// and exits). A no-op once the child is reaped.
    pub fn interrupt(&self) {
        let pid = self.child.id() as i32;
        let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if live.contains(&pid) {
            // SAFETY: a plain syscall on a registered, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
    }

    /// Kills the child's process group and reaps the child. Idempotent.
    pub fn kill_and_reap(&mut self) {
        let pid = self.child.id() as i32;
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if live.remove(&pid) {
            // The child is registered, hence not reaped yet: `pid` still names it and its group.
            // SAFETY: plain syscalls on a pid we own.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        drop(live);
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Whether child `pid` has exited, leaving it unreaped (a zombie) so its pid stays ours.
fn exited_unreaped(pid: i32) -> io::Result<bool> {
    // SAFETY: siginfo_t is plain data; waitid fills it. WNOWAIT leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        if libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info.si_pid() != 0)
    }
}

/// What a finished child printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion, capturing stdout and stderr; stops it on shutdown or timeout.
pub fn output(
    mut cmd: Command,
    name: &str,
    shutdown: &Shutdown,
    timeout: Option<Duration>,
) -> anyhow::Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Guarded::spawn(cmd, name)?;
    let stdout = drain(child.take_stdout());
    let stderr = drain(child.take_stderr());
    let status = child.wait(shutdown, timeout)?;
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A tool run to its end (git, tar, apt-get): a child like any other (its own group,
/// killed with xtask and by a signal's [`kill_all`]), stopped after `timeout` (a hung
/// mirror or lock must not stall a run forever). Its output whatever its exit status.
pub fn tool<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: impl IntoIterator<Item = S>,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let name = program.as_ref().to_string_lossy().into_owned();
    let mut cmd = command(program);
    cmd.args(args);
    // A signal reaches the child through `kill_all`; no run's shutdown is needed here.
    output(cmd, &name, &Shutdown::new(), Some(timeout))
}

/// [`tool`] that must succeed: its stdout, trimmed; else an error with its stderr's tail.
pub fn tool_read<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: impl IntoIterator<Item = S>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let name = program.as_ref().to_string_lossy().into_owned();
    let out = tool(program, args, timeout)?;
    if !out.status.success() {
        bail!("{name} failed ({}): {}", out.status, tail(&out.stderr, 5));
    }
    Ok(out.stdout.trim_end().to_string())
}

/// Kills every registered child's process group. Safe to call from the signal thread.
pub fn kill_all() {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    for &pid in live.iter() {
        // SAFETY: registered pids are unreaped children of ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Number of children alive right now (for tests and diagnostics).
pub fn live_count() -> usize {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// On SIGINT, SIGTERM or SIGHUP: trigger `shutdown`, kill every child at once, and give the
/// main thread [`SIGNAL_GRACE`] to unwind (writing what it has) before exiting with 130.
pub fn install_signal_handler(shutdown: Shutdown) -> anyhow::Result<()> {
    ctrlc::set_handler(move || {
        if shutdown.is_triggered() {
            // A second signal: the user insists.
            kill_all();
            std::process::exit(INTERRUPTED_EXIT);
        }
        eprintln!("\ninterrupted: stopping servers");
        shutdown.trigger();
        kill_all();
        thread::spawn(|| {
            thread::sleep(SIGNAL_GRACE);
            kill_all();
            std::process::exit(INTERRUPTED_EXIT);
        });
    })
    .context("installing the SIGINT/SIGTERM handler")
}

/// The last `lines` lines of a text, for error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// CPU time (user and system, seconds) of this process's children that have been reaped.
/// The delta around one [`output`] call is that child's CPU time, as long as nothing else
/// is reaped meanwhile.
pub fn reaped_children_cpu() -> bench_core::loadgen::CpuTime {
    bench_core::loadgen::CpuTime::of(libc::RUSAGE_CHILDREN)
}
