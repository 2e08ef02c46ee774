//! The generator's own async runtime: one per worker thread, one epoll set (through mio),
//! and the tasks of that thread's connections, each polled when one of its sockets is
//! ready or one of its timers is due.
//!
//! Why not tokio's: at pipeline 16 its scheduler, I/O driver and timer wheel (atomic task
//! states, reference-counted wakers, queues built to be shared between threads) took about
//! a fifth of the generator's user time, as much as encoding and scanning together. This
//! one does only what a worker needs: a waker is a task's index, a socket remembers
//! whether it was last found readable and writable (so the read after a short one costs no
//! system call), and a timer is a deadline in a heap.
//!
//! Limits, by design: one thread (a wake from another thread is lost, or polls whatever
//! task has that index on that thread's runtime, spuriously; nothing of the generator's
//! wakes across threads), and timers have epoll's
//! millisecond resolution (the open loop spins through the last 2 ms before a send).
//! Spurious polls are allowed, as for any future: a stale timer or a reused task index
//! polls a task that then finds nothing to do.

use std::cell::{Cell, RefCell};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use mio::Events;

mod socket;

pub use socket::Socket;

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The task index `block_on`'s own future is polled as.
const MAIN: usize = usize::MAX;

thread_local! {
    /// The runtime of this thread, for wakers (which carry only a task's index).
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// A worker thread's runtime. At most one per thread at a time.
pub struct Runtime {
    core: Rc<Core>,
}

struct Core {
    poll: RefCell<mio::Poll>,
    events: RefCell<Events>,
    registry: mio::Registry,
    /// Per socket slot (a socket's epoll token).
    sockets: RefCell<Vec<Readiness>>,
    free_sockets: RefCell<Vec<usize>>,
    timers: RefCell<BinaryHeap<Reverse<Timer>>>,
    /// Orders timers of equal deadline, so the heap never compares wakers.
    timer_seq: Cell<u64>,
    tasks: RefCell<Vec<Option<Task>>>,
    free_tasks: RefCell<Vec<usize>>,
    /// Tasks spawned and not yet finished.
    live: Cell<usize>,
    ready: RefCell<VecDeque<usize>>,
    /// Per task: in `ready` already (a task is queued once however often it is woken).
    queued: RefCell<Vec<bool>>,
    main_queued: Cell<bool>,
    /// Socket operations the polled task may still complete before it must yield.
    quota: Cell<u32>,
    /// When epoll last returned: what timers are compared with (a clock read saved per
    /// poll of a sleeping task; a timer found due late fires at the next turn).
    now: Cell<Instant>,
}

/// Socket operations a task completes in one poll before it is made to yield, so a
/// connection whose socket always has data (a busy subscriber) cannot starve the others
/// or the runtime's look at its sockets and timers.
const QUOTA: u32 = 128;

/// What a socket was last found to be, and who waits for it.
#[derive(Default)]
struct Readiness {
    readable: bool,
    writable: bool,
    /// The peer closed, or the socket failed: final, never cleared (with edge-triggered
    /// epoll there is no second event for it, and the last data and the close often come
    /// in one, so a short read must not hide the end of the stream behind it).
    read_closed: bool,
    write_closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

struct Timer {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Timer) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Timer) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    fn cmp(&self, other: &Timer) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_raw, drop_raw);

fn clone_raw(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake_raw(data: *const ()) {
    CURRENT.with(|current| {
        if let Some(core) = &*current.borrow() {
            core.schedule(data as usize);
        }
    });
}

fn drop_raw(_: *const ()) {}

/// The waker of task `id`: its index in the pointer, nothing behind it.
fn waker(id: usize) -> Waker {
    // SAFETY: the vtable's functions never dereference the data pointer (it is an index),
    // clone and drop own nothing, and waking from any thread only looks at that thread's
    // runtime, so every RawWaker contract (thread safety included) holds.
    unsafe { Waker::from_raw(RawWaker::new(id as *const (), &VTABLE)) }
}

fn current() -> io::Result<Rc<Core>> {
    CURRENT
        .with(|current| current.borrow().clone())
        .ok_or_else(|| {
            io::Error::other("no generator runtime on this thread (a socket outside Runtime)")
        })
}

impl Runtime {
    /// A runtime for this thread. Fails if the thread has one already.
    pub fn new() -> io::Result<Runtime> {
        if CURRENT.with(|current| current.borrow().is_some()) {
            return Err(io::Error::other(
                "this thread has a generator runtime already",
            ));
        }
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let core = Rc::new(Core {
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(256)),
            registry,
            sockets: RefCell::default(),
            free_sockets: RefCell::default(),
            timers: RefCell::default(),
            timer_seq: Cell::new(0),
            tasks: RefCell::default(),
            free_tasks: RefCell::default(),
            live: Cell::new(0),
            ready: RefCell::default(),
            queued: RefCell::default(),
            main_queued: Cell::new(false),
            quota: Cell::new(QUOTA),
            now: Cell::new(Instant::now()),
        });
        CURRENT.with(|current| *current.borrow_mut() = Some(Rc::clone(&core)));
        Ok(Runtime { core })
    }

    /// Adds a task, first polled by the next `block_on` or `run`.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        let core = &self.core;
        let task: Task = Box::pin(task);
        let id = match core.free_tasks.borrow_mut().pop() {
            Some(id) => {
                core.tasks.borrow_mut()[id] = Some(task);
                id
            }
            None => {
                let mut tasks = core.tasks.borrow_mut();
                tasks.push(Some(task));
                core.queued.borrow_mut().push(false);
                tasks.len() - 1
            }
        };
        core.live.set(core.live.get() + 1);
        core.schedule(id);
    }

    /// Runs `fut`, and the spawned tasks beside it, until `fut` is done.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let core = &self.core;
        let waker = waker(MAIN);
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(fut);
        core.schedule(MAIN);
        loop {
            // Only the tasks ready when the turn began: one that yields (the open loop's
            // spin) is polled again after the sockets have been looked at.
            let turn = core.ready.borrow().len();
            for _ in 0..turn {
                let Some(id) = core.pop_ready() else { break };
                core.quota.set(QUOTA);
                if id == MAIN {
                    if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                        return out;
                    }
                } else {
                    core.poll_task(id);
                }
            }
            core.wait();
        }
    }

    /// Runs the spawned tasks until every one has finished.
    pub fn run(&self) {
        let core = Rc::clone(&self.core);
        self.block_on(poll_fn(move |_| {
            if core.live.get() == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Tasks own sockets, which hold the core: drop them here, not in a cycle.
        let tasks = std::mem::take(&mut *self.core.tasks.borrow_mut());
        drop(tasks);
        self.core.timers.borrow_mut().clear();
        CURRENT.with(|current| *current.borrow_mut() = None);
    }
}

impl Core {
    fn schedule(&self, id: usize) {
        if id == MAIN {
            if !self.main_queued.replace(true) {
                self.ready.borrow_mut().push_back(MAIN);
            }
            return;
        }
        let mut queued = self.queued.borrow_mut();
        if let Some(q) = queued.get_mut(id)
            && !*q
        {
            *q = true;
            self.ready.borrow_mut().push_back(id);
        }
    }

    fn pop_ready(&self) -> Option<usize> {
        let id = self.ready.borrow_mut().pop_front()?;
        if id == MAIN {
            self.main_queued.set(false);
        } else {
            self.queued.borrow_mut()[id] = false;
        }
        Some(id)
    }

    fn poll_task(&self, id: usize) {
        // Out of its slot while polled: the task may spawn others.
        let Some(mut task) = self.tasks.borrow_mut().get_mut(id).and_then(Option::take) else {
            return;
        };
        let waker = waker(id);
        if task
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            drop(task);
            self.free_tasks.borrow_mut().push(id);
            self.live.set(self.live.get() - 1);
            self.schedule(MAIN);
        } else {
            self.tasks.borrow_mut()[id] = Some(task);
        }
    }

    /// Waits for a socket to become ready or a timer to come due (not at all when a task
    /// is ready), and wakes whoever waits for it.
    fn wait(&self) {
        let timeout = if self.ready.borrow().is_empty() {
            self.timers
                .borrow()
                .peek()
                .map(|t| t.0.at.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        let mut events = self.events.borrow_mut();
        match self.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            // epoll_wait fails only on a bad descriptor or buffer: a bug, not a condition.
            Err(e) => panic!("epoll_wait: {e}"),
        }
        for event in events.iter() {
            let (reader, writer) = {
                let mut sockets = self.sockets.borrow_mut();
                let Some(slot) = sockets.get_mut(event.token().0) else {
                    continue;
                };
                let mut reader = None;
                let mut writer = None;
                slot.read_closed |= event.is_read_closed() || event.is_error();
                slot.write_closed |= event.is_write_closed() || event.is_error();
                if event.is_readable() || slot.read_closed {
                    slot.readable = true;
                    reader = slot.reader.take();
                }
                if event.is_writable() || slot.write_closed {
                    slot.writable = true;
                    writer = slot.writer.take();
                }
                (reader, writer)
            };
            for w in reader.into_iter().chain(writer) {
                // One of ours (a task's index): queue it here, without the thread-local
                // lookup `wake` makes.
                if std::ptr::eq(w.vtable(), &VTABLE) {
                    self.schedule(w.data() as usize);
                } else {
                    w.wake();
                }
            }
        }
        drop(events);
        let now = Instant::now();
        self.now.set(now);
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.peek() {
                    Some(t) if t.0.at <= now => timers.pop(),
                    _ => None,
                }
            };
            match due {
                Some(Reverse(timer)) => timer.waker.wake(),
                None => break,
            }
        }
    }

    fn add_timer(&self, at: Instant, waker: Waker) {
        let seq = self.timer_seq.get();
        self.timer_seq.set(seq + 1);
        self.timers
            .borrow_mut()
            .push(Reverse(Timer { at, seq, waker }));
    }
}

/// A deadline: ready once it has passed. Re-armed with [`Sleep::reset`].
pub struct Sleep {
    deadline: Instant,
    /// The deadline a timer is in the heap for.
    armed: Option<Instant>,
    /// The runtime it was first polled in: later polls (one per read for a connection's
    /// tick) skip the thread-local lookup.
    core: Option<Rc<Core>>,
}

/// Ready `duration` from now.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Ready at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        armed: None,
        core: None,
    }
}

impl Sleep {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let arm = self.armed != Some(deadline);
        let core = match &self.core {
            Some(core) => core,
            // No runtime on this thread: nothing would wake a sleeper, so a sleep outside
            // one is a bug; say so rather than hang.
            None => self.core.insert(
                CURRENT
                    .with(|current| current.borrow().clone())
                    .expect("runtime::Sleep polled outside a generator runtime"),
            ),
        };
        if core.now.get() >= deadline {
            return Poll::Ready(());
        }
        if arm {
            core.add_timer(deadline, cx.waker().clone());
        }
        self.armed = Some(deadline);
        Poll::Pending
    }
}

/// `fut` unless `duration` passes first.
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, TimedOut> {
    let mut fut = pin!(fut);
    let mut deadline = sleep(duration);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if Pin::new(&mut deadline).poll(cx).is_ready() {
            return Poll::Ready(Err(TimedOut));
        }
        Poll::Pending
    })
    .await
}

/// What [`timeout`] returns when the time ran out.
#[derive(Debug)]
pub struct TimedOut;

/// Lets the runtime poll every other ready task, and look at its sockets, before this
/// one goes on.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_refused_connection_is_an_error_and_a_timeout_fires() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let rt = Runtime::new().unwrap();
        let refused = rt.block_on(Socket::connect(addr));
        assert!(refused.is_err());
        let started = Instant::now();
        let late = rt.block_on(timeout(
            Duration::from_millis(20),
            std::future::pending::<()>(),
        ));
        assert!(late.is_err());
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(Runtime::new().is_err(), "one runtime per thread");
        drop(rt);
        assert!(
            Runtime::new().is_ok(),
            "a thread may have another after the first"
        );
    }
}
