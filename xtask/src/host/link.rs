//! The coordinator's side of an agent ([`super::agent`]): [`AgentLink`] sends requests
//! down the ssh channel and keeps the agent's lease; [`RemoteServer`] is what an
//! [`Instance`] keeps for a server the agent runs.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use bench_core::shutdown::Shutdown;
use serde_json::Value;

use super::agent::{Envelope, Facts, Reply, Request, Started, read_lines};
use crate::instances::{self, Instance, RemoteProcess};
use crate::process::Guarded;

/// How often the coordinator pings an idle agent.
const PING_EVERY: Duration = Duration::from_secs(1);

/// How long the coordinator waits for a reply, past the request's own time (a start's
/// readiness timeout).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The coordinator's end of one agent: requests go to its stdin, replies come from its
/// stdout. Dropping it closes the channel, which stops the agent's servers.
#[derive(Debug)]
pub struct AgentLink {
    host: String,
    channel: Mutex<Channel>,
    /// The last lines the agent (and ssh) wrote on stderr, for messages.
    stderr: Arc<Mutex<VecDeque<String>>>,
    process: Mutex<Guarded>,
}

#[derive(Debug)]
struct Channel {
    stdin: Option<ChildStdin>,
    replies: Receiver<Result<String, String>>,
    seq: u64,
    /// Set once the channel failed: every later call fails at once.
    broken: Option<String>,
}

impl AgentLink {
    /// Starts the agent with `cmd` (ssh running it on `host`) and keeps its lease.
    pub fn start(mut cmd: Command, host: &str) -> anyhow::Result<Arc<AgentLink>> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = Guarded::spawn(cmd, format!("the agent on {host}"))?;
        let stdin = process.take_stdin().context("the agent's stdin")?;
        let stdout = process.take_stdout().context("the agent's stdout")?;
        let stderr = process.take_stderr().context("the agent's stderr")?;
        let kept = Arc::new(Mutex::new(VecDeque::new()));
        let sink = kept.clone();
        thread::spawn(move || {
            let mut stderr = BufReader::new(stderr);
            loop {
                let mut bytes = Vec::new();
                // At most 4 KiB kept of a line; the rest is read and dropped.
                match (&mut stderr).take(4096).read_until(b'\n', &mut bytes) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&bytes).trim_end().to_string();
                let mut lines = sink.lock().unwrap_or_else(|e| e.into_inner());
                if lines.len() == 20 {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        let link = Arc::new(AgentLink {
            host: host.to_string(),
            channel: Mutex::new(Channel {
                stdin: Some(stdin),
                replies: read_lines(stdout, super::agent::MAX_REPLY),
                seq: 0,
                broken: None,
            }),
            stderr: kept,
            process: Mutex::new(process),
        });
        let weak = Arc::downgrade(&link);
        thread::spawn(move || keep_lease(weak));
        Ok(link)
    }

    /// The host's name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// One request and its reply, within `extra` plus [`REPLY_TIMEOUT`].
    pub fn call(&self, request: &Request, extra: Duration) -> anyhow::Result<Value> {
        let mut channel = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &channel.broken {
            bail!("the agent on {} is gone ({why})", self.host);
        }
        match self.exchange(&mut channel, request, extra) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(refused)) => bail!("on {}: {refused}", self.host),
            Err(why) => {
                channel.broken = Some(why.clone());
                channel.stdin = None;
                bail!(
                    "the agent on {} is gone ({why}){}",
                    self.host,
                    self.stderr_tail()
                )
            }
        }
    }

    /// `Err` when the channel failed, `Ok(Err)` when the agent refused the request.
    fn exchange(
        &self,
        channel: &mut Channel,
        request: &Request,
        extra: Duration,
    ) -> Result<Result<Value, String>, String> {
        channel.seq += 1;
        let seq = channel.seq;
        let mut line = serde_json::to_string(&Envelope {
            seq,
            request: request.clone(),
        })
        .map_err(|e| e.to_string())?;
        line.push('\n');
        let stdin = channel.stdin.as_mut().ok_or("its channel is closed")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to it: {e}"))?;
        let deadline = std::time::Instant::now() + REPLY_TIMEOUT + extra;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let text = match channel.replies.recv_timeout(left) {
                Ok(Ok(text)) => text,
                Ok(Err(why)) => return Err(why),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no reply within {:?}", REPLY_TIMEOUT + extra));
                }
                Err(RecvTimeoutError::Disconnected) => return Err("its channel closed".into()),
            };
            let reply: Reply = serde_json::from_str(&text)
                .map_err(|e| format!("an unreadable reply ({e}): {text:.200}"))?;
            if reply.seq > seq || reply.seq == 0 {
                return Err(format!("a reply to no request ({text:.200})"));
            }
            if reply.seq < seq {
                continue; // a reply to an abandoned request (a timed-out one)
            }
            return Ok(match (reply.ok, reply.error) {
                (_, Some(error)) => Err(error),
                (Some(value), None) => Ok(value),
                (None, None) => Ok(Value::Null),
            });
        }
    }

    fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            String::new()
        } else {
            let text: Vec<&str> = lines.iter().map(String::as_str).collect();
            format!("; it said:\n{}", text.join("\n"))
        }
    }

    /// Starts `count` servers there; each stops when its [`Instance`] is dropped.
    pub fn start_servers(
        self: &Arc<AgentLink>,
        key: &str,
        build_note: &str,
        count: usize,
        options: &instances::Options,
    ) -> anyhow::Result<Vec<Instance>> {
        let reply = self.call(
            &Request::Start {
                key: key.to_string(),
                count,
                base_port: options.base_port,
                bind: options.bind,
                cluster: options.cluster,
                ready_timeout_ms: options.ready_timeout.as_millis() as u64,
                config: options.config.clone(),
                tls: options.tls.as_ref().map(|m| m.server_pem()).transpose()?,
            },
            options.ready_timeout * count as u32,
        )?;
        let started: Vec<Started> =
            serde_json::from_value(reply).context("the agent's list of servers")?;
        if started.len() != count {
            bail!(
                "the agent on {} started {} servers, not {count}",
                self.host,
                started.len()
            );
        }
        Ok(started
            .into_iter()
            .map(|s| {
                let mut instance = Instance::remote(
                    SocketAddr::new(options.bind, s.port),
                    Box::new(RemoteServer {
                        link: self.clone(),
                        id: s.id,
                        pid: s.pid,
                        dir: s.dir,
                        build_note: build_note.to_string(),
                    }),
                );
                instance.tls = options.tls.as_ref().map(|m| m.client().clone());
                instance
            })
            .collect())
    }

    /// The perf event that host can sample; a host where perf cannot run is a usage
    /// error naming it, with the fix.
    pub fn perf_event(&self) -> anyhow::Result<&'static str> {
        let reply = self.call(&Request::PerfEvent, Duration::from_secs(30))?;
        if let Some(why) = reply.get("unusable").and_then(Value::as_str) {
            bail!(crate::error::UsageError(format!(
                "host {:?}: {why}",
                self.host
            )));
        }
        let event = reply.get("event").and_then(Value::as_str).unwrap_or("");
        crate::instances::perf_record::EVENTS
            .into_iter()
            .find(|e| *e == event)
            .with_context(|| format!("the agent on {} answered {reply:.200}", self.host))
    }

    /// The host's facts.
    pub fn facts(&self) -> anyhow::Result<Facts> {
        Ok(serde_json::from_value(
            self.call(&Request::Facts, Duration::ZERO)?,
        )?)
    }
}

/// Pings the agent while the link lives and is idle.
fn keep_lease(link: Weak<AgentLink>) {
    loop {
        thread::sleep(PING_EVERY);
        let Some(link) = link.upgrade() else { return };
        // Busy with a request: that keeps the lease itself.
        let Ok(mut channel) = link.channel.try_lock() else {
            continue;
        };
        if channel.broken.is_some() {
            return;
        }
        if let Err(why) = link.exchange(&mut channel, &Request::Ping, Duration::ZERO) {
            channel.broken = Some(why);
            channel.stdin = None;
            return;
        }
    }
}

impl AgentLink {
    /// Closes the channel: the agent stops its servers and exits; after a grace period
    /// the ssh process is killed (the agent's lease then ends it). Later calls fail at
    /// once. Idempotent.
    pub fn close(&self) {
        {
            let mut channel = self.channel.lock().unwrap_or_else(|e| e.into_inner());
            channel.stdin = None;
            channel.broken.get_or_insert_with(|| "closed".into());
        }
        let mut process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        let _ = process.wait(&Shutdown::new(), Some(Duration::from_secs(10)));
    }
}

impl Drop for AgentLink {
    fn drop(&mut self) {
        self.close();
    }
}

/// A server an agent runs: asked through the link; stopped when dropped.
#[derive(Debug)]
pub struct RemoteServer {
    link: Arc<AgentLink>,
    id: u64,
    pid: u32,
    dir: PathBuf,
    build_note: String,
}

impl RemoteProcess for RemoteServer {
    fn host(&self) -> &str {
        self.link.host()
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn is_running(&self) -> bool {
        self.link
            .call(&Request::Running { id: self.id }, Duration::ZERO)
            .is_ok_and(|v| v == Value::Bool(true))
    }

    fn log_tail(&self, lines: usize) -> String {
        match self
            .link
            .call(&Request::LogTail { id: self.id, lines }, Duration::ZERO)
        {
            Ok(Value::String(text)) => text,
            Ok(other) => format!("(an unexpected reply: {other})"),
            Err(e) => format!("(the log on {} could not be read: {e:#})", self.host()),
        }
    }

    fn file_len(&self, name: &str) -> Option<u64> {
        self.link
            .call(
                &Request::FileLen {
                    id: self.id,
                    name: name.to_string(),
                },
                Duration::ZERO,
            )
            .ok()
            .and_then(|v| v.as_u64())
    }

    fn build_note(&self) -> &str {
        &self.build_note
    }

    fn perf_start(&self, event: &str, frequency: u32) -> anyhow::Result<()> {
        self.link.call(
            &Request::PerfStart {
                id: self.id,
                event: event.to_string(),
                frequency,
            },
            Duration::ZERO,
        )?;
        Ok(())
    }

    fn perf_finish(&self) -> anyhow::Result<String> {
        match self
            .link
            .call(&Request::PerfFinish { id: self.id }, Self::PERF_FINISH)?
        {
            Value::String(folded) => Ok(folded),
            other => bail!("the agent on {} answered {other:.200}", self.host()),
        }
    }

    fn dir_fs(&self) -> String {
        match self
            .link
            .call(&Request::DirFs { id: self.id }, Duration::ZERO)
        {
            Ok(Value::String(fs)) => fs,
            _ => "unknown".into(),
        }
    }
}

impl RemoteServer {
    /// How long stopping perf and folding its samples may take there.
    const PERF_FINISH: Duration = Duration::from_secs(660);
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        let _ = self
            .link
            .call(&Request::Stop { id: self.id }, Duration::ZERO);
    }
}
