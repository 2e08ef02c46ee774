//! The perf engine's steady state allocates nothing per request, shown on the real loop
//! (`loadgen::run` against a real `valkey-server`), not on its parts.
//!
//! This binary has a counting global allocator and this one test, so nothing else in the
//! process allocates while it runs. Each case runs the same workload twice, for N and for
//! 6N requests: what the engine allocates once (threads, runtime, buffers, the report) or
//! once per second (a series histogram) is in both, so the difference over the 5N extra
//! requests is what the per-request path allocates. Zero is the design; the bound allows
//! the per-second part (a handful a second) and nothing else: one allocation per request
//! would be 100 times over it, one per read batch of 16 pipelined replies 6 times.

#[allow(dead_code)] // the helpers this test does not use
#[path = "../e2e/util.rs"]
mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bench_core::client::Client;
use bench_core::distribution::{KeyDistribution, ValueSize};
use bench_core::loadgen::{self, RunOptions, Stop};
use bench_core::shutdown::Shutdown;
use bench_core::workload::{WeightedCommand, WorkloadSpec};
use util::{build_json, ports, start_instances};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) in the whole process so far.
fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Every read command's reply kind (null, empty aggregate, `:0`, MGET's elements), LRANGE
/// replies larger than the read buffer (see [`preload_lists`]), writes of every shape.
fn mix(prefix: &str, values: ValueSize) -> WorkloadSpec {
    let mut spec = WorkloadSpec::single("GET", KEYSPACE, 64);
    spec.name = "alloc-mix".into();
    spec.key_prefix = prefix.into();
    spec.keys = KeyDistribution::Zipf { s: 0.99 };
    spec.values = values;
    spec.commands = [
        ("GET", 20),
        ("SET", 20),
        ("MGET", 5),
        // RPUSH appends: LRANGE 0 99 keeps reading the preloaded head.
        ("RPUSH", 10),
        ("LRANGE", 2),
        ("SADD", 5),
        ("SISMEMBER", 5),
        ("HSET", 5),
        ("HGET", 5),
        ("HGETALL", 5),
        ("ZADD", 5),
        ("ZRANGE", 5),
        ("PUBLISH", 1),
    ]
    .into_iter()
    .map(|(command, weight)| WeightedCommand {
        command: command.into(),
        weight,
    })
    .collect();
    spec
}

const KEYSPACE: u64 = 100;

/// 100 elements of 1 KiB at the head of every list the workload reads: each LRANGE 0 99
/// reply is ~100 KiB, more than the engine's 64 KiB read buffer, so replies arrive over
/// several reads and the scanner resumes them.
fn preload_lists(addr: SocketAddr, spec: &WorkloadSpec) {
    let mut client = Client::connect(addr, None, Duration::from_secs(5)).unwrap();
    let element = vec![b'e'; 1024];
    for i in 0..spec.keyspace {
        let key = spec.key_name("list", i);
        let mut args: Vec<&[u8]> = vec![b"RPUSH", key.as_bytes()];
        args.extend(std::iter::repeat_n(element.as_slice(), 100));
        assert_eq!(client.call_int(&args).unwrap(), 100);
    }
}

struct Case {
    name: &'static str,
    spec: WorkloadSpec,
    options: RunOptions,
    /// The short run, and the long one that sends about 6 times as many requests.
    short: Stop,
    long: Stop,
}

/// Allocations during one run, and the requests it measured.
fn allocations_for(addr: SocketAddr, case: &Case, stop: Stop) -> (u64, u64) {
    let options = RunOptions {
        stop,
        ..case.options.clone()
    };
    let shutdown = Shutdown::new();
    let (before, began) = (allocations(), Instant::now());
    let report = loadgen::run(&[addr], &case.spec, &options, &shutdown, |_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let used = allocations() - before;
    eprintln!(
        "{}: {} requests in {:?}",
        case.name,
        report.requests,
        began.elapsed()
    );
    assert!(
        report.partial.is_none() && report.errors.is_empty(),
        "{}: the run failed: {:?} {:?}",
        case.name,
        report.partial,
        report.errors
    );
    if case.spec.subscribers > 0 {
        let delivered = report.commands.iter().find(|c| c.command == "DELIVERY");
        assert!(
            delivered.is_some_and(|d| d.requests > 0),
            "{}: no message reached a subscriber",
            case.name
        );
    }
    (used, report.requests)
}

#[test]
fn the_engine_allocates_nothing_per_request() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, started) = start_instances(1, ports(1), tmp.path());
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    let addr = ([127, 0, 0, 1], port).into();
    let closed = RunOptions {
        connections: 4,
        pipeline: 16,
        threads: 1,
        rate: None,
        stop: Stop::Requests(0),
        warmup: Duration::ZERO,
        cluster: None,
        cpus: Vec::new(),
        tls: None,
        share: None,
        start_at: None,
    };
    let (short, long) = (Stop::Requests(20_000), Stop::Requests(120_000));
    let mut pubsub = mix("pubsub:", ValueSize::Fixed { bytes: 64 });
    pubsub.subscribers = 2;
    for c in &mut pubsub.commands {
        if c.command == "PUBLISH" {
            c.weight = 20;
        }
    }
    let cases = [
        Case {
            // Fixed sizes: most requests are assembled from pre-encoded segments.
            name: "closed loop, fixed values",
            spec: mix("fixed:", ValueSize::Fixed { bytes: 64 }),
            options: closed.clone(),
            short,
            long,
        },
        Case {
            // Varying sizes: requests are encoded from templates.
            name: "closed loop, values of 16 to 1024 bytes",
            spec: mix("uniform:", ValueSize::Uniform { min: 16, max: 1024 }),
            options: closed.clone(),
            short,
            long,
        },
        Case {
            // Two subscribers time every message.
            name: "closed loop, pub/sub",
            spec: pubsub,
            options: closed.clone(),
            short,
            long,
        },
        Case {
            // Sends 200 µs apart per connection: the busy poll before due sends.
            name: "open loop at 20,000 requests/s",
            spec: mix("open:", ValueSize::Fixed { bytes: 64 }),
            options: RunOptions {
                pipeline: 4,
                rate: Some(20_000.0),
                ..closed.clone()
            },
            short: Stop::Requests(4_000),
            long: Stop::Requests(24_000),
        },
        Case {
            // Sends 2.5 ms apart per connection: the timer between them, and the perf
            // suite's way of running (a warmup, then a measured duration).
            name: "open loop at 6,400 requests/s for a duration",
            spec: mix("timer:", ValueSize::Fixed { bytes: 64 }),
            options: RunOptions {
                connections: 16,
                pipeline: 1,
                rate: Some(6_400.0),
                warmup: Duration::from_millis(300),
                ..closed.clone()
            },
            short: Stop::Duration(Duration::from_millis(500)),
            long: Stop::Duration(Duration::from_secs(3)),
        },
    ];
    for case in &cases {
        preload_lists(addr, &case.spec);
        // The first run also grows the sets and hashes for the second.
        let (short, short_requests) = allocations_for(addr, case, case.short);
        let (long, long_requests) = allocations_for(addr, case, case.long);
        if let (Stop::Requests(s), Stop::Requests(l)) = (case.short, case.long) {
            assert_eq!((short_requests, long_requests), (s, l), "{}", case.name);
        }
        assert!(long_requests >= 5 * short_requests, "{}", case.name);
        let extra_requests = long_requests - short_requests;
        let extra = long.saturating_sub(short);
        let per_request = extra as f64 / extra_requests as f64;
        eprintln!(
            "{}: {short} allocations for {short_requests} requests, {long} for \
             {long_requests}: {per_request:.5} per extra request",
            case.name
        );
        assert!(
            per_request < 0.01,
            "{}: {extra} allocations for {extra_requests} more requests ({short} for \
             {short_requests}, {long} for {long_requests}): the per-request path allocates",
            case.name
        );
    }
    // The counter sees allocations at all.
    let before = allocations();
    let boxed = std::hint::black_box(Box::new(7u64));
    assert_eq!(allocations() - before, 1);
    drop(boxed);
    server.stop(Duration::from_secs(20));
}
