//! `perf record` on one server process, wherever the process runs: checking perf can run
//! on this machine ([`perf_event`]), recording ([`Recording::start`]) and bringing back
//! the samples as folded stacks ([`Recording::finish`]). `flamegraph` uses it for a
//! server here; an agent uses it for a server on its host, and sends the folded stacks.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use anyhow::bail;
use bench_core::profile;
use bench_core::shutdown::Shutdown;

use crate::error::UsageError;
use crate::process::{self, Guarded};

/// The events a recording may sample (what [`perf_event`] answers).
pub const EVENTS: [&str; 2] = ["cycles", "cpu-clock"];

/// The highest sampling frequency accepted, Hz (perf's own default limit).
pub const MAX_FREQUENCY: u32 = 100_000;

/// The perf event to sample on this machine, after checking perf can run here: `cycles`
/// where the machine has hardware counters, else `cpu-clock` (most VMs). A
/// [`UsageError`] when perf cannot run here, saying how to fix it.
pub fn perf_event(shutdown: &Shutdown) -> anyhow::Result<&'static str> {
    if !process::runs("perf") {
        bail!(UsageError(
            "perf is not installed (or not on PATH). Install it: `apt-get install linux-perf` on \
             Debian, `apt-get install linux-tools-common linux-tools-$(uname -r)` on Ubuntu"
                .into()
        ));
    }
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if let Some(level) = paranoid.filter(|&l| l > 1 && !root) {
        bail!(UsageError(format!(
            "kernel.perf_event_paranoid is {level}: perf may not profile another process as \
             this user. Allow it with `sudo sysctl kernel.perf_event_paranoid=1` (until reboot), \
             or run as root"
        )));
    }
    let mut cmd = process::command("perf");
    cmd.args(["stat", "-x,", "-e", "cycles", "--", "true"]);
    let out = process::output(cmd, "perf stat", shutdown, Some(Duration::from_secs(30)))?;
    let hardware = out.status.success()
        && !out.stderr.contains("<not supported>")
        && !out.stderr.contains("<not counted>");
    Ok(if hardware { "cycles" } else { "cpu-clock" })
}

/// `perf record -g` attached to one process, writing into a directory of its own
/// (removed with it).
#[derive(Debug)]
pub struct Recording {
    /// Dropped first: perf is killed before its directory goes.
    perf: Guarded,
    dir: tempfile::TempDir,
}

impl Recording {
    /// Starts sampling process `pid` with `event` at `frequency` Hz, with frame-pointer
    /// stacks; returns once perf has had the time to attach.
    pub fn start(
        pid: u32,
        event: &str,
        frequency: u32,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Recording> {
        if !EVENTS.contains(&event) {
            bail!("perf event {event:?}: expected one of {EVENTS:?}");
        }
        if frequency == 0 || frequency > MAX_FREQUENCY {
            bail!("sampling frequency {frequency}: expected 1 to {MAX_FREQUENCY} Hz");
        }
        let mut cmd = process::command("perf");
        cmd.args(["record", "-e", event, "-F"])
            .arg(frequency.to_string())
            .args(["-g", "--no-buildid-cache", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(data(dir.path()))
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("perf-record.log"))?);
        let perf = Guarded::spawn(cmd, "perf record")?;
        // perf attaches within milliseconds; give it that before the window counts.
        thread::sleep(Duration::from_millis(50));
        Ok(Recording { perf, dir })
    }

    /// Stops perf (as Ctrl-C would: it writes its data) and folds what it sampled.
    pub fn finish(mut self, shutdown: &Shutdown) -> anyhow::Result<String> {
        self.perf.interrupt();
        let status = self.perf.wait(shutdown, Some(Duration::from_secs(60)))?;
        let log =
            std::fs::read_to_string(self.dir.path().join("perf-record.log")).unwrap_or_default();
        // perf exits 0 (or as interrupted) after writing its data.
        use std::os::unix::process::ExitStatusExt;
        let interrupted = status.code() == Some(130) || status.signal() == Some(libc::SIGINT);
        if !status.success() && !interrupted {
            bail!(
                "perf record failed ({status}):\n{}",
                process::tail(&log, 15)
            );
        }
        let data = data(self.dir.path());
        if !data.exists() {
            bail!("perf record wrote no data file");
        }
        let mut cmd = process::command("perf");
        cmd.args(["script", "-i"]).arg(&data);
        let out = process::output(cmd, "perf script", shutdown, Some(Duration::from_secs(600)))?;
        if !out.status.success() {
            bail!(
                "perf script failed ({}):\n{}",
                out.status,
                process::tail(&out.stderr, 15)
            );
        }
        Ok(profile::fold_perf_script(out.stdout.as_bytes())?)
    }
}

/// A recording of an [`super::Instance`]: perf here, or perf under the agent on its host.
#[derive(Debug)]
pub enum PerfRecording<'a> {
    Here(Recording),
    There(&'a dyn super::RemoteProcess),
}

impl PerfRecording<'_> {
    /// Stops the recording and returns its folded stacks (brought here from a host).
    pub fn finish(self, shutdown: &Shutdown) -> anyhow::Result<String> {
        match self {
            PerfRecording::Here(recording) => recording.finish(shutdown),
            PerfRecording::There(server) => server.perf_finish(),
        }
    }
}

fn data(dir: &Path) -> std::path::PathBuf {
    dir.join("perf.data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_events_and_sane_frequencies_start() {
        let dir = || tempfile::tempdir().unwrap();
        let refused = Recording::start(1, "raw_syscalls:sys_enter", 99, dir()).unwrap_err();
        assert!(refused.to_string().contains("expected one of"), "{refused}");
        let refused = Recording::start(1, "cycles", 0, dir()).unwrap_err();
        assert!(refused.to_string().contains("1 to 100000"), "{refused}");
        let refused = Recording::start(1, "cycles", MAX_FREQUENCY + 1, dir()).unwrap_err();
        assert!(refused.to_string().contains("1 to 100000"), "{refused}");
    }
}
