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
use rand::rngs::SmallRng;

use super::replies::{self, CONTROL, Pending, Replies};
use super::runtime;
use super::schedule::Schedule;
use super::slot_routing::{Route, Routing, Tagged};
use super::stats::{LATE_US, WorkerStats};
use super::{Plan, Shared};
use crate::cluster::{Redirect, RedirectKind};
use crate::distribution::{KeySampler, SizeSampler, worker_rng};
use crate::resp;
use crate::topology::ReadFrom;
use crate::transport::Wire;
use crate::workload::{Fill, Prepared, Template};

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

/// What a read left to do besides taking replies.
enum Left {
    /// The link failed (or the server closed it, or sent bytes that are no RESP).
    Reconnect(io::Error),
    /// Requests to re-send where their redirects point.
    Redirects(Vec<(Pending, Redirect, Vec<u8>)>),
}

/// What writing every link's requests came to.
enum Flushed {
    Sent,
    /// A link's write failed and it was reconnected (its requests in flight are lost).
    Reconnected,
    /// The run is over.
    GaveUp,
}

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
        let p = Pending::one(0, CONTROL, false, request.len() as u32);
        self.inflight.push_back(p);
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
        let mut draws = Draws::new(&plan, self.index);
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
            if sending && schedule.is_none() && self.routing.is_none() {
                // Closed loop to one server, the common case: the window's room at once,
                // into one record per template.
                while self.inflight < plan.pipeline {
                    let n = self.claimed(plan.pipeline - self.inflight);
                    if n == 0 {
                        sending = false;
                        stopped_at = Some(now);
                        break;
                    }
                    let link = &mut self.links[0];
                    if let [template] = &plan.templates[..] {
                        let prepared = plan.prepared[0].as_ref();
                        for _ in 0..n {
                            draws.encode(&plan, template, prepared, &mut link.out, None, now_ns);
                        }
                        let p = Pending {
                            count: n as u32,
                            ..Pending::one(now_ns, 0, now_measured, 0)
                        };
                        replies::push(&mut link.inflight, p, true);
                    } else {
                        for _ in 0..n {
                            let t = plan.pick(&mut draws.rng);
                            let (template, prepared) =
                                (&plan.templates[t], plan.prepared[t].as_ref());
                            draws.encode(&plan, template, prepared, &mut link.out, None, now_ns);
                            let p = Pending::one(now_ns, t as u16, now_measured, 0);
                            replies::push(&mut link.inflight, p, true);
                        }
                    }
                    self.inflight += n;
                }
            } else if sending {
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
                    if plan.end.is_some_and(|end| intended >= end) || self.claimed(1) == 0 {
                        sending = false;
                        stopped_at = Some(now);
                        break;
                    }
                    let t = plan.pick(&mut draws.rng);
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
                    let (link, first) = Connection::route(
                        self.routing.as_mut(),
                        plan.read_only[t],
                        self.index,
                        route,
                        &mut || draws.keys.sample(&mut draws.key_rng),
                    );
                    let (template, prepared) = match tagged {
                        Some(tagged) => (&tagged.template, tagged.prepared.as_ref()),
                        None => (&plan.templates[t], plan.prepared[t].as_ref()),
                    };
                    let out = &mut self.links[link].out;
                    let before = out.len();
                    draws.encode(&plan, template, prepared, out, first, intended_ns);
                    let len = (out.len() - before) as u32;
                    if schedule.is_some() && measured {
                        let lag = now.saturating_duration_since(intended).as_micros() as u64;
                        let mut stats = self.stats.borrow_mut();
                        stats.send_lag.saturating_record(lag.max(1));
                        if lag >= LATE_US {
                            stats.late += 1;
                        }
                    }
                    let p = Pending::one(intended_ns, t as u16, measured, len);
                    replies::push(&mut self.links[link].inflight, p, self.routing.is_none());
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
                if let Some(left) = self.after_read(link, read)
                    && !Box::pin(self.recover(link, left)).await
                {
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
            if let Some(left) = self.after_read(link, read)
                && !Box::pin(self.recover(link, left)).await
            {
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

    /// Takes the replies a read on `link` brought; what is left to do when it brought
    /// more than replies (an error, the end of the stream, redirects). Not `async`: the
    /// common case finishes here, without a future built and polled for it per read.
    fn after_read(&mut self, link: usize, read: io::Result<usize>) -> Option<Left> {
        let e = match read {
            Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"),
            Ok(_) => {
                let mut redirects = Vec::new();
                let Err(offset) = self.take_replies(link, Instant::now(), &mut redirects) else {
                    return (!redirects.is_empty()).then_some(Left::Redirects(redirects));
                };
                // Redirected before the bad bytes, never re-sent: lost like the rest.
                for _ in &redirects {
                    self.stats
                        .borrow_mut()
                        .error("lost in flight at disconnect");
                }
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("invalid RESP from the server at byte {offset}"),
                )
            }
            Err(e) => e,
        };
        Some(Left::Reconnect(e))
    }

    /// Does what a read left: reconnects `link`, or re-sends redirected requests. False:
    /// the run is over.
    async fn recover(&mut self, link: usize, left: Left) -> bool {
        match left {
            Left::Reconnect(e) => self.reconnect(link, e).await,
            Left::Redirects(redirects) => {
                for (pending, redirect, bytes) in redirects {
                    if !Box::pin(self.follow(pending, redirect, &bytes)).await {
                        return false;
                    }
                }
                true
            }
        }
    }

    fn should_stop(&self, now: Instant) -> bool {
        self.shared.aborted.load(Ordering::Relaxed)
            || self.shared.shutdown.is_triggered()
            || self.plan.end.is_some_and(|end| now >= end)
    }

    /// Takes up to `n` requests from the request budget (request-count runs): how many
    /// it may send, 0 when the budget is spent. A connection takes what its window has
    /// room for at once: one atomic operation per window, not per request (it was 5% of
    /// the generator's user time at pipeline 16), and no more than it can send now (so at
    /// the end of a run no connection holds requests the others could have sent).
    fn claimed(&mut self, n: usize) -> usize {
        if self.claimed == 0 {
            let room = self.plan.pipeline.saturating_sub(self.inflight);
            let want = (room as i64).clamp(1, 64);
            let left = self.shared.budget.fetch_sub(want, Ordering::Relaxed);
            if left <= 0 {
                return 0;
            }
            self.claimed = left.min(want);
        }
        let n = n.min(self.claimed as usize);
        self.claimed -= n as i64;
        n
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
        // Replies read together arrived together: one timestamp, one second of the series.
        let received_ns = received.saturating_duration_since(plan.origin).as_nanos() as u64;
        let second = (received_ns.saturating_sub(plan.measure_from_ns) / 1_000_000_000) as usize;
        let taken = replies::take(
            Replies {
                rbuf: &mut link.rbuf,
                scanner: &mut link.scanner,
                inflight: &mut link.inflight,
                out: &link.out,
                acked: &mut link.acked,
                node: link.node,
            },
            &plan.rules,
            &mut self.stats.borrow_mut(),
            keep,
            (received_ns, second),
            redirects,
        );
        // The replies taken are answered; after bad bytes the caller reconnects and
        // counts what is left in flight.
        self.inflight -= taken.answered;
        if taken.done > 0 {
            self.shared
                .completed
                .fetch_add(taken.done, Ordering::Relaxed);
        }
        if let Some(offset) = taken.invalid {
            return Err(offset);
        }
        // The scanner is between replies here (it resets itself after each whole one) or
        // inside the reply that starts at `used`: either way it stays as it is, and keeps
        // its stack's capacity (a fresh one would allocate again at the next aggregate).
        if taken.used == link.rbuf.len() {
            link.rbuf.clear();
        } else if taken.used > 0 {
            link.rbuf.drain(..taken.used);
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
                self.inflight -= p.count as usize;
                if p.template != CONTROL {
                    for _ in 0..p.count {
                        stats.error("lost in flight at disconnect");
                    }
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

/// What a connection draws its requests from: the template mix, keys, members and value
/// sizes, each from its own stream (so a template's key draws do not shift the mix).
struct Draws {
    rng: SmallRng,
    key_rng: SmallRng,
    member_rng: SmallRng,
    keys: KeySampler,
    members: KeySampler,
    sizes: SizeSampler,
}

impl Draws {
    fn new(plan: &Plan, index: u32) -> Draws {
        let stream_id = u64::from(index) * 3;
        Draws {
            rng: worker_rng(plan.seed, stream_id),
            key_rng: worker_rng(plan.seed, stream_id + 1),
            member_rng: worker_rng(plan.seed, stream_id + 2),
            // Validated by Plan::new, so these cannot fail here.
            keys: KeySampler::new(
                &plan.keys,
                plan.keyspace,
                u64::from(index),
                u64::from(plan.connections),
            )
            .expect("validated key distribution"),
            members: KeySampler::new(
                &crate::distribution::KeyDistribution::Uniform,
                plan.keyspace,
                0,
                1,
            )
            .expect("validated keyspace"),
            sizes: SizeSampler::new(&plan.values),
        }
    }

    /// Appends one request of `template` to `out`, from its pre-encoded form when it has
    /// one. `first` is its first key when routing drew it already. (Always inlined: a
    /// call per request cost 40 instructions at pipeline 16.)
    #[inline(always)]
    fn encode(
        &mut self,
        plan: &Plan,
        template: &Template,
        prepared: Option<&Prepared>,
        out: &mut Vec<u8>,
        mut first: Option<u64>,
        stamp: u64,
    ) {
        let Draws {
            rng,
            key_rng,
            member_rng,
            keys,
            members,
            sizes,
        } = self;
        let mut key = || first.take().unwrap_or_else(|| keys.sample(key_rng));
        let mut member = || members.sample(member_rng);
        let Some(prepared) = prepared else {
            let value_len = sizes.sample(rng) as usize;
            let score = if template.uses_score {
                rng.random_range(0..plan.keyspace)
            } else {
                0
            };
            let fill = Fill {
                value: &plan.value,
                value_len,
                score,
                stamp,
            };
            return template.encode(out, &mut key, &mut member, &fill);
        };
        prepared.encode(out, &mut key, &mut member, stamp);
    }
}
