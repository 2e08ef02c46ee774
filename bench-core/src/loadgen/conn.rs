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
use std::task::Poll;
use std::time::{Duration, Instant};

use rand::Rng;

use super::runtime;
use super::schedule::Schedule;
use super::slot_routing::{Route, Routing, Tagged};
use super::stats::{HIGHEST_US, LATE_US, Run, WorkerStats};
use super::{Plan, Shared};
use crate::cluster::{Redirect, RedirectKind};
use crate::distribution::{KeySampler, SizeSampler, worker_rng};
use crate::resp::{self, ParseError, Reply};
use crate::topology::ReadFrom;
use crate::transport::Wire;
use crate::workload::Fill;

/// How often a waiting connection looks at the clock and the stop flags.
const TICK: Duration = Duration::from_millis(50);
/// The runtime's timers fire on millisecond ticks (epoll's timeout), so an open-loop send
/// due within this window is awaited by yielding (a busy poll that still serves the
/// socket) instead of a timer: sub-millisecond send precision at the cost of CPU while the
/// schedule is dense. (A timer re-armed earlier leaves its old deadline in the heap, which
/// wakes the connection once for nothing: cheap beside the spin.)
const SPIN_WINDOW: Duration = Duration::from_millis(2);
/// How long in-flight replies may take after sending stops.
const DRAIN: Duration = Duration::from_secs(5);
/// How long to keep trying to reconnect after a connection drops.
const RECONNECT_FOR: Duration = Duration::from_secs(3);

struct Pending {
    /// Start (intended start in open loop), ns after the plan's origin: one u64
    /// subtraction per reply instead of `Instant` arithmetic.
    start_ns: u64,
    /// The template, or [`CONTROL`] for a reply nobody measures (`ASKING`, `READONLY`).
    template: u16,
    measured: bool,
    /// Redirects this request has followed.
    redirects: u8,
    /// Its bytes in its link's buffer (kept only when requests may be re-sent).
    len: u32,
}

/// What writing every link's requests came to.
enum Flushed {
    Sent,
    /// A link's write failed and it was reconnected (its requests in flight are lost).
    Reconnected,
    /// The run is over.
    GaveUp,
}

/// The template index of a control request's reply (`ASKING`, `READONLY`).
const CONTROL: u16 = u16::MAX;
/// Kept request bytes (cluster mode) are dropped from the front of a link's buffer once
/// this many are answered: a small buffer stays in cache. At 64 KiB, 50 connections'
/// buffers streamed through 3 MiB, and the kernel's copy of each send from fresh cache
/// lines (`_copy_from_iter`) was 11% of the generator's time at pipeline 16.
const COMPACT_AT: usize = 4 * 1024;
/// A request redirected more often than this is an error, not a migration.
const MAX_REDIRECTS: u8 = 5;
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
const READONLY: &[u8] = b"*1\r\n$8\r\nREADONLY\r\n";

/// One socket of a connection: to the server, or in cluster mode to one node.
pub(super) struct Link {
    pub addr: SocketAddr,
    pub stream: Wire,
    /// A replica read from: `READONLY` after every (re)connect.
    pub readonly: bool,
    inflight: VecDeque<Pending>,
    /// Encoded requests. `[acked..written)` is sent and awaits replies (kept only when
    /// requests may be re-sent, in cluster mode), `[written..)` is not sent yet.
    out: Vec<u8>,
    written: usize,
    acked: usize,
    rbuf: Vec<u8>,
    /// Resumes a reply that arrived in part (a large LRANGE over many reads).
    scanner: resp::Scanner,
    /// Cluster mode: this node's histogram in `WorkerStats::nodes`.
    node: Option<usize>,
}

impl Link {
    /// Queues a control request (`ASKING`, `READONLY`) whose reply nobody measures.
    fn control(&mut self, request: &[u8]) {
        self.out.extend_from_slice(request);
        self.inflight.push_back(Pending {
            start_ns: 0,
            template: CONTROL,
            measured: false,
            redirects: 0,
            len: request.len() as u32,
        });
    }

    pub fn new(addr: SocketAddr, stream: Wire, readonly: bool, node: Option<usize>) -> Link {
        Link {
            addr,
            stream,
            readonly,
            inflight: VecDeque::new(),
            out: Vec::with_capacity(64 * 1024),
            written: 0,
            acked: 0,
            rbuf: Vec::with_capacity(64 * 1024),
            scanner: resp::Scanner::default(),
            node,
        }
    }
}

pub(super) struct Connection {
    pub index: u32,
    pub links: Vec<Link>,
    /// `None`: one server, one link.
    pub routing: Option<Routing>,
    /// Per template, this connection's own version of it, if it has one.
    pub tagged: Vec<Option<Tagged>>,
    pub plan: Arc<Plan>,
    pub shared: Arc<Shared>,
    pub stats: Rc<RefCell<WorkerStats>>,
    /// Requests in flight over every link.
    inflight: usize,
    /// Where the last multi-link read looked first (so no link starves the others).
    read_from: usize,
    /// Requests taken from the budget and not sent yet.
    claimed: i64,
}

impl Connection {
    pub fn new(
        index: u32,
        links: Vec<Link>,
        routing: Option<Routing>,
        tagged: Vec<Option<Tagged>>,
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        stats: Rc<RefCell<WorkerStats>>,
    ) -> Connection {
        Connection {
            index,
            links,
            routing,
            tagged,
            plan,
            shared,
            stats,
            inflight: 0,
            read_from: 0,
            claimed: 0,
        }
    }

    /// Runs the connection, then tells subscribers one publisher fewer is left.
    pub async fn run(mut self, start: Instant) {
        let shared = Arc::clone(&self.shared);
        self.drive(start).await;
        shared.publishers_left.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether sent requests stay in their link's buffer until answered (to be re-sent
    /// after a redirect).
    fn keeps_requests(&self) -> bool {
        self.routing.is_some()
    }

    /// The link a request of template `t` goes to, and its first key when routing drew it.
    #[inline]
    fn route(
        routing: Option<&mut Routing>,
        read_only: bool,
        index: u32,
        route: &Route,
        draw: &mut impl FnMut() -> u64,
    ) -> (usize, Option<u64>) {
        let Some(routing) = routing else {
            return (0, None);
        };
        let (slot, first) = match route {
            Route::Any => {
                routing.next = routing.next.wrapping_add(1);
                return (routing.next % routing.primaries.max(1), None);
            }
            &Route::Slot(slot) => (slot, None),
            Route::Drawn(slots) => {
                let key = draw();
                (slots.slot(key), Some(key))
            }
        };
        let mut node = usize::from(routing.owners.owner(slot));
        if routing.read_from == ReadFrom::Replicas
            && read_only
            && let Some(replicas) = routing.replicas_of.get(node).filter(|r| !r.is_empty())
        {
            node = usize::from(replicas[index as usize % replicas.len()]);
        }
        // An unowned slot, or a node another connection learned of and this one has no
        // link to yet: any link will do, its MOVED brings the link.
        match routing.link_of.get(node) {
            Some(&link) if link != u16::MAX => (usize::from(link), first),
            _ => (0, first),
        }
    }

    async fn drive(&mut self, start: Instant) {
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
        let mut sending = true;
        let mut stopped_at: Option<Instant> = None;
        let mut tick = runtime::sleep(TICK);
        // Every connection starts at the same instant; nothing before it is measured.
        runtime::sleep_until(start).await;

        loop {
            let now = Instant::now();
            if sending && self.should_stop(now) {
                sending = false;
                stopped_at = Some(now);
            }
            if !sending {
                if self.inflight == 0 {
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
                while self.inflight < plan.pipeline {
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
                    // Only a cluster connection has its own templates: a standalone one
                    // does not look (the lookup missed the cache twice per request).
                    let tagged = match self.routing {
                        Some(_) => self.tagged[t].as_ref(),
                        None => None,
                    };
                    let route = match tagged {
                        Some(tagged) => &tagged.route,
                        None => &plan.routes[t],
                    };
                    let (link, mut first) = Connection::route(
                        self.routing.as_mut(),
                        plan.read_only[t],
                        self.index,
                        route,
                        &mut || keys.sample(&mut key_rng),
                    );
                    let mut key = || first.take().unwrap_or_else(|| keys.sample(&mut key_rng));
                    let (template, prepared) = match tagged {
                        Some(tagged) => (&tagged.template, tagged.prepared.as_ref()),
                        None => (&plan.templates[t], plan.prepared[t].as_ref()),
                    };
                    let out = &mut self.links[link].out;
                    let before = out.len();
                    if let Some(prepared) = prepared {
                        prepared.encode(
                            out,
                            &mut key,
                            &mut || members.sample(&mut member_rng),
                            intended_ns,
                        );
                    } else {
                        let len = sizes.sample(&mut rng) as usize;
                        let score = if template.uses_score {
                            rng.random_range(0..plan.keyspace)
                        } else {
                            0
                        };
                        template.encode(
                            out,
                            &mut key,
                            &mut || members.sample(&mut member_rng),
                            &Fill {
                                value: &plan.value,
                                value_len: len,
                                score,
                                stamp: intended_ns,
                            },
                        );
                    }
                    let len = (out.len() - before) as u32;
                    if schedule.is_some() && measured {
                        let lag = now.saturating_duration_since(intended).as_micros() as u64;
                        let mut stats = self.stats.borrow_mut();
                        stats.send_lag.saturating_record(lag.max(1));
                        if lag >= LATE_US {
                            stats.late += 1;
                        }
                    }
                    self.links[link].inflight.push_back(Pending {
                        start_ns: intended_ns,
                        template: t as u16,
                        measured,
                        redirects: 0,
                        len,
                    });
                    self.inflight += 1;
                    sent_k += 1;
                }
            }
            match self.flush().await {
                Flushed::Sent => {}
                // As before a write failed: fill the window again at once.
                Flushed::Reconnected => continue,
                Flushed::GaveUp => return,
            }

            // Wait for replies, the next due send, or a tick.
            let spin = next_due.is_some_and(|due| due.saturating_duration_since(now) < SPIN_WINDOW);
            if spin {
                if self.inflight == 0 {
                    runtime::yield_now().await;
                    continue;
                }
                let (link, read) = tokio::select! {
                    biased;
                    r = self.read_any() => r,
                    () = runtime::yield_now() => continue,
                };
                if !self.after_read(link, read).await {
                    return;
                }
                continue;
            }
            // Re-arm the timer only when a send is due sooner than it fires, or when it has
            // fired: re-arming it on every pass cost ~2% of the generator's CPU.
            let armed = tick.deadline();
            let deadline = match next_due {
                Some(due) if due < now + TICK + SPIN_WINDOW => Some(due - SPIN_WINDOW),
                _ if armed <= now => Some(now + TICK),
                _ => None,
            };
            if let Some(deadline) = deadline.filter(|&d| d != armed) {
                tick.reset(deadline);
            }
            if self.inflight == 0 {
                (&mut tick).await;
                continue;
            }
            let (link, read) = tokio::select! {
                biased;
                r = self.read_any() => r,
                () = &mut tick => continue,
            };
            if !self.after_read(link, read).await {
                return;
            }
        }
    }

    /// Writes what every link has encoded.
    async fn flush(&mut self) -> Flushed {
        let keep = self.keeps_requests();
        let mut outcome = Flushed::Sent;
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            if link.out.len() > link.written {
                if let Err(e) = link.stream.send(&link.out[link.written..]).await {
                    if !Box::pin(self.reconnect(i, e)).await {
                        return Flushed::GaveUp;
                    }
                    outcome = Flushed::Reconnected;
                    continue;
                }
                if keep {
                    link.written = link.out.len();
                } else {
                    link.out.clear();
                }
            }
        }
        outcome
    }

    /// Reads from the first link with replies waiting: which link, and the read's outcome.
    async fn read_any(&mut self) -> (usize, io::Result<usize>) {
        for link in &mut self.links {
            if link.rbuf.capacity() - link.rbuf.len() < 16 * 1024 {
                link.rbuf.reserve(64 * 1024);
            }
        }
        if self.links.len() == 1 {
            let link = &mut self.links[0];
            let read = std::future::poll_fn(|cx| link.stream.poll_read_into(cx, &mut link.rbuf));
            return (0, read.await);
        }
        {
            let first = self.read_from;
            let links = &mut self.links;
            let (i, r) = std::future::poll_fn(|cx| {
                let n = links.len();
                for k in 0..n {
                    let i = (first + k) % n;
                    let link = &mut links[i];
                    if link.inflight.is_empty() {
                        continue;
                    }
                    if let Poll::Ready(r) = link.stream.poll_read_into(cx, &mut link.rbuf) {
                        return Poll::Ready((i, r));
                    }
                }
                Poll::Pending
            })
            .await;
            self.read_from = i + 1;
            (i, r)
        }
    }

    /// Handles a read's outcome: records the replies, or reconnects. False: give up.
    async fn after_read(&mut self, link: usize, read: io::Result<usize>) -> bool {
        let got = match read {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )),
            Ok(n) => Ok(n),
            Err(e) => Err(e),
        };
        if let Err(e) = got {
            return Box::pin(self.reconnect(link, e)).await;
        }
        let received = Instant::now();
        let mut redirects = Vec::new();
        if let Err(offset) = self.take_replies(link, received, &mut redirects) {
            // Redirected before the bad bytes, never re-sent: lost like the rest.
            for _ in &redirects {
                self.stats
                    .borrow_mut()
                    .error("lost in flight at disconnect");
            }
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid RESP from the server at byte {offset}"),
            );
            return Box::pin(self.reconnect(link, e)).await;
        }
        for (pending, redirect, bytes) in redirects {
            if !Box::pin(self.follow(pending, redirect, &bytes)).await {
                return false;
            }
        }
        true
    }

    fn should_stop(&self, now: Instant) -> bool {
        self.shared.aborted.load(Ordering::Relaxed)
            || self.shared.shutdown.is_triggered()
            || self.plan.end.is_some_and(|end| now >= end)
    }

    /// Takes one request from the request budget (request-count runs). A connection takes
    /// what its window has room for at once: one atomic operation per window, not per
    /// request (it was 5% of the generator's user time at pipeline 16), and no more than
    /// it can send now (so at the end of a run no connection holds requests the others
    /// could have sent).
    fn claim(&mut self) -> bool {
        if self.claimed == 0 {
            let room = self.plan.pipeline.saturating_sub(self.inflight);
            let want = (room as i64).clamp(1, 64);
            let left = self.shared.budget.fetch_sub(want, Ordering::Relaxed);
            if left <= 0 {
                return false;
            }
            self.claimed = left.min(want);
        }
        self.claimed -= 1;
        true
    }

    /// Scans every whole reply in link `l`'s buffer, records it, and keeps the unread
    /// tail. Redirected requests go to `redirects` with their bytes, to be re-sent.
    fn take_replies(
        &mut self,
        l: usize,
        received: Instant,
        redirects: &mut Vec<(Pending, Redirect, Vec<u8>)>,
    ) -> Result<(), usize> {
        let keep = self.keeps_requests();
        let plan = &*self.plan;
        let link = &mut self.links[l];
        let mut pos = 0;
        let mut stats = self.stats.borrow_mut();
        let mut done = 0u64;
        let mut answered = 0usize;
        // Replies read together arrived together: one timestamp, one second of the series.
        let received_ns = received.saturating_duration_since(plan.origin).as_nanos() as u64;
        let second = received
            .saturating_duration_since(plan.measure_from)
            .as_secs() as usize;
        // Requests sent in one pass share a start, so consecutive replies mostly share a
        // latency: record runs of equal (template, µs) with one histogram update each.
        let mut run = Run::default();
        loop {
            let (reply, used) = match link.scanner.scan(&link.rbuf[pos..]) {
                Ok(r) => r,
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Invalid { offset }) => {
                    run.flush(&mut stats, link.node, second);
                    // The replies taken so far are answered; the caller reconnects and
                    // counts what is left in flight.
                    self.inflight -= answered;
                    return Err(pos + offset);
                }
            };
            let Some(p) = link.inflight.pop_front() else {
                // A reply nobody asked for (e.g. a push): ignore it.
                pos += used;
                continue;
            };
            answered += 1;
            let sent_at = link.acked;
            if keep {
                link.acked += p.len as usize;
            }
            if p.template == CONTROL {
                pos += used;
                continue;
            }
            let t = usize::from(p.template);
            if keep
                && reply == Reply::Error
                && let Some(redirect) = Redirect::parse(&link.rbuf[pos + 1..pos + used])
            {
                let bytes = link.out[sent_at..sent_at + p.len as usize].to_vec();
                redirects.push((p, redirect, bytes));
                pos += used;
                continue;
            }
            if p.measured {
                let us = (received_ns.saturating_sub(p.start_ns) / 1000).clamp(1, HIGHEST_US);
                if run.count > 0 && (run.template, run.us) != (t, us) {
                    run.flush(&mut stats, link.node, second);
                }
                run.template = t;
                run.us = us;
                run.count += 1;
                let template = &plan.templates[t];
                match reply {
                    Reply::Error => {
                        let kind = error_kind(&link.rbuf[pos + 1..pos + used]);
                        stats.commands[t].errors += 1;
                        stats.second(second).errors += 1;
                        stats.error(kind);
                    }
                    reply => {
                        let (hits, misses) = resp::hits_and_misses(
                            template.read,
                            reply,
                            &link.rbuf[pos..pos + used],
                        );
                        stats.commands[t].hits += hits;
                        stats.commands[t].misses += misses;
                    }
                }
                if matches!((reply, plan.expected_len[t]), (Reply::Bulk(n), Some(want)) if n != want)
                {
                    stats.error("check: value of unexpected size");
                }
                done += 1;
            }
            pos += used;
        }
        run.flush(&mut stats, link.node, second);
        drop(stats);
        self.inflight -= answered;
        if done > 0 {
            self.shared.completed.fetch_add(done, Ordering::Relaxed);
            self.shared
                .last_reply_ns
                .fetch_max(received_ns, Ordering::Relaxed);
        }
        // The scanner is between replies here (it resets itself after each whole one) or
        // inside the reply that starts at `pos`: either way it stays as it is, and keeps its
        // stack's capacity (a fresh one would allocate again at the next aggregate).
        if pos == link.rbuf.len() {
            link.rbuf.clear();
        } else if pos > 0 {
            link.rbuf.drain(..pos);
        }
        if keep {
            if link.acked == link.out.len() {
                link.out.clear();
                (link.acked, link.written) = (0, 0);
            } else if link.acked >= COMPACT_AT {
                link.out.drain(..link.acked);
                link.written -= link.acked;
                link.acked = 0;
            }
        }
        Ok(())
    }

    /// Re-sends a redirected request to its new node (connecting to it if this connection
    /// has no link there): after a MOVED the slot's owner changes for every later request;
    /// an ASK goes once, after `ASKING`. False: give up (the run is over).
    async fn follow(&mut self, mut pending: Pending, redirect: Redirect, bytes: &[u8]) -> bool {
        *self
            .stats
            .borrow_mut()
            .redirects
            .entry(redirect.kind.name())
            .or_default() += 1;
        if pending.redirects >= MAX_REDIRECTS {
            self.stats
                .borrow_mut()
                .error("cluster: redirected too often");
            return true;
        }
        pending.redirects += 1;
        let Some(routing) = &mut self.routing else {
            unreachable!("redirects are followed in cluster mode only")
        };
        let node = routing.owners.node(redirect.to);
        if redirect.kind == RedirectKind::Moved {
            routing.owners.set(redirect.slot, node as u16);
        }
        if routing.link_of.len() <= node {
            routing.link_of.resize(node + 1, u16::MAX);
        }
        let known = routing.link_of[node];
        let to = match self.links.iter().position(|l| l.addr == redirect.to) {
            Some(i) => i,
            None if !self.shared.nodes.is_empty() && !self.shared.nodes.contains(&redirect.to) => {
                self.shared.abort(format!(
                    "connection {} was redirected to {}, which is none of the deployment's \
                     nodes; nothing is sent there",
                    self.index, redirect.to
                ));
                return false;
            }
            None => match Wire::connect(redirect.to, self.shared.tls.as_ref()).await {
                Ok(stream) => {
                    let node = self.links[0]
                        .node
                        .map(|_| self.stats.borrow_mut().node(redirect.to));
                    self.links.push(Link::new(redirect.to, stream, false, node));
                    self.links.len() - 1
                }
                Err(e) => {
                    self.shared.abort(format!(
                        "connection {} was redirected to {} and cannot connect there: {e}",
                        self.index, redirect.to
                    ));
                    return false;
                }
            },
        };
        if known == u16::MAX
            && let Some(routing) = &mut self.routing
        {
            routing.link_of[node] = to as u16;
        }
        let link = &mut self.links[to];
        if redirect.kind == RedirectKind::Ask {
            link.control(ASKING);
            self.inflight += 1;
        }
        link.out.extend_from_slice(bytes);
        link.inflight.push_back(pending);
        self.inflight += 1;
        true
    }

    /// Counts the failure, drops what link `l` had in flight, and reconnects it with
    /// exponential backoff. Returns false (after aborting the run) when the server stays
    /// unreachable.
    async fn reconnect(&mut self, l: usize, error: io::Error) -> bool {
        let link = &mut self.links[l];
        {
            let mut stats = self.stats.borrow_mut();
            stats.error(&format!("io: {}", error.kind()));
            for p in link.inflight.drain(..) {
                self.inflight -= 1;
                if p.template != CONTROL {
                    stats.error("lost in flight at disconnect");
                }
            }
            stats.reconnects += 1;
        }
        link.rbuf.clear();
        link.out.clear();
        (link.acked, link.written) = (0, 0);
        // A reply cut by the disconnect is gone with its bytes.
        link.scanner.reset();
        let began = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            if self.shared.aborted.load(Ordering::Relaxed) || self.shared.shutdown.is_triggered() {
                return false;
            }
            match Wire::connect(link.addr, self.shared.tls.as_ref()).await {
                Ok(stream) => {
                    link.stream = stream;
                    if link.readonly {
                        link.control(READONLY);
                        self.inflight += 1;
                    }
                    return true;
                }
                Err(e) if began.elapsed() > RECONNECT_FOR => {
                    self.shared.abort(format!(
                        "connection {} to {} failed ({error}) and reconnecting failed for {:?}: {e}",
                        self.index, link.addr, RECONNECT_FOR
                    ));
                    return false;
                }
                Err(_) => {
                    runtime::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
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
