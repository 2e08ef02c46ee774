//! The heartbeat and the watchdog against a seat whose renewals fail: a short outage is
//! retried soon and holds the task, a long one fences it.

use super::*;
use crate::queue::{Claimed, Outcome};
use std::sync::atomic::AtomicU32;

/// A seat whose renewals fail (the queue out of reach) for the first `failing` calls.
struct Flaky {
    failing: u32,
    fences: bool,
    calls: AtomicU32,
    at: std::sync::Mutex<Vec<Instant>>,
}

impl Flaky {
    fn new(failing: u32) -> Flaky {
        Flaky {
            failing,
            fences: true,
            calls: AtomicU32::new(0),
            at: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Seat for Flaky {
    fn id(&self) -> &str {
        "flaky"
    }
    fn lease(&self) -> Duration {
        Duration::from_secs(3)
    }
    fn renew(&self) -> anyhow::Result<bool> {
        self.at.lock().unwrap().push(Instant::now());
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failing {
            return Err(Unreachable {
                location: "test".into(),
                why: "down".into(),
            }
            .into());
        }
        Ok(true)
    }
    fn lease_fences(&self) -> bool {
        self.fences
    }
    fn claim(&self, _: u32) -> anyhow::Result<Option<Claimed>> {
        Ok(None)
    }
    fn report(&self, _: &Task, _: &Status) -> anyhow::Result<()> {
        Ok(())
    }
    fn finish(&self, _: Task, _: Outcome) -> anyhow::Result<bool> {
        Ok(true)
    }
    fn reclaim_dead(&self) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn leave(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Runs the heartbeat and the watchdog on `seat` for `run`; whether the task was
/// fenced.
fn fenced(seat: &Flaky, run: Duration) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let queue = crate::queue::dir::DirQueue::open(tmp.path()).unwrap();
    let post = Post {
        queue: &queue,
        runner: seat,
        metrics: None,
        outage: Outage::default(),
    };
    let task = Task::new(crate::queue::TaskKind::Bench, Vec::new());
    let (done, lost, hold) = (AtomicBool::new(false), AtomicBool::new(false), Hold::new());
    let shutdown = Shutdown::new();
    let (_tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| heartbeat(&post, &task, rx, &hold, &done, &lost, &shutdown));
        s.spawn(|| watchdog(seat, &task, &hold, &done, &lost, &shutdown));
        std::thread::sleep(run);
        done.store(true, Ordering::SeqCst);
    });
    lost.load(Ordering::SeqCst)
}

#[test]
fn a_failed_renewal_is_tried_again_soon_and_only_a_long_outage_fences_the_task() {
    // Lease 3 s: renewals every 1 s, the fence at 2 s. The first renewal (at 1 s)
    // fails; its retry half a second later holds the task.
    let once = Flaky::new(1);
    assert!(!fenced(&once, Duration::from_millis(4500)));
    let at = once.at.lock().unwrap().clone();
    assert!(at.len() >= 3, "{at:?}");
    let retry = at[1] - at[0];
    assert!(
        retry < Duration::from_millis(900),
        "retried after {retry:?}"
    );
    // Out of reach for good: fenced at two thirds of the lease.
    let down = Flaky::new(u32::MAX);
    assert!(fenced(&down, Duration::from_millis(3000)));
}

#[test]
fn where_the_lease_fences_nothing_a_failing_renewal_stops_nothing() {
    // The directory queue: its flock says the runner is alive, whatever its lease file.
    let disk_full = Flaky {
        fences: false,
        ..Flaky::new(u32::MAX)
    };
    assert!(!fenced(&disk_full, Duration::from_millis(3000)));
    assert!(disk_full.calls.load(Ordering::SeqCst) >= 3);
}
