//! valkey-server instances: free ports, own directories, readiness, teardown.
//!
//! An [`Instance`] is a server at an address, wherever it runs: on this machine it owns its
//! process (through [`Guarded`]) and its temporary directory, on another host the agent
//! there does (a [`RemoteProcess`], which the host module provides); either way dropping
//! it stops the server and removes its directory. [`start`] starts servers on this
//! machine (the agent calls it on its own). Where their directories live, and the sweep of
//! those a killed xtask left, is `scratch.rs`; `perf record` on one, `perf_record.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_core::client::Client;
use bench_core::shutdown::Shutdown;
use bench_core::transport::Tls;

use crate::process::{self, Guarded};

pub mod perf_record;
mod scratch;
use scratch::{DIR_PREFIX, owner};
pub use scratch::{fs_type, scratch_dir, scratch_dir_in, scratch_root, sweep_stale};

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
    /// Environment variables the server starts with (callgrind's counts: jemalloc's
    /// options).
    pub env: Vec<(String, String)>,
    /// Where instance directories are made. Default [`scratch_root`].
    pub scratch: PathBuf,
    /// Cluster mode (`cluster-enabled yes`, its `nodes.conf` in the instance directory);
    /// the cluster bus port, the port + 10000, must be free too.
    pub cluster: bool,
    /// TLS only: the port is `tls-port` (`port 0`: no plain listener), clients,
    /// replication and the cluster bus speak TLS with these certificates.
    pub tls: Option<Arc<crate::tls::Material>>,
    /// The address servers listen on and clients connect to: the host's own. Default
    /// 127.0.0.1.
    pub bind: IpAddr,
}

/// TLS material for a deployment that asks for it (`mode`), in a scratch directory; its
/// server certificate names `addresses` too (the hosts its servers listen on).
pub fn tls_material(
    mode: Option<bench_core::transport::TlsMode>,
    addresses: &[IpAddr],
) -> anyhow::Result<Option<Arc<crate::tls::Material>>> {
    mode.map(|m| crate::tls::Material::generate(m, scratch_dir("tls")?, addresses).map(Arc::new))
        .transpose()
}

impl Default for Options {
    fn default() -> Options {
        Options {
            base_port: 9000,
            config: BTreeMap::new(),
            wrapper: Vec::new(),
            ready_timeout: READY_TIMEOUT,
            fixed_urandom: None,
            env: Vec::new(),
            scratch: scratch_root(),
            cluster: false,
            tls: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// A running valkey-server, on this machine or another host.
#[derive(Debug)]
pub struct Instance {
    pub addr: SocketAddr,
    /// How to connect, when the server speaks TLS only.
    pub tls: Option<Tls>,
    process: Process,
}

/// Who runs the server.
#[derive(Debug)]
enum Process {
    Local(LocalServer),
    Remote(Box<dyn RemoteProcess>),
}

/// A server on another host, as whoever runs it there answers for it. Dropping it stops
/// the server.
pub trait RemoteProcess: Send + Sync + std::fmt::Debug {
    /// The host's name.
    fn host(&self) -> &str;
    /// The server's process id there.
    fn pid(&self) -> u32;
    /// Its directory there.
    fn dir(&self) -> &Path;
    /// False once it exited, or once its host cannot say.
    fn is_running(&self) -> bool;
    fn log_tail(&self, lines: usize) -> String;
    fn file_len(&self, name: &str) -> Option<u64>;
    fn dir_fs(&self) -> String;
    /// Starts `perf record` on the server there ([`perf_record::Recording::start`]).
    fn perf_start(&self, event: &str, frequency: u32) -> anyhow::Result<()>;
    /// Stops it and brings back the folded stacks.
    fn perf_finish(&self) -> anyhow::Result<String>;
    /// Where its binaries came from (`shipped`, `built on the host (...)`).
    fn build_note(&self) -> &str;
}

/// A server that is our child. Field order matters: the process is dropped (killed)
/// before its directory is removed.
#[derive(Debug)]
struct LocalServer {
    process: Guarded,
    log: PathBuf,
    dir: tempfile::TempDir,
    /// Its certificates: removed after the server stops.
    _material: Option<Arc<crate::tls::Material>>,
}

impl Instance {
    /// A server another host runs, at `addr`.
    pub fn remote(addr: SocketAddr, server: Box<dyn RemoteProcess>) -> Instance {
        Instance {
            addr,
            tls: None,
            process: Process::Remote(server),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its process id on its host.
    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Local(l) => l.process.pid(),
            Process::Remote(r) => r.pid(),
        }
    }

    /// Its directory, on its host.
    pub fn dir(&self) -> &Path {
        match &self.process {
            Process::Local(l) => l.dir.path(),
            Process::Remote(r) => r.dir(),
        }
    }

    /// Its log file, on its host.
    pub fn log_path(&self) -> PathBuf {
        match &self.process {
            Process::Local(l) => l.log.clone(),
            Process::Remote(r) => r.dir().join(LOG_FILE),
        }
    }

    /// The host it runs on, for messages and records: `local` or the hosts file's name.
    pub fn host(&self) -> &str {
        match &self.process {
            Process::Local(_) => "local",
            Process::Remote(r) => r.host(),
        }
    }

    /// Where a server on another host got its binaries; `None` on this machine.
    pub fn build_note(&self) -> Option<&str> {
        match &self.process {
            Process::Local(_) => None,
            Process::Remote(r) => Some(r.build_note()),
        }
    }

    /// Whether it runs on this machine (profilers and counters attach to local ones only).
    pub fn is_local(&self) -> bool {
        matches!(self.process, Process::Local(_))
    }

    /// A control-plane connection.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(
            self.addr,
            self.tls.as_ref(),
            Duration::from_secs(30),
        )?)
    }

    /// Whether the server is still running (false once it has exited, or once its host's
    /// agent can no longer say).
    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Process::Local(l) => matches!(l.process.try_wait(), Ok(None)),
            Process::Remote(r) => r.is_running(),
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        match &self.process {
            Process::Local(l) => {
                process::tail(&fs::read_to_string(&l.log).unwrap_or_default(), lines)
            }
            Process::Remote(r) => r.log_tail(lines),
        }
    }

    /// The size of a file in its directory (`dump.rdb`), `None` when there is none.
    pub fn file_len(&self, name: &str) -> Option<u64> {
        match &self.process {
            Process::Local(l) => fs::metadata(l.dir.path().join(name)).ok().map(|m| m.len()),
            Process::Remote(r) => r.file_len(name),
        }
    }

    /// Starts `perf record` on it, on its host (see [`perf_record`]); `finish` brings the
    /// folded stacks here.
    pub fn perf_record(
        &self,
        event: &str,
        frequency: u32,
    ) -> anyhow::Result<perf_record::PerfRecording<'_>> {
        Ok(match &self.process {
            Process::Local(l) => perf_record::PerfRecording::Here(perf_record::Recording::start(
                l.process.pid(),
                event,
                frequency,
                scratch_dir("profile")?,
            )?),
            Process::Remote(r) => {
                r.perf_start(event, frequency)?;
                perf_record::PerfRecording::There(r.as_ref())
            }
        })
    }

    /// The file system its directory is on (`ext4`, `tmpfs`, ...).
    pub fn dir_fs(&self) -> String {
        match &self.process {
            Process::Local(l) => fs_type(l.dir.path()),
            Process::Remote(r) => r.dir_fs(),
        }
    }
}

/// The server's log file, in its directory.
pub const LOG_FILE: &str = "valkey.log";

/// Starts `count` servers on free ports at or above `options.base_port` and waits until
/// each answers PING. On any failure, the ones already started are torn down.
pub fn start(
    server: &Path,
    count: usize,
    options: &Options,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<Instance>> {
    // The parsers refuse bad settings first (exit 2, naming the field); this is the one
    // place every setting passes before it reaches a server, whoever built the options.
    for (key, value) in &options.config {
        if let Err(why) = bench_core::server_config::check(key, value) {
            bail!("server setting {key}={value:?} refused: {why}");
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
        if !port_is_free(options.bind, candidate)
            || (options.cluster
                && candidate
                    .checked_add(CLUSTER_BUS_OFFSET)
                    .is_none_or(|bus| !port_is_free(options.bind, bus)))
        {
            continue;
        }
        match start_one(server, candidate, options, shutdown)? {
            Some(instance) => instances.push(instance),
            None => continue, // taken between our probe and the server's bind
        }
    }
    Ok(instances)
}

/// Where a cluster node's bus listens, relative to its port (Valkey's default).
const CLUSTER_BUS_OFFSET: u16 = 10000;

fn port_is_free(bind: IpAddr, port: u16) -> bool {
    TcpListener::bind((bind, port)).is_ok()
}

/// `Ok(None)` when the port turned out to be in use.
fn start_one(
    server: &Path,
    port: u16,
    options: &Options,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Instance>> {
    fs::create_dir_all(&options.scratch).with_context(|| {
        format!(
            "creating the scratch directory {} (VALKEY_BENCH_SCRATCH)",
            options.scratch.display()
        )
    })?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-{port}-", owner(&options.scratch)?))
        .tempdir_in(&options.scratch)
        .context("creating the instance directory")?;
    let log = dir.path().join(LOG_FILE);
    let mut cmd = match options.wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = process::command(program);
            cmd.args(args).arg(server);
            cmd
        }
        None => process::command(server),
    };
    cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
    cmd.current_dir(dir.path());
    match &options.tls {
        None => cmd.args(["--port", &port.to_string()]),
        Some(material) => {
            cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
            for (key, value) in material.server_args() {
                cmd.arg(format!("--{key}")).arg(value);
            }
            &mut cmd
        }
    };
    cmd.args(["--bind", &options.bind.to_string()])
        // On a network address (another host's), protected mode would refuse every
        // client not on that host.
        .args([
            "--protected-mode",
            if options.bind.is_loopback() {
                "yes"
            } else {
                "no"
            },
        ])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log);
    if options.cluster {
        cmd.args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"]);
    }
    for (key, value) in &options.config {
        // One argv item per value, whatever it contains: valkey-server quotes it into one
        // config value (a multi-argument setting such as `save "900 1"` splits it itself),
        // so no word of it can become an option of its own.
        cmd.arg(format!("--{key}")).arg(value);
    }
    // Configuration errors are printed on stderr before the log file is open.
    let stderr_path = dir.path().join("stderr.log");
    let stderr = fs::File::create(&stderr_path).context("creating the server's stderr file")?;
    cmd.stdout(Stdio::null()).stderr(Stdio::from(stderr));
    if let Some(file) = &options.fixed_urandom {
        process::fix_urandom(&mut cmd, file)?;
    }
    let process = Guarded::spawn(cmd, format!("valkey-server :{port}"))?;
    let addr = SocketAddr::from((options.bind, port));
    let mut instance = Instance {
        addr,
        tls: options.tls.as_ref().map(|m| m.client().clone()),
        process: Process::Local(LocalServer {
            process,
            log,
            dir,
            _material: options.tls.clone(),
        }),
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
            let stderr = process::tail(&fs::read_to_string(&stderr_path).unwrap_or_default(), 20);
            if let Some((setting, why)) = refused_setting(&stderr) {
                return Err(crate::error::UsageError(format!(
                    "valkey-server refuses the setting {setting} ({why}): if it came from \
                     --server-config or a suite file, fix its value or drop it"
                ))
                .into());
            }
            bail!(
                "valkey-server on port {port} exited during startup; last log lines:\n{tail}{}",
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nwhat it printed:\n{stderr}")
                }
            );
        }
        // The server that answers must be ours: with several runs on one machine, another
        // run's server can take the port while ours (slow under valgrind) is starting.
        if let Ok(mut client) =
            Client::connect(addr, instance.tls.as_ref(), Duration::from_millis(200))
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

/// The setting a server refused at startup and why, from what it printed:
/// `>>> 'maxmemory "lots"'` and the line after it.
fn refused_setting(stderr: &str) -> Option<(String, String)> {
    if !stderr.contains("FATAL CONFIG FILE ERROR") {
        return None;
    }
    let mut lines = stderr.lines().skip_while(|l| !l.starts_with(">>> "));
    let setting = lines.next()?.trim_start_matches(">>> ").trim().to_string();
    let why = lines.next().unwrap_or("no reason given").trim().to_string();
    Some((setting, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_the_server_refuses_is_named_with_why() {
        let printed = "\n*** FATAL CONFIG FILE ERROR (Version 8.1.1) ***\nReading the configuration file, at line 10\n>>> 'maxmemory \"lots\"'\nargument must be a memory value\n";
        assert_eq!(
            refused_setting(printed),
            Some((
                "'maxmemory \"lots\"'".to_string(),
                "argument must be a memory value".to_string()
            ))
        );
        assert_eq!(refused_setting("Address already in use"), None);
    }
}
