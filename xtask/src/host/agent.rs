//! The agent: a small process of ours on another host that runs that host's servers as its
//! children, so nothing outlives a run there. It is this same binary (`xtask agent`),
//! shipped to the host's work directory and started over the host's ssh connection; its
//! stdin and stdout are the control channel, one JSON object per line each way.
//!
//! The agent stops every server it started and exits when its stdin closes (the
//! coordinator ended, however it ended: ssh closes the channel), when nothing arrives for
//! its lease (the network dropped: the coordinator pings every second), or on SIGTERM,
//! SIGHUP or SIGINT. Its servers are started with `PR_SET_PDEATHSIG` like every child of
//! ours, so a `kill -9` of the agent takes them too. It signals no process but its own
//! children.
//!
//! This file is the protocol and the agent's side ([`serve`]); the coordinator's side is
//! [`super::link`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::instances::perf_record::{self, Recording};
use crate::instances::{self, Instance};

/// How long an agent waits for a line before it stops its servers and exits.
pub const LEASE: Duration = Duration::from_secs(5);

/// The longest request the agent accepts.
const MAX_REQUEST: usize = 1 << 20;

/// The longest reply the coordinator accepts (folded stacks are the largest).
pub const MAX_REPLY: usize = 64 << 20;

/// What the coordinator asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Keeps the lease; answers `null`.
    Ping,
    /// The host's [`Facts`].
    Facts,
    /// Starts `count` servers of the build `key` (under the work directory's `bin/`), on
    /// free ports from `base_port`, listening on `bind`; answers a list of [`Started`].
    Start {
        key: String,
        count: usize,
        base_port: u16,
        bind: IpAddr,
        cluster: bool,
        ready_timeout_ms: u64,
        config: BTreeMap<String, String>,
        /// TLS only, with this material (written into a directory of its own here).
        #[serde(default)]
        tls: Option<crate::tls::ServerPem>,
    },
    /// Whether server `id` still runs.
    Running { id: u64 },
    /// The last `lines` lines of server `id`'s log.
    LogTail { id: u64, lines: usize },
    /// The size of a file in server `id`'s directory, or `null`.
    FileLen { id: u64, name: String },
    /// The file system of server `id`'s directory.
    DirFs { id: u64 },
    /// Stops server `id` and removes its directory.
    Stop { id: u64 },
    /// This host's wall clock, ns since the Unix epoch (the coordinator estimates the
    /// offset between the clocks from it).
    Clock,
    /// Starts the load generator on this host, in the background; answers `null`.
    Load(Box<super::share::LoadShare>),
    /// The load's report once it has finished (`null` while it runs).
    LoadResult,
    /// Stops the load (interrupted) and forgets it.
    LoadStop,
    /// The load's last progress line ([`super::share::SeenProgress`]), `null` before the
    /// first.
    LoadProgress,
    /// Which perf event this host can sample: `{"event": ...}`, or `{"unusable": why}`.
    PerfEvent,
    /// Starts `perf record` on server `id` (one recording at a time).
    PerfStart {
        id: u64,
        event: String,
        frequency: u32,
    },
    /// Stops the recording and answers its folded stacks.
    PerfFinish { id: u64 },
    /// Builds the source shipped under `key` into `into` ([`super::build`]), or finds it
    /// built there; answers a [`Built`].
    Build {
        key: String,
        into: String,
        options: bench_core::result::BuildOptions,
    },
}

pub use super::build::{Built, SOURCE, built_key};

/// Now, ns since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: u64,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A server the agent started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub id: u64,
    pub port: u16,
    pub pid: u32,
    pub dir: PathBuf,
}

/// A host's facts, as its agent reads them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Facts {
    /// The agent protocol it speaks ([`super::agent_binary::PROTOCOL`]; 0: one from before
    /// there was a number).
    #[serde(default)]
    pub protocol: u32,
    pub info: HostInfo,
    /// The CPUs the agent may run on, each with its core's CPUs.
    pub cpus: Vec<(usize, Vec<usize>)>,
}

impl Facts {
    /// This machine's.
    pub fn here() -> Facts {
        let machine = super::machine();
        Facts {
            protocol: super::agent_binary::PROTOCOL,
            info: super::info(),
            cpus: machine
                .core_of
                .into_iter()
                .map(|(cpu, core)| (cpu, core.into_iter().collect()))
                .collect(),
        }
    }

    /// As a placement check sees a machine.
    pub fn machine(&self) -> bench_core::placement::Machine {
        bench_core::placement::Machine {
            allowed: self.cpus.iter().map(|(cpu, _)| *cpu).collect(),
            core_of: self
                .cpus
                .iter()
                .map(|(cpu, core)| (*cpu, core.iter().copied().collect()))
                .collect(),
        }
    }
}

/// Where an agent keeps a build's binaries: `<work dir>/bin/<key>/`.
pub fn bin_dir(work_dir: &Path, key: &str) -> PathBuf {
    work_dir.join("bin").join(key)
}

/// Where an agent's servers keep their directories.
pub fn scratch(work_dir: &Path) -> PathBuf {
    work_dir.join("scratch")
}

/// A key names a build: lowercase hex, as [`super::remote`] makes them.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The agent's side: answers requests from stdin on stdout until stdin closes, the lease
/// runs out or `shutdown` triggers; then its servers are stopped (dropped) and it returns.
pub fn serve(work_dir: &Path, lease: Duration, shutdown: &Shutdown) -> anyhow::Result<()> {
    if !work_dir.is_absolute() {
        bail!(
            "agent --work-dir {}: give an absolute path",
            work_dir.display()
        );
    }
    let scratch = scratch(work_dir);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    instances::sweep_stale(&scratch);
    // Triggered when stdin ends, so a start in progress stops too.
    let closed = Shutdown::new();
    let lines = read_lines_until(std::io::stdin(), MAX_REQUEST, Some(closed.clone()));
    let mut agent = Agent {
        work_dir: work_dir.to_path_buf(),
        servers: BTreeMap::new(),
        next_id: 1,
        shutdown: closed.clone(),
        load: None,
        perf: None,
        progress: Default::default(),
    };
    let mut out = std::io::stdout().lock();
    loop {
        if shutdown.is_triggered() || closed.is_triggered() {
            break;
        }
        let line = match lines.recv_timeout(lease) {
            Ok(Ok(line)) => line,
            Ok(Err(why)) => {
                eprintln!("agent: {why}; stopping");
                break;
            }
            Err(RecvTimeoutError::Timeout) => {
                eprintln!("agent: nothing heard for {lease:?}; stopping its servers");
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let reply = match serde_json::from_str::<Envelope>(&line) {
            Ok(envelope) => {
                let seq = envelope.seq;
                match agent.handle(envelope.request) {
                    Ok(ok) => Reply {
                        seq,
                        ok: Some(ok),
                        error: None,
                    },
                    Err(e) => Reply {
                        seq,
                        ok: None,
                        error: Some(format!("{e:#}")),
                    },
                }
            }
            Err(e) => Reply {
                seq: 0,
                ok: None,
                error: Some(format!("unreadable request: {e}")),
            },
        };
        let mut text = serde_json::to_string(&reply)?;
        text.push('\n');
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            break; // the coordinator is gone
        }
    }
    drop(agent); // stops every server
    Ok(())
}

/// Lines from `input` on a channel (a reader thread); a line over `max` bytes is an error
/// and ends it.
pub fn read_lines(
    input: impl Read + Send + 'static,
    max: usize,
) -> Receiver<Result<String, String>> {
    read_lines_until(input, max, None)
}

/// [`read_lines`], triggering `closed` (if any) when the input ends.
fn read_lines_until(
    input: impl Read + Send + 'static,
    max: usize,
    closed: Option<Shutdown>,
) -> Receiver<Result<String, String>> {
    // Bounded: a peer that writes faster than we read waits, it cannot fill our memory.
    let (tx, rx) = mpsc::sync_channel(64);
    thread::spawn(move || {
        let mut input = BufReader::new(input);
        loop {
            let mut line = Vec::new();
            match (&mut input)
                .take(max as u64 + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => {
                    if let Some(closed) = &closed {
                        closed.trigger();
                    }
                    return;
                }
                Ok(_) if line.len() > max => {
                    let _ = tx.send(Err(format!("a line over {max} bytes")));
                    return;
                }
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    if tx.send(Ok(text)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The agent's state: the servers it runs.
struct Agent {
    work_dir: PathBuf,
    servers: BTreeMap<u64, Instance>,
    next_id: u64,
    shutdown: Shutdown,
    /// The load running in the background, and how to stop it.
    load: Option<(
        thread::JoinHandle<Result<bench_core::loadgen::Report, String>>,
        Shutdown,
    )>,
    /// `perf record` on one of its servers, by the server's id.
    perf: Option<(u64, Recording)>,
    /// The running load's last progress.
    progress: std::sync::Arc<std::sync::Mutex<Option<super::share::SeenProgress>>>,
}

impl Drop for Agent {
    /// The load and perf stop before the servers.
    fn drop(&mut self) {
        self.perf = None;
        if let Some((handle, stop)) = self.load.take() {
            stop.trigger();
            let _ = handle.join();
        }
    }
}

impl Agent {
    fn handle(&mut self, request: Request) -> anyhow::Result<Value> {
        Ok(match request {
            Request::Ping => Value::Null,
            Request::Facts => serde_json::to_value(Facts::here())?,
            Request::Start {
                key,
                count,
                base_port,
                bind,
                cluster,
                ready_timeout_ms,
                config,
                tls,
            } => {
                if !valid_key(&key) {
                    bail!("build key {key:?}: expected hex digits");
                }
                if count == 0 || count > 64 {
                    bail!("count {count}: expected 1 to 64 servers");
                }
                if let Err(e) = TcpListener::bind(SocketAddr::new(bind, 0)) {
                    bail!("cannot listen on {bind} here ({e}): is it this host's address?");
                }
                let server = bin_dir(&self.work_dir, &key).join("valkey-server");
                if !server.is_file() {
                    bail!("no build {key} here ({} is missing)", server.display());
                }
                let tls = match tls {
                    None => None,
                    Some(pem) => {
                        let dir = instances::scratch_dir_in(&scratch(&self.work_dir), "tls")?;
                        Some(std::sync::Arc::new(crate::tls::Material::from_pem(
                            &pem, dir,
                        )?))
                    }
                };
                let options = instances::Options {
                    base_port,
                    config,
                    tls,
                    ready_timeout: Duration::from_millis(ready_timeout_ms.min(600_000)),
                    scratch: scratch(&self.work_dir),
                    cluster,
                    bind,
                    ..Default::default()
                };
                let started = instances::start(&server, count, &options, &self.shutdown)?;
                let mut out = Vec::new();
                for instance in started {
                    let id = self.next_id;
                    self.next_id += 1;
                    out.push(Started {
                        id,
                        port: instance.port(),
                        pid: instance.pid(),
                        dir: instance.dir().to_path_buf(),
                    });
                    self.servers.insert(id, instance);
                }
                serde_json::to_value(out)?
            }
            Request::Running { id } => Value::Bool(self.server(id)?.is_running()),
            Request::LogTail { id, lines } => {
                Value::String(self.server(id)?.log_tail(lines.min(1000)))
            }
            Request::FileLen { id, name } => {
                if name.is_empty()
                    || name.starts_with('.')
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                {
                    bail!("file name {name:?}: expected a plain name such as dump.rdb");
                }
                serde_json::to_value(self.server(id)?.file_len(&name))?
            }
            Request::DirFs { id } => Value::String(self.server(id)?.dir_fs()),
            Request::Stop { id } => {
                if self.perf.as_ref().is_some_and(|(of, _)| *of == id) {
                    self.perf = None; // perf first
                }
                self.servers.remove(&id);
                Value::Null
            }
            Request::Clock => Value::from(unix_ns()),
            Request::Load(share) => {
                if self.load.is_some() {
                    bail!("a load is running here already");
                }
                let stop = Shutdown::new();
                let (options, given) = (share.options()?, stop.clone());
                let seen = self.progress.clone();
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let handle = thread::Builder::new()
                    .name("agent-load".into())
                    .spawn(move || {
                        bench_core::loadgen::run(
                            &share.addrs,
                            &share.workload,
                            &options,
                            &given,
                            |p| *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.into()),
                        )
                        .map_err(|e| e.to_string())
                    })?;
                self.load = Some((handle, stop));
                Value::Null
            }
            Request::LoadResult => match self.load.take() {
                None => bail!("no load here"),
                Some((handle, stop)) if !handle.is_finished() => {
                    self.load = Some((handle, stop));
                    Value::Null
                }
                Some((handle, _)) => match handle.join() {
                    Ok(Ok(report)) => serde_json::to_value(report)?,
                    Ok(Err(why)) => bail!("the load failed: {why}"),
                    Err(_) => bail!("the load generator panicked"),
                },
            },
            Request::PerfEvent => match perf_record::perf_event(&self.shutdown) {
                Ok(event) => serde_json::json!({ "event": event }),
                // What the user fixes (perf missing, forbidden) is a usage error there;
                // anything else (perf stat timing out) an error of the run.
                Err(why) if why.is::<crate::error::UsageError>() => {
                    serde_json::json!({ "unusable": format!("{why:#}") })
                }
                Err(why) => return Err(why),
            },
            Request::PerfStart {
                id,
                event,
                frequency,
            } => {
                self.perf = None;
                let pid = self.server(id)?.pid();
                let dir = instances::scratch_dir_in(&scratch(&self.work_dir), "profile")?;
                self.perf = Some((id, Recording::start(pid, &event, frequency, dir)?));
                Value::Null
            }
            Request::PerfFinish { id } => match self.perf.take_if(|(of, _)| *of == id) {
                Some((_, recording)) => Value::String(recording.finish(&self.shutdown)?),
                None => bail!("no recording of server {id} here"),
            },
            Request::Build { key, into, options } => serde_json::to_value(super::build::build(
                &self.work_dir,
                &key,
                &into,
                &options,
                &self.shutdown,
            )?)?,
            Request::LoadProgress => {
                serde_json::to_value(*self.progress.lock().unwrap_or_else(|e| e.into_inner()))?
            }
            Request::LoadStop => {
                if let Some((handle, stop)) = self.load.take() {
                    stop.trigger();
                    let _ = handle.join();
                }
                Value::Null
            }
        })
    }

    fn server(&mut self, id: u64) -> anyhow::Result<&mut Instance> {
        self.servers
            .get_mut(&id)
            .with_context(|| format!("no server {id} here"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_line_each() {
        let envelope = Envelope {
            seq: 7,
            request: Request::FileLen {
                id: 3,
                name: "dump.rdb".into(),
            },
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert_eq!(
            text,
            r#"{"seq":7,"op":"file_len","id":3,"name":"dump.rdb"}"#
        );
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back.seq, 7);
        assert!(matches!(back.request, Request::FileLen { id: 3, .. }));
        assert!(serde_json::from_str::<Envelope>(r#"{"seq":1,"op":"shell","cmd":"rm"}"#).is_err());
    }

    #[test]
    fn keys_are_hex_only() {
        assert!(valid_key("06aeb930ac1cb66c"));
        assert!(!valid_key(""));
        assert!(!valid_key("../x"));
        assert!(!valid_key(&"a".repeat(65)));
    }

    #[test]
    fn an_agent_from_before_the_protocol_number_reads_as_protocol_0() {
        let facts: Facts = serde_json::from_value(serde_json::json!({
            "info": super::super::info(),
            "cpus": [[0, [0]]],
        }))
        .unwrap();
        assert_eq!(facts.protocol, 0);
        assert_ne!(
            facts.protocol,
            super::super::agent_binary::PROTOCOL,
            "so it is refused"
        );
    }

    #[test]
    fn facts_say_which_cpus_share_a_core() {
        let facts = Facts {
            protocol: super::super::agent_binary::PROTOCOL,
            info: super::super::info(),
            cpus: vec![(0, vec![0, 2]), (2, vec![0, 2])],
        };
        let machine = facts.machine();
        assert_eq!(machine.allowed.iter().copied().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(machine.core_of.len(), 2);
    }
}
