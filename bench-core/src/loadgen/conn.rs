//! One connection's loop: keep `pipeline` requests in flight (closed loop) or send on the
//! schedule (open loop), and time every reply against its request's start, or its
//! intended start in open loop.
//!
//! Steady state allocates nothing: the write buffer, read buffer and in-flight queue are
//! reused, requests are assembled from pre-encoded segments, replies are scanned in place.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::schedule::Schedule;
use super::stats::{HIGHEST_US, LATE_US, WorkerStats};
use super::{Plan, Shared};
use crate::distribution::{KeySampler, SizeSampler, worker_rng};
use crate::resp::{self, ParseError, Reply};
use crate::workload::Fill;

/// How often a waiting connection looks at the clock and the stop flags.
const TICK: Duration = Duration::from_millis(50);
/// tokio's timer fires on millisecond ticks, so an open-loop send due within this window is
/// awaited by yielding (a busy poll that still serves the socket) instead of a timer:
/// sub-millisecond send precision at the cost of CPU while the schedule is dense.
const SPIN_WINDOW: Duration = Duration::from_millis(2);
/// How long in-flight replies may take after sending stops.
const DRAIN: Duration = Duration::from_secs(5);
/// How long to keep trying to reconnect after a connection drops.
const RECONNECT_FOR: Duration = Duration::from_secs(3);

struct Pending {
    /// Start (intended start in open loop), ns after the plan's origin: one u64
    /// subtraction per reply instead of `Instant` arithmetic.
    start_ns: u64,
    template: u16,
    measured: bool,
}

pub(super) struct Connection {
    pub index: u32,
    pub addr: SocketAddr,
    pub stream: TcpStream,
    pub plan: Arc<Plan>,
    pub shared: Arc<Shared>,
    pub stats: Rc<RefCell<WorkerStats>>,
    /// Resumes a reply that arrived in part (a large LRANGE over many reads).
    pub scanner: RefCell<resp::Scanner>,
}

impl Connection {
    /// Runs the connection, then tells subscribers one publisher fewer is left.
    pub async fn run(self, start: Instant) {
        let shared = Arc::clone(&self.shared);
        self.drive(start).await;
        shared.publishers_left.fetch_sub(1, Ordering::SeqCst);
    }

    async fn drive(mut self, start: Instant) {
        let plan = Arc::clone(&self.plan);
        // Three streams per connection, so a template's key draws do not shift the mix.
        let stream_id = u64::from(self.index) * 3;
        let mut rng = worker_rng(plan.seed, stream_id);
        let mut key_rng = worker_rng(plan.seed, stream_id + 1);
        let mut member_rng = worker_rng(plan.seed, stream_id + 2);
        // Validated by Plan::new, so these cannot fail here.
        let mut keys = KeySampler::new(
            &plan.keys,
            plan.keyspace,
            u64::from(self.index),
            u64::from(plan.connections),
        )
        .expect("validated key distribution");
        let mut members = KeySampler::new(
            &crate::distribution::KeyDistribution::Uniform,
            plan.keyspace,
            0,
            1,
        )
        .expect("validated keyspace");
        let sizes = SizeSampler::new(&plan.values);
        let schedule = plan
            .rate
            .map(|r| Schedule::new(r, plan.connections, self.index));
        let mut sent_k: u64 = 0;
        let mut inflight: VecDeque<Pending> = VecDeque::with_capacity(plan.pipeline);
        let mut wbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut rbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut sending = true;
        let mut stopped_at: Option<Instant> = None;
        let tick = tokio::time::sleep(TICK);
        tokio::pin!(tick);
        // Every connection starts at the same instant; nothing before it is measured.
        tokio::time::sleep_until(start.into()).await;

        loop {
            let now = Instant::now();
            if sending && self.should_stop(now) {
                sending = false;
                stopped_at = Some(now);
            }
            if !sending {
                if inflight.is_empty() {
                    return;
                }
                if stopped_at.is_some_and(|t| now.duration_since(t) > DRAIN) {
                    self.stats
                        .borrow_mut()
                        .error("no reply before the run ended");
                    return;
                }
            }

            // Fill the window.
            let mut next_due = None;
            // Closed loop sends the whole pass "now": its time arithmetic is done once.
            let now_ns = now.saturating_duration_since(plan.origin).as_nanos() as u64;
            let now_measured = now >= plan.measure_from;
            if sending {
                while inflight.len() < plan.pipeline {
                    let (intended, intended_ns, measured) = match &schedule {
                        Some(s) => {
                            let due = start + s.due(sent_k);
                            if due > now {
                                next_due = Some(due);
                                break;
                            }
                            let ns = due.saturating_duration_since(plan.origin).as_nanos() as u64;
                            (due, ns, due >= plan.measure_from)
                        }
                        None => (now, now_ns, now_measured),
                    };
                    if plan.end.is_some_and(|end| intended >= end) || !self.claim() {
                        sending = false;
                        stopped_at = Some(now);
                        break;
                    }
                    let t = plan.pick(&mut rng);
                    if let Some(prepared) = &plan.prepared[t] {
                        prepared.encode(
                            &mut wbuf,
                            &mut || keys.sample(&mut key_rng),
                            &mut || members.sample(&mut member_rng),
                            intended_ns,
                        );
                    } else {
                        let len = sizes.sample(&mut rng) as usize;
                        let score = if plan.templates[t].uses_score {
                            rng.random_range(0..plan.keyspace)
                        } else {
                            0
                        };
                        plan.templates[t].encode(
                            &mut wbuf,
                            &mut || keys.sample(&mut key_rng),
                            &mut || members.sample(&mut member_rng),
                            &Fill {
                                value: &plan.value,
                                value_len: len,
                                score,
                                stamp: intended_ns,
                            },
                        );
                    }
                    if schedule.is_some() && measured {
                        let lag = now.saturating_duration_since(intended).as_micros() as u64;
                        let mut stats = self.stats.borrow_mut();
                        stats.send_lag.saturating_record(lag.max(1));
                        if lag >= LATE_US {
                            stats.late += 1;
                        }
                    }
                    inflight.push_back(Pending {
                        start_ns: intended_ns,
                        template: t as u16,
                        measured,
                    });
                    sent_k += 1;
                }
            }
            if !wbuf.is_empty() {
                if let Err(e) = self.stream.write_all(&wbuf).await {
                    wbuf.clear();
                    if !self.reconnect(e, &mut inflight, &mut rbuf).await {
                        return;
                    }
                    continue;
                }
                wbuf.clear();
            }

            // Wait for replies, the next due send, or a tick.
            let spin = next_due.is_some_and(|due| due.saturating_duration_since(now) < SPIN_WINDOW);
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(64 * 1024);
            }
            if spin {
                if inflight.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                let read = tokio::select! {
                    biased;
                    r = self.stream.read_buf(&mut rbuf) => r,
                    () = tokio::task::yield_now() => continue,
                };
                if !self.after_read(read, &mut rbuf, &mut inflight).await {
                    return;
                }
                continue;
            }
            // Re-arm the timer only when a send is due sooner than it fires, or when it has
            // fired: re-arming it on every pass cost ~2% of the generator's CPU.
            let armed = tick.deadline().into_std();
            let deadline = match next_due {
                Some(due) if due < now + TICK + SPIN_WINDOW => Some(due - SPIN_WINDOW),
                _ if armed <= now => Some(now + TICK),
                _ => None,
            };
            if let Some(deadline) = deadline.filter(|&d| d != armed) {
                tick.as_mut().reset(deadline.into());
            }
            if inflight.is_empty() {
                (&mut tick).await;
                continue;
            }
            let read = tokio::select! {
                biased;
                r = self.stream.read_buf(&mut rbuf) => r,
                () = &mut tick => continue,
            };
            if !self.after_read(read, &mut rbuf, &mut inflight).await {
                return;
            }
        }
    }

    /// Handles a read's outcome: records the replies, or reconnects. False: give up.
    async fn after_read(
        &mut self,
        read: io::Result<usize>,
        rbuf: &mut Vec<u8>,
        inflight: &mut VecDeque<Pending>,
    ) -> bool {
        let got = match read {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )),
            Ok(n) => Ok(n),
            Err(e) => Err(e),
        };
        if let Err(e) = got {
            return self.reconnect(e, inflight, rbuf).await;
        }
        let received = Instant::now();
        if let Err(offset) = self.take_replies(rbuf, inflight, received) {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid RESP from the server at byte {offset}"),
            );
            return self.reconnect(e, inflight, rbuf).await;
        }
        true
    }

    fn should_stop(&self, now: Instant) -> bool {
        self.shared.aborted.load(Ordering::Relaxed)
            || self.shared.shutdown.is_triggered()
            || self.plan.end.is_some_and(|end| now >= end)
    }

    /// Takes one request from the request budget (request-count runs).
    fn claim(&self) -> bool {
        self.shared.budget.fetch_sub(1, Ordering::Relaxed) > 0
    }

    /// Scans every whole reply in `rbuf`, records it, and keeps the unread tail.
    fn take_replies(
        &self,
        rbuf: &mut Vec<u8>,
        inflight: &mut VecDeque<Pending>,
        received: Instant,
    ) -> Result<(), usize> {
        let mut pos = 0;
        let mut stats = self.stats.borrow_mut();
        let mut done = 0u64;
        // Replies read together arrived together: one timestamp, one second of the series.
        let received_ns = received
            .saturating_duration_since(self.plan.origin)
            .as_nanos() as u64;
        let second = received
            .saturating_duration_since(self.plan.measure_from)
            .as_secs() as usize;
        // Requests sent in one pass share a start, so consecutive replies mostly share a
        // latency: record runs of equal (template, µs) with one histogram update each.
        let mut run = Run::default();
        loop {
            let (reply, used) = match self.scanner.borrow_mut().scan(&rbuf[pos..]) {
                Ok(r) => r,
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Invalid { offset }) => return Err(pos + offset),
            };
            let Some(p) = inflight.pop_front() else {
                // A reply nobody asked for (e.g. a push): ignore it.
                pos += used;
                continue;
            };
            let t = usize::from(p.template);
            if p.measured {
                let us = (received_ns.saturating_sub(p.start_ns) / 1000).clamp(1, HIGHEST_US);
                if run.count > 0 && (run.template, run.us) != (t, us) {
                    run.flush(&mut stats, second);
                }
                run.template = t;
                run.us = us;
                run.count += 1;
                let template = &self.plan.templates[t];
                match reply {
                    Reply::Error => {
                        let kind = error_kind(&rbuf[pos + 1..pos + used]);
                        stats.commands[t].errors += 1;
                        stats.second(second).errors += 1;
                        stats.error(kind);
                    }
                    reply => {
                        let (hits, misses) =
                            resp::hits_and_misses(template.read, reply, &rbuf[pos..pos + used]);
                        stats.commands[t].hits += hits;
                        stats.commands[t].misses += misses;
                    }
                }
                if matches!((reply, self.plan.expected_len[t]), (Reply::Bulk(n), Some(want)) if n != want)
                {
                    stats.error("check: value of unexpected size");
                }
                done += 1;
            }
            pos += used;
        }
        run.flush(&mut stats, second);
        drop(stats);
        if done > 0 {
            self.shared.completed.fetch_add(done, Ordering::Relaxed);
            self.shared.last_reply_ns.fetch_max(
                received
                    .saturating_duration_since(self.plan.origin)
                    .as_nanos() as u64,
                Ordering::Relaxed,
            );
        }
        // The scanner is between replies here (it resets itself after each whole one) or
        // inside the reply that starts at `pos`: either way it stays as it is, and keeps its
        // stack's capacity (a fresh one would allocate again at the next aggregate).
        if pos == rbuf.len() {
            rbuf.clear();
        } else if pos > 0 {
            rbuf.drain(..pos);
        }
        Ok(())
    }

    /// Counts the failure, drops what was in flight, and reconnects with exponential
    /// backoff. Returns false (after aborting the run) when the server stays unreachable.
    async fn reconnect(
        &mut self,
        error: io::Error,
        inflight: &mut VecDeque<Pending>,
        rbuf: &mut Vec<u8>,
    ) -> bool {
        {
            let mut stats = self.stats.borrow_mut();
            stats.error(&format!("io: {}", error.kind()));
            for _ in inflight.drain(..) {
                stats.error("lost in flight at disconnect");
            }
            stats.reconnects += 1;
        }
        rbuf.clear();
        // A reply cut by the disconnect is gone with its bytes.
        self.scanner.borrow_mut().reset();
        let began = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            if self.shared.aborted.load(Ordering::Relaxed) || self.shared.shutdown.is_triggered() {
                return false;
            }
            match TcpStream::connect(self.addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    self.stream = stream;
                    return true;
                }
                Err(e) if began.elapsed() > RECONNECT_FOR => {
                    self.shared.abort(format!(
                        "connection {} to {} failed ({error}) and reconnecting failed for {:?}: {e}",
                        self.index, self.addr, RECONNECT_FOR
                    ));
                    return false;
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}

/// Consecutive measured replies of one template with one latency, recorded together.
#[derive(Default)]
struct Run {
    template: usize,
    us: u64,
    count: u64,
}

impl Run {
    fn flush(&mut self, stats: &mut WorkerStats, second: usize) {
        if self.count == 0 {
            return;
        }
        stats.commands[self.template]
            .latency
            .saturating_record_n(self.us, self.count);
        let s = stats.second(second);
        s.ops += self.count;
        s.latency.saturating_record_n(self.us, self.count);
        self.count = 0;
    }
}

/// The first word of an error reply (`WRONGTYPE`, `ERR`, `OOM`, ...).
fn error_kind(reply: &[u8]) -> &str {
    let end = reply
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(reply.len())
        .min(32);
    std::str::from_utf8(&reply[..end]).unwrap_or("ERR")
}
