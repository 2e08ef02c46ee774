//! The native load generator.
//!
//! Shape: worker threads, each with its own single-threaded runtime ([`runtime`]), each
//! running one task per connection; per-worker statistics (no locks, no atomics on the
//! per-reply path but one relaxed counter per read), merged when the run ends. One RNG stream per connection
//! derives from the master seed, so a run can be replayed.
//!
//! Closed loop keeps `pipeline` requests in flight per connection. Open loop (`rate`)
//! sends on a fixed schedule and measures latency from each request's *intended* send
//! time, so a stalled server shows in the percentiles instead of silently slowing the
//! sender (coordinated omission); sends that fall behind are counted.

mod conn;
pub mod engine;
pub mod floor;
pub mod merge;
mod replies;
mod report;
pub mod runtime;
pub mod schedule;
mod slot_routing;
pub mod stats;
pub mod stream;
mod subscriber;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::cluster::SlotPrefix;
use crate::distribution::{KeyDistribution, KeySampler, ValueSize};
use crate::shutdown::Shutdown;
use crate::topology::ReadFrom;
use crate::transport::Wire;
use crate::workload::KeyRoute;
use crate::workload::{Prepared, Template, WorkloadError, WorkloadSpec};
use stats::{CommandReport, NodeReport, SecondReport, WorkerStats};

/// When a run stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// Measure for this long after the warmup.
    Duration(Duration),
    /// Send exactly this many requests (warmup included, if any).
    Requests(u64),
}

/// How to drive the server.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Connections, spread round-robin over `threads`.
    pub connections: u32,
    /// Requests in flight per connection.
    pub pipeline: u32,
    /// Worker threads. Default 1: on a 2-core machine the other core is the server's.
    pub threads: u32,
    /// Open loop: total requests per second. `None` is closed loop (as fast as possible).
    pub rate: Option<f64>,
    pub stop: Stop,
    /// Load before the measured window, discarded.
    pub warmup: Duration,
    /// Cluster mode: the addresses are seeds, the slot map comes from the first that
    /// answers, and every request goes to its slot's node.
    pub cluster: Option<ClusterOptions>,
    /// CPUs every worker thread may run on (`sched_setaffinity`); empty: unpinned.
    pub cpus: Vec<usize>,
    /// Speak TLS to every server (handshakes before the clock starts).
    pub tls: Option<crate::transport::Tls>,
    /// This run is one host's part of a run driven from several: its connections are
    /// `first ..` of the whole run's `total` (their key draws and open-loop send times are
    /// those connections' in the whole run), and `rate` is the whole run's. `None`: the
    /// whole run.
    pub share: Option<Share>,
    /// Start the clock (warmup, then the measured window) at this wall-clock instant, so
    /// several hosts start together; if the connections are up only later, the run starts
    /// then and `Report::late_start_us` says by how much. `None`: as soon as they are up.
    pub start_at: Option<std::time::SystemTime>,
}

/// One host's part of a run driven from several hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Its first connection's index in the whole run.
    pub first: u32,
    /// The whole run's connections.
    pub total: u32,
}

/// How the generator drives a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    pub read_from: ReadFrom,
    /// Multi-key commands whose keys have no hash tag get one per connection (`{cN}`
    /// before the key prefix), so one request's keys share a slot while the connections
    /// spread the command over the shards (valkey-benchmark's `--cluster` tags its keys
    /// per node). Off: such a command is refused, as its keys would span slots.
    pub tag_multi_key: bool,
    /// The deployment's nodes: a slot map or a redirect naming another address stops the
    /// run, nothing sent there (`Target::nodes`). Empty: any.
    pub nodes: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("invalid run option: {0}")]
    Options(String),
    /// (`why` is in the message, not a source: printed once.)
    #[error("cannot connect to {addr}: {why}")]
    Connect {
        addr: SocketAddr,
        why: std::io::Error,
    },
    #[error("starting a worker thread: {0}")]
    Runtime(std::io::Error),
    #[error("reading the cluster's slot map: {0}")]
    Cluster(String),
}

/// Everything a run measured. Latencies in microseconds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub workload: String,
    pub seed: u64,
    pub connections: u32,
    pub pipeline: u32,
    pub threads: u32,
    /// Open-loop target rate, requests/s.
    pub rate: Option<f64>,
    /// Length of the measured window, seconds.
    pub measured_secs: f64,
    /// Replies in the measured window.
    pub requests: u64,
    pub ops_per_sec: f64,
    /// All commands together.
    pub all: CommandReport,
    pub commands: Vec<CommandReport>,
    /// Per second of the measured window.
    pub series: Vec<SecondReport>,
    /// Errors by kind: the first word of error replies (`WRONGTYPE`), `io: ...`,
    /// `lost in flight at disconnect`, `check: ...`.
    pub errors: BTreeMap<String, u64>,
    pub reconnects: u64,
    /// Open loop: sends at least 1 ms behind schedule, and how far behind they were.
    pub late_sends: u64,
    pub send_lag_p99_us: u64,
    pub send_lag_max_us: u64,
    /// The generator's CPU time (user + system) over the measured window, and per request.
    /// In open loop this includes busy-polling for sub-millisecond send times.
    pub client_cpu_secs: f64,
    pub client_cpu_us_per_request: f64,
    /// Reasons to doubt the numbers (client-bound, behind schedule, errors).
    pub warnings: Vec<String>,
    /// Set when the run ended early (the server went away); what was measured is kept.
    pub partial: Option<String>,
    /// Cluster mode: redirects followed, by kind (`MOVED`, `ASK`).
    #[serde(default)]
    pub redirects: BTreeMap<String, u64>,
    /// Cluster mode: each node's measured replies, in address order.
    #[serde(default)]
    pub nodes: Vec<NodeReport>,
    /// With `RunOptions::start_at`: how long after that instant the clock started (the
    /// connections were up late), µs; 0 on time.
    #[serde(default)]
    pub late_start_us: u64,
}

/// What the workers share.
pub(crate) struct Shared {
    aborted: AtomicBool,
    reason: Mutex<Option<String>>,
    /// Requests left to send (request-count runs).
    budget: AtomicI64,
    completed: AtomicU64,
    /// Request connections still running (subscribers stop after the last one).
    publishers_left: AtomicU32,
    shutdown: Shutdown,
    /// How connections (and reconnections) speak TLS, if they do.
    tls: Option<crate::transport::Tls>,
    /// Where a redirect may lead (`ClusterOptions::nodes`; empty: anywhere).
    nodes: Vec<SocketAddr>,
}

impl Shared {
    fn abort(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        r.get_or_insert(reason);
        self.aborted.store(true, Ordering::SeqCst);
    }
}

/// The compiled workload and the run's clock.
pub(crate) struct Plan {
    templates: Vec<Template>,
    cumulative: Vec<u32>,
    keys: KeyDistribution,
    keyspace: u64,
    values: ValueSize,
    /// Value bytes; requests send a prefix of it.
    value: Vec<u8>,
    /// Per template, its pre-encoded form when every length is fixed (the fast path).
    prepared: Vec<Option<Prepared>>,
    /// Per template, how its replies count.
    rules: Vec<replies::Rule>,
    /// Per template, how cluster mode routes it, and whether it only reads.
    routes: Vec<slot_routing::Route>,
    read_only: Vec<bool>,
    seed: u64,
    pipeline: usize,
    connections: u32,
    rate: Option<f64>,
    origin: Instant,
    measure_from: Instant,
    /// `measure_from`, ns after `origin`.
    measure_from_ns: u64,
    end: Option<Instant>,
    /// The workload, for templates a connection compiles with its own hash tag.
    spec: WorkloadSpec,
    tag_multi_key: bool,
}

impl Plan {
    /// Connection `index`'s own versions of the multi-key templates whose keys would span
    /// slots: their keys prefixed with the hash tag `{cN}`.
    fn tagged(&self, index: u32) -> Vec<Option<slot_routing::Tagged>> {
        self.templates
            .iter()
            .zip(&self.spec.commands)
            .map(|(t, command)| {
                let spans = matches!(&t.route, KeyRoute::Drawn { prefix, keys } if *keys > 1
                    && !SlotPrefix::new(prefix).is_fixed());
                if !(self.tag_multi_key && spans) {
                    return None;
                }
                let spec = WorkloadSpec {
                    key_prefix: format!("{{c{index}}}{}", self.spec.key_prefix),
                    ..self.spec.clone()
                };
                let template = Template::compile(&command.command, &spec).ok()?;
                let fixed = match self.values {
                    ValueSize::Fixed { bytes } => Some(bytes as usize),
                    _ => None,
                };
                Some(slot_routing::Tagged {
                    prepared: template.prepare(&self.value, fixed),
                    route: slot_routing::Route::of(&template, self.keyspace),
                    template,
                })
            })
            .collect()
    }

    fn pick(&self, rng: &mut SmallRng) -> usize {
        if self.templates.len() == 1 {
            return 0;
        }
        let total = *self.cumulative.last().expect("at least one command");
        let x = rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= x)
    }
}

/// Sent when dropped: a worker thread has ended, by returning or by a panic.
struct Ended(mpsc::Sender<()>);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Where connected workers wait for the run to start: opened with the plan, or with `None`
/// when some connection failed and the run is off.
#[derive(Default)]
struct Gate {
    plan: Mutex<Option<Option<Arc<Plan>>>>,
    opened: Condvar,
}

impl Gate {
    fn open(&self, plan: Option<Arc<Plan>>) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Some(plan);
        self.opened.notify_all();
    }

    fn wait(&self) -> Option<Arc<Plan>> {
        let mut slot = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        while slot.is_none() {
            slot = self.opened.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        slot.clone().flatten()
    }
}

/// Progress once per second while a run goes on.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub elapsed: Duration,
    /// Measured replies in the last second (none during the warmup).
    pub ops_last_second: u64,
    pub completed: u64,
}

/// Runs `spec` against `addrs` (connections spread round-robin) and returns the report.
/// A server that goes away mid-run gives `Ok` with `partial` set.
pub fn run(
    addrs: &[SocketAddr],
    spec: &WorkloadSpec,
    options: &RunOptions,
    shutdown: &Shutdown,
    mut progress: impl FnMut(Progress),
) -> Result<Report, LoadgenError> {
    let templates = spec.compile()?;
    validate(addrs, spec, options)?;
    let wiring = match &options.cluster {
        Some(cluster) => Some(Arc::new(slot_routing::Wiring::discover(
            addrs,
            options.tls.as_ref(),
            &templates,
            cluster.clone(),
        )?)),
        None => None,
    };
    let addrs: Vec<SocketAddr> = match &wiring {
        // Subscribers spread over the primaries (cluster PUBLISH reaches every node).
        Some(w) => w.links[..w.primaries].to_vec(),
        None => addrs.to_vec(),
    };
    let threads = options.threads.clamp(1, options.connections);
    let shared = Arc::new(Shared {
        aborted: AtomicBool::new(false),
        reason: Mutex::new(None),
        budget: AtomicI64::new(match options.stop {
            Stop::Requests(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Stop::Duration(_) => i64::MAX,
        }),
        completed: AtomicU64::new(0),
        publishers_left: AtomicU32::new(options.connections),
        shutdown: shutdown.clone(),
        tls: options.tls.clone(),
        nodes: options
            .cluster
            .as_ref()
            .map(|c| c.nodes.clone())
            .unwrap_or_default(),
    });
    let subscribe = (spec.subscribers > 0).then(|| SubscribeTo {
        prefix: spec.key_prefix.clone(),
        digits: spec.key_digits as usize,
        channels: spec.keyspace,
    });
    // Workers connect first; the clock starts when every connection is up.
    let gate = Arc::new(Gate::default());
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LoadgenError>>();
    // Each worker says here that it has ended (returned or panicked), so the watch
    // below sleeps until something is due instead of polling the threads.
    let (ended_tx, ended_rx) = mpsc::channel::<()>();
    let mut handles = Vec::new();
    let (first, total) = options
        .share
        .map_or((0, options.connections), |s| (s.first, s.total));
    for worker in 0..threads {
        let mine: Vec<(u32, SocketAddr)> = (0..options.connections)
            .filter(|c| c % threads == worker)
            .map(|c| first + c)
            .map(|c| (c, addrs[c as usize % addrs.len()]))
            .collect();
        let subscribers: Vec<SocketAddr> = (0..spec.subscribers)
            .filter(|s| s % threads == worker)
            .map(|s| addrs[s as usize % addrs.len()])
            .collect();
        let (gate, ready_tx, shared) = (Arc::clone(&gate), ready_tx.clone(), Arc::clone(&shared));
        let ended = Ended(ended_tx.clone());
        let subscribe = subscribe.clone();
        // Pub/sub deliveries are counted in one more slot after the templates.
        let slots = templates.len() + usize::from(spec.subscribers > 0);
        let wiring = wiring.clone();
        let cpus = options.cpus.clone();
        let handle = thread::Builder::new()
            .name(format!("loadgen-{worker}"))
            .spawn(move || {
                let _ended = ended;
                if let Err(e) = crate::placement::pin_thread(&cpus) {
                    let _ = ready_tx.send(Err(LoadgenError::Runtime(e)));
                    return WorkerStats::new(slots);
                }
                worker_main(
                    mine,
                    subscribers,
                    subscribe,
                    slots,
                    wiring,
                    gate,
                    ready_tx,
                    shared,
                )
            })
            .map_err(LoadgenError::Runtime)?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut connect_error = None;
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => connect_error = connect_error.or(Some(e)),
            Err(_) => {}
        }
    }
    let (origin, late_start_us) = match options.start_at {
        None => (Instant::now() + Duration::from_millis(2), 0),
        Some(at) => match at.duration_since(std::time::SystemTime::now()) {
            Ok(ahead) => (Instant::now() + ahead, 0),
            Err(behind) => (
                Instant::now() + Duration::from_millis(2),
                behind.duration().as_micros() as u64,
            ),
        },
    };
    let measure_from = origin + options.warmup;
    let end = match options.stop {
        Stop::Duration(d) => Some(measure_from + d),
        Stop::Requests(_) => None,
    };
    let plan = (connect_error.is_none()).then(|| {
        let value = vec![b'x'; spec.values.max() as usize];
        let fixed = match spec.values {
            ValueSize::Fixed { bytes } => Some(bytes as usize),
            _ => None,
        };
        Arc::new(Plan {
            cumulative: templates
                .iter()
                .zip(&spec.commands)
                .scan(0, |acc, (_, c)| {
                    *acc += c.weight;
                    Some(*acc)
                })
                .collect(),
            rules: templates
                .iter()
                .map(|t| replies::Rule {
                    read: t.read,
                    // GET/HGET replies must have this length when values have a fixed size.
                    value_len: fixed.filter(|_| matches!(t.name.as_str(), "GET" | "HGET")),
                })
                .collect(),
            prepared: templates.iter().map(|t| t.prepare(&value, fixed)).collect(),
            routes: templates
                .iter()
                .map(|t| slot_routing::Route::of(t, spec.keyspace))
                .collect(),
            read_only: templates
                .iter()
                .map(|t| crate::cluster::is_read_only(&t.name))
                .collect(),
            spec: spec.clone(),
            tag_multi_key: options.cluster.as_ref().is_some_and(|c| c.tag_multi_key),
            templates,
            keys: spec.keys.clone(),
            keyspace: spec.keyspace,
            values: spec.values.clone(),
            value,
            seed: spec.seed,
            pipeline: options.pipeline as usize,
            connections: total,
            rate: options.rate,
            origin,
            measure_from,
            measure_from_ns: options.warmup.as_nanos() as u64,
            end,
        })
    });
    gate.open(plan.clone());
    if let Some(e) = connect_error {
        for h in handles {
            let _ = h.join();
        }
        return Err(e);
    }
    let plan = plan.expect("set when every connection is up");
    // Watch the run: progress once a second, CPU at the start of the measured window.
    // The watch sleeps until one of those is due or a worker ends: it shares the
    // generator's CPUs, and waking every few milliseconds cost it context switches.
    drop(ended_tx);
    let cpu_at = |_: ()| cpu_seconds();
    let mut cpu_start = None;
    let mut last_completed = 0;
    let mut next_report = origin + Duration::from_secs(1);
    let mut running = handles.len();
    while running > 0 {
        let now = Instant::now();
        if cpu_start.is_none() && now >= measure_from {
            cpu_start = Some(cpu_at(()));
        }
        if now >= next_report {
            let completed = shared.completed.load(Ordering::Relaxed);
            progress(Progress {
                elapsed: now - origin,
                ops_last_second: completed - last_completed,
                completed,
            });
            last_completed = completed;
            next_report += Duration::from_secs(1);
        }
        let due = match cpu_start {
            None => next_report.min(measure_from),
            Some(_) => next_report,
        };
        match ended_rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(()) => running -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => running = 0,
        }
    }
    let cpu_end = cpu_at(());
    let mut workers = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.join() {
            Ok(stats) => workers.push(stats),
            // Its counts are lost: say so rather than report a smaller run as whole.
            Err(_) => shared
                .abort("a generator thread panicked; its connections' counts are missing".into()),
        }
    }
    let last_reply_ns = workers.iter().map(|w| w.last_reply_ns).max().unwrap_or(0);
    let last_reply = origin + Duration::from_nanos(last_reply_ns);
    let window_end = match plan.end {
        Some(end)
            if !shutdown.is_triggered() && shared.reason.lock().is_ok_and(|r| r.is_none()) =>
        {
            end
        }
        _ => last_reply.max(measure_from),
    };
    let measured_secs = window_end
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let partial = shared
        .reason
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let cpu = cpu_end - cpu_start.unwrap_or(cpu_end);
    let mut report = report::build(
        spec,
        options,
        threads,
        &plan,
        workers,
        measured_secs,
        cpu,
        partial,
    );
    report.late_start_us = late_start_us;
    Ok(report)
}

fn validate(addrs: &[SocketAddr], spec: &WorkloadSpec, o: &RunOptions) -> Result<(), LoadgenError> {
    let bad = |s: String| Err(LoadgenError::Options(s));
    if addrs.is_empty() {
        return bad("no server address".into());
    }
    if !(1..=100_000).contains(&o.connections) {
        return bad(format!("connections {}: use 1 to 100000", o.connections));
    }
    if !(1..=100_000).contains(&o.pipeline) {
        return bad(format!("pipeline {}: use 1 to 100000", o.pipeline));
    }
    if let Some(share) = o.share
        && u64::from(share.first) + u64::from(o.connections) > u64::from(share.total)
    {
        return bad(format!(
            "share: connections {}..{} of {}: past the whole run's",
            share.first,
            u64::from(share.first) + u64::from(o.connections),
            share.total
        ));
    }
    engine::check_rate(o.rate).or_else(bad)?;
    match o.stop {
        Stop::Duration(d) if d.is_zero() => {
            return bad("duration 0: give a positive duration".into());
        }
        Stop::Requests(0) => return bad("requests 0: give at least one request".into()),
        _ => {}
    }
    KeySampler::new(&spec.keys, spec.keyspace, 0, 1).map_err(LoadgenError::Options)?;
    Ok(())
}

/// What subscriber connections subscribe to.
#[derive(Clone)]
struct SubscribeTo {
    prefix: String,
    digits: usize,
    channels: u64,
}

/// The name of the pub/sub delivery counters in reports.
pub const DELIVERY: &str = "DELIVERY";

#[allow(clippy::too_many_arguments)]
fn worker_main(
    connections: Vec<(u32, SocketAddr)>,
    subscribers: Vec<SocketAddr>,
    subscribe: Option<SubscribeTo>,
    templates: usize,
    wiring: Option<Arc<slot_routing::Wiring>>,
    gate: Arc<Gate>,
    ready: mpsc::Sender<Result<(), LoadgenError>>,
    shared: Arc<Shared>,
) -> WorkerStats {
    let stats = Rc::new(RefCell::new(WorkerStats::new(templates)));
    let runtime = match runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(LoadgenError::Runtime(e)));
            return unwrap_stats(stats);
        }
    };
    let per_node = wiring.is_some();
    let streams = runtime.block_on(async {
        let mut streams = Vec::with_capacity(connections.len());
        for &(index, addr) in &connections {
            let targets: Vec<(SocketAddr, bool)> = match &wiring {
                Some(w) => w
                    .links
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| (a, i >= w.primaries))
                    .collect(),
                None => vec![(addr, false)],
            };
            let mut links = Vec::with_capacity(targets.len());
            for (addr, readonly) in targets {
                let mut stream = Wire::connect(addr, shared.tls.as_ref())
                    .await
                    .map_err(|why| LoadgenError::Connect { addr, why })?;
                slot_routing::ping(&mut stream)
                    .await
                    .map_err(|why| LoadgenError::Connect { addr, why })?;
                if readonly {
                    slot_routing::readonly_mode(&mut stream)
                        .await
                        .map_err(|why| LoadgenError::Connect { addr, why })?;
                }
                let node = per_node.then(|| stats.borrow_mut().node(addr));
                links.push(conn::Link::new(addr, stream, readonly, node));
            }
            streams.push((index, links));
        }
        let mut subscribed = Vec::with_capacity(subscribers.len());
        if let Some(to) = &subscribe {
            for &addr in &subscribers {
                let mut stream = Wire::connect(addr, shared.tls.as_ref())
                    .await
                    .map_err(|why| LoadgenError::Connect { addr, why })?;
                subscriber::subscribe(&mut stream, &to.prefix, to.digits, to.channels)
                    .await
                    .map_err(|why| LoadgenError::Connect { addr, why })?;
                subscribed.push(stream);
            }
        }
        Ok::<_, LoadgenError>((streams, subscribed))
    });
    let (streams, subscribed) = match streams {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return unwrap_stats(stats);
        }
    };
    let Some(plan) = gate.wait() else {
        return unwrap_stats(stats); // another worker failed to connect
    };
    let owners = wiring
        .as_ref()
        .map(|w| Rc::new(slot_routing::Owners::new(&w.owner, &w.links)));
    for (index, links) in streams {
        let routing =
            wiring
                .as_ref()
                .zip(owners.as_ref())
                .map(|(w, owners)| slot_routing::Routing {
                    owners: Rc::clone(owners),
                    link_of: (0..w.links.len() as u16).collect(),
                    replicas_of: w.replicas_of.clone(),
                    primaries: w.primaries,
                    read_from: w.read_from,
                    next: index as usize,
                });
        let tagged = if routing.is_some() {
            plan.tagged(index)
        } else {
            (0..plan.templates.len()).map(|_| None).collect()
        };
        let connection = conn::Connection::new(
            index,
            links,
            routing,
            tagged,
            Arc::clone(&plan),
            Arc::clone(&shared),
            Rc::clone(&stats),
        );
        runtime.spawn(connection.run(plan.origin));
    }
    for stream in subscribed {
        let subscriber = subscriber::Subscriber {
            stream,
            plan: Arc::clone(&plan),
            shared: Arc::clone(&shared),
            stats: Rc::clone(&stats),
            slot: templates - 1,
        };
        runtime.spawn(subscriber.run());
    }
    runtime.run();
    unwrap_stats(stats)
}

fn unwrap_stats(stats: Rc<RefCell<WorkerStats>>) -> WorkerStats {
    // Every connection task has ended, so this is the last reference; clone if not.
    Rc::try_unwrap(stats).map_or_else(|rc| rc.borrow().clone(), RefCell::into_inner)
}

/// This process's CPU time, user + system, in seconds.
pub fn cpu_seconds() -> f64 {
    CpuTime::of(libc::RUSAGE_SELF).total()
}

/// User and system CPU seconds from `getrusage`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    /// `RUSAGE_SELF` for this process, `RUSAGE_CHILDREN` for its reaped children.
    pub fn of(who: libc::c_int) -> CpuTime {
        // SAFETY: getrusage fills the struct we pass; callers pass RUSAGE_SELF or
        // RUSAGE_CHILDREN, which are always valid.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        CpuTime {
            user: secs(usage.ru_utime),
            system: secs(usage.ru_stime),
        }
    }

    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, rhs: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - rhs.user,
            system: self.system - rhs.system,
        }
    }
}
