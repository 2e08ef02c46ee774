//! Local valkey-server instances: free ports, own directories, readiness, teardown.
//!
//! An [`Instance`] owns its process (through [`Guarded`]) and its temporary directory;
//! dropping it kills the server and removes the directory.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::client::Client;
use bench_core::shutdown::Shutdown;

use crate::process::{self, Guarded};

/// Server settings the harness owns. Everything else may be passed through.
pub const RESERVED: [&str; 5] = ["port", "bind", "dir", "logfile", "daemonize"];

/// How long a server may take to answer PING after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Ports tried past the base port before giving up.
const PORT_ATTEMPTS: u16 = 200;

/// How to start instances.
#[derive(Clone, Debug)]
pub struct Options {
    /// The first port tried. Default 9000.
    pub base_port: u16,
    /// `--name value` pairs passed to every server, after the harness's own.
    pub config: BTreeMap<String, String>,
    /// A program (and its arguments) the server runs under, e.g. valgrind; empty for none.
    pub wrapper: Vec<String>,
    /// How long a server may take to answer PING after it starts.
    pub ready_timeout: Duration,
    /// Serve the server's `/dev/urandom` from this file (see [`process::fix_urandom`]).
    pub fixed_urandom: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            base_port: 9000,
            config: BTreeMap::new(),
            wrapper: Vec::new(),
            ready_timeout: READY_TIMEOUT,
            fixed_urandom: None,
        }
    }
}

/// A running valkey-server. Field order matters: the process is dropped (killed) before
/// its directory is removed.
#[derive(Debug)]
pub struct Instance {
    process: Guarded,
    pub addr: SocketAddr,
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

impl Instance {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A control-plane connection.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(self.addr, Duration::from_secs(30))?)
    }

    /// Whether the server is still running (false once it has exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        process::tail(&fs::read_to_string(&self.log).unwrap_or_default(), lines)
    }
}

/// Starts `count` servers on free ports at or above `options.base_port` and waits until
/// each answers PING. On any failure, the ones already started are torn down.
pub fn start(
    server: &Path,
    count: usize,
    options: &Options,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<Instance>> {
    for key in options.config.keys() {
        if RESERVED.contains(&key.as_str()) {
            bail!("--server-config {key}=...: the harness sets `{key}` itself; leave it out");
        }
    }
    let mut instances: Vec<Instance> = Vec::with_capacity(count);
    let mut port = options.base_port;
    let last = options.base_port.saturating_add(PORT_ATTEMPTS);
    while instances.len() < count {
        if shutdown.is_triggered() {
            bail!("interrupted");
        }
        if port >= last {
            bail!(
                "no free port in {}..{last} for {count} valkey-server instances; pass another --base-port",
                options.base_port
            );
        }
        let candidate = port;
        port += 1;
        if !port_is_free(candidate) {
            continue;
        }
        match start_one(server, candidate, options, shutdown)? {
            Some(instance) => instances.push(instance),
            None => continue, // taken between our probe and the server's bind
        }
    }
    Ok(instances)
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// `Ok(None)` when the port turned out to be in use.
fn start_one(
    server: &Path,
    port: u16,
    options: &Options,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Instance>> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("valkey-bench-{port}-"))
        .tempdir()
        .context("creating the instance directory")?;
    let log = dir.path().join("valkey.log");
    let mut cmd = match options.wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = process::command(program);
            cmd.args(args).arg(server);
            cmd
        }
        None => process::command(server),
    };
    cmd.current_dir(dir.path())
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--protected-mode", "yes"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log);
    for (key, value) in &options.config {
        cmd.arg(format!("--{key}"));
        // A multi-word value ("900 1") is several arguments to valkey-server.
        cmd.args(value.split_whitespace());
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(file) = &options.fixed_urandom {
        process::fix_urandom(&mut cmd, file)?;
    }
    let process = Guarded::spawn(cmd, format!("valkey-server :{port}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut instance = Instance {
        process,
        addr,
        log,
        dir,
    };
    let started = Instant::now();
    loop {
        if shutdown.is_triggered() {
            bail!("interrupted");
        }
        if !instance.is_running() {
            let tail = instance.log_tail(20);
            if tail.contains("Address already in use") {
                return Ok(None);
            }
            bail!("valkey-server on port {port} exited during startup; last log lines:\n{tail}");
        }
        // The server that answers must be ours: with several runs on one machine, another
        // run's server can take the port while ours (slow under valgrind) is starting.
        if let Ok(mut client) = Client::connect(addr, Duration::from_millis(200))
            && client.call(&["PING"]).is_ok()
            && let Ok(info) = client.call_text(&["INFO", "server"])
        {
            let pid = bench_core::info::Info::parse(&info).get_u64("process_id");
            if pid == Some(u64::from(instance.pid())) {
                return Ok(Some(instance));
            }
        }
        if started.elapsed() > options.ready_timeout {
            bail!(
                "valkey-server on port {port} did not answer PING within {:?}; last log lines:\n{}",
                options.ready_timeout,
                instance.log_tail(20)
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
}
