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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bench_core::distribution::{KeyDistribution, ValueSize};
use bench_core::loadgen::{self, RunOptions, Stop};
use bench_core::shutdown::Shutdown;
use bench_core::workload::{WeightedCommand, WorkloadSpec};
use util::{build_json, start_instances};

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

/// Every read command's reply kind (null, empty aggregate, `:0`, MGET's elements), large
/// LRANGE/HGETALL replies that arrive over several reads, writes of every shape.
fn mix(prefix: &str, values: ValueSize) -> WorkloadSpec {
    let mut spec = WorkloadSpec::single("GET", 200, 64);
    spec.name = "alloc-mix".into();
    spec.key_prefix = prefix.into();
    spec.keys = KeyDistribution::Zipf { s: 0.99 };
    spec.values = values;
    spec.commands = [
        ("GET", 20),
        ("SET", 20),
        ("MGET", 5),
        ("LPUSH", 10),
        ("LRANGE", 5),
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

struct Case {
    name: &'static str,
    spec: WorkloadSpec,
    options: RunOptions,
    /// N: the short run's requests.
    requests: u64,
}

/// Allocations during a run of `requests` requests, and the report's request count.
fn allocations_for(addr: std::net::SocketAddr, case: &Case, requests: u64) -> (u64, u64) {
    let options = RunOptions {
        stop: Stop::Requests(requests),
        ..case.options.clone()
    };
    let shutdown = Shutdown::new();
    let (before, began) = (allocations(), std::time::Instant::now());
    let report = loadgen::run(&[addr], &case.spec, &options, &shutdown, |_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let used = allocations() - before;
    eprintln!(
        "{}: {requests} requests in {:?}",
        case.name,
        began.elapsed()
    );
    assert!(
        report.partial.is_none() && report.errors.is_empty(),
        "{}: the run failed: {:?} {:?}",
        case.name,
        report.partial,
        report.errors
    );
    (used, report.requests)
}

#[test]
fn the_engine_allocates_nothing_per_request() {
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, started) = start_instances(1, 9990, tmp.path());
    let port = started["instances"][0]["port"].as_u64().unwrap() as u16;
    let addr = ([127, 0, 0, 1], port).into();
    let closed = RunOptions {
        connections: 4,
        pipeline: 16,
        threads: 1,
        rate: None,
        stop: Stop::Requests(0),
        warmup: Duration::ZERO,
    };
    let cases = [
        Case {
            // Fixed sizes: requests are assembled from pre-encoded segments.
            name: "closed loop, fixed values",
            spec: mix("fixed:", ValueSize::Fixed { bytes: 64 }),
            options: closed.clone(),
            requests: 20_000,
        },
        Case {
            // Varying sizes: requests are encoded from templates.
            name: "closed loop, values of 16 to 1024 bytes",
            spec: mix("uniform:", ValueSize::Uniform { min: 16, max: 1024 }),
            options: closed.clone(),
            requests: 20_000,
        },
        Case {
            // The schedule, send lag and the busy poll before due sends.
            name: "open loop at 20,000 requests/s",
            spec: mix("open:", ValueSize::Fixed { bytes: 64 }),
            options: RunOptions {
                connections: 4,
                pipeline: 4,
                rate: Some(20_000.0),
                ..closed.clone()
            },
            requests: 4_000,
        },
    ];
    for case in &cases {
        // The first run also grows the server's lists, sets and hashes for the next ones.
        let (short, short_requests) = allocations_for(addr, case, case.requests);
        let (long, long_requests) = allocations_for(addr, case, case.requests * 6);
        assert_eq!(short_requests, case.requests, "{}", case.name);
        assert_eq!(long_requests, case.requests * 6, "{}", case.name);
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
