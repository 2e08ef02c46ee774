//! Test-only: a global allocator that counts this thread's allocations, so tests can show
//! that the generator's per-request path allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::{KeyDistribution, KeySampler, worker_rng};
    use crate::loadgen::stats::new_histogram;
    use crate::resp;
    use crate::workload::{Fill, WorkloadSpec};

    #[test]
    fn the_per_request_path_does_not_allocate() {
        let mut spec = WorkloadSpec::preset("basic_rw").unwrap().0;
        spec.commands.push(crate::workload::WeightedCommand {
            command: "ZADD".into(),
            weight: 1,
        });
        spec.commands.push(crate::workload::WeightedCommand {
            command: "PUBLISH".into(),
            weight: 1,
        });
        let templates = spec.compile().unwrap();
        let mut keys =
            KeySampler::new(&KeyDistribution::Zipf { s: 0.99 }, spec.keyspace, 0, 1).unwrap();
        let mut members = KeySampler::new(&KeyDistribution::Uniform, spec.keyspace, 0, 1).unwrap();
        let (mut key_rng, mut member_rng) = (worker_rng(1, 0), worker_rng(1, 1));
        let value = vec![b'x'; 64];
        let mut wbuf = Vec::with_capacity(1 << 20);
        let replies =
            b"+OK\r\n$32\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n:1\r\n$-1\r\n*2\r\n:1\r\n:2\r\n"
                .repeat(100);
        let mut histogram = new_histogram();
        let before = allocations();
        for i in 0..2000u64 {
            let t = &templates[(i % templates.len() as u64) as usize];
            let fill = Fill {
                value: &value,
                value_len: 32,
                score: i,
                stamp: i * 1000,
            };
            t.encode(
                &mut wbuf,
                &mut || keys.sample(&mut key_rng),
                &mut || members.sample(&mut member_rng),
                &fill,
            );
        }
        let mut pos = 0;
        while pos < replies.len() {
            let (_, used) = resp::scan(&replies[pos..]).unwrap();
            histogram.saturating_record(used as u64 * 10);
            pos += used;
        }
        assert_eq!(allocations() - before, 0, "the hot path allocated");
        assert!(wbuf.len() > 2000 * 20);
        // The counter itself works: one allocation is seen.
        let boxed = std::hint::black_box(Box::new(7u64));
        assert_eq!(allocations() - before, 1);
        drop(boxed);
    }
}
