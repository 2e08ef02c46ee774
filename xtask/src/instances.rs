//! Local valkey-server instances: free ports, own directories, readiness, teardown.
//!
//! An [`Instance`] owns its process (through [`Guarded`]) and its temporary directory;
//! dropping it kills the server and removes the directory.
//!
//! Instance directories live under the scratch root ([`scratch_root`]): a real disk by
//! default (`$XDG_CACHE_HOME/valkey-bench/scratch`), not `$TMPDIR`, which is tmpfs on
//! current Debian and would turn the sync suite's disk mode into a memory copy. Each
//! directory's name carries the pid of the xtask that made it, so one killed outright
//! (destructors skipped) is swept by the next run ([`sweep_stale`]).

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
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
}

/// `VALKEY_BENCH_SCRATCH` if set, else `<cache>/scratch`: where servers keep their files.
pub fn scratch_root() -> PathBuf {
    std::env::var_os("VALKEY_BENCH_SCRATCH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project::cache_dir().join("scratch"))
}

/// The prefix of our instance directories: `valkey-bench-<xtask pid>-<port>-`.
const DIR_PREFIX: &str = "valkey-bench-";

/// A scratch directory of ours (`<kind>` names what it holds: `profile`, `callgrind`,
/// ...), under [`scratch_root`] and named for this process, so [`sweep_stale`] finds it if
/// we are killed before it is removed.
pub fn scratch_dir(kind: &str) -> anyhow::Result<tempfile::TempDir> {
    let root = scratch_root();
    fs::create_dir_all(&root)
        .with_context(|| format!("creating the scratch directory {}", root.display()))?;
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-{kind}-", owner(&root)?))
        .tempdir_in(&root)
        .with_context(|| format!("creating a {kind} directory under {}", root.display()))
}

/// TLS material for a deployment that asks for it (`mode`), in a scratch directory.
pub fn tls_material(
    mode: Option<bench_core::transport::TlsMode>,
) -> anyhow::Result<Option<Arc<crate::tls::Material>>> {
    mode.map(|m| crate::tls::Material::generate(m, scratch_dir("tls")?).map(Arc::new))
        .transpose()
}

/// This process's owner token in `root` (`<pid>.<8 hex>`), the first part of the name of
/// every directory it makes there, and the lock it holds for its whole life on
/// `root/.valkey-bench-<token>.owner`. The pid alone cannot say whether a directory's owner
/// lives when the cache is shared (NFS, a container's bind mount: another host or pid
/// namespace); a lock held by a live owner anywhere on the kernel (or the NFS server)
/// can.
fn owner(root: &Path) -> anyhow::Result<String> {
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
    /// How to connect, when the server speaks TLS only.
    pub tls: Option<Tls>,
    dir: tempfile::TempDir,
    /// Its certificates: removed after the server stops.
    _material: Option<Arc<crate::tls::Material>>,
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
        Ok(Client::connect(
            self.addr,
            self.tls.as_ref(),
            Duration::from_secs(30),
        )?)
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
        if !port_is_free(candidate)
            || (options.cluster
                && candidate
                    .checked_add(CLUSTER_BUS_OFFSET)
                    .is_none_or(|bus| !port_is_free(bus)))
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
    let log = dir.path().join("valkey.log");
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
    cmd.args(["--bind", "127.0.0.1"])
        .args(["--protected-mode", "yes"])
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
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut instance = Instance {
        process,
        addr,
        log,
        tls: options.tls.as_ref().map(|m| m.client().clone()),
        dir,
        _material: options.tls.clone(),
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
