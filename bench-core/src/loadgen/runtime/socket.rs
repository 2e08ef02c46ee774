//! The runtime's sockets: non-blocking TCP registered with the thread's epoll set, each
//! remembering whether it was last found readable and writable.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use mio::{Interest, Token};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Core, Readiness, current};

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Read,
    Write,
}

/// A non-blocking TCP connection registered with this thread's runtime.
pub struct Socket {
    stream: mio::net::TcpStream,
    slot: usize,
    core: Rc<Core>,
}

impl Socket {
    /// Connects without blocking the thread (other tasks run while it completes).
    pub async fn connect(addr: SocketAddr) -> io::Result<Socket> {
        let core = current()?;
        let mut stream = mio::net::TcpStream::connect(addr)?;
        let slot = match core.free_sockets.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                let mut sockets = core.sockets.borrow_mut();
                sockets.push(Readiness::default());
                sockets.len() - 1
            }
        };
        // Until the first writable event the connection is in progress.
        core.sockets.borrow_mut()[slot] = Readiness::default();
        let registered = core.registry.register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        );
        let socket = Socket { stream, slot, core };
        registered?;
        loop {
            poll_fn(|cx| socket.poll_ready(cx, Direction::Write)).await;
            if let Some(e) = socket.stream.take_error()? {
                return Err(e);
            }
            match socket.stream.peer_addr() {
                Ok(_) => return Ok(socket),
                // Woken before the connection completed: wait again.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    socket.clear(Direction::Write);
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.stream.set_nodelay(nodelay)
    }

    fn clear(&self, direction: Direction) {
        let mut sockets = self.core.sockets.borrow_mut();
        match direction {
            Direction::Read => sockets[self.slot].readable = false,
            Direction::Write => sockets[self.slot].writable = false,
        }
    }

    /// Ready if the socket was last found ready in `direction` and the task has quota
    /// left; else waits for it (or yields).
    fn poll_ready(&self, cx: &mut Context<'_>, direction: Direction) -> Poll<()> {
        let quota = self.core.quota.get();
        if quota == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.core.quota.set(quota - 1);
        let mut sockets = self.core.sockets.borrow_mut();
        let slot = &mut sockets[self.slot];
        let (ready, waiter) = match direction {
            Direction::Read => (slot.readable || slot.read_closed, &mut slot.reader),
            Direction::Write => (slot.writable || slot.write_closed, &mut slot.writer),
        };
        if ready {
            return Poll::Ready(());
        }
        match waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Reads what is there into `buf`: `Ready(Ok(0))` is the end of the stream. A read
    /// that does not fill `buf` marks the socket not readable, so the next read waits for
    /// epoll instead of asking the kernel again.
    pub fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.poll_ready(cx, Direction::Read).is_pending() {
                return Poll::Pending;
            }
            // SAFETY: recv writes at most `buf.len()` bytes at `buf`, which is valid for
            // writes of that many; MaybeUninit needs no initialization before.
            let n = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                )
            };
            if let Some(done) = self.settle(n, buf.len(), Direction::Read) {
                return Poll::Ready(done);
            }
        }
    }

    /// What a `recv` or `send` of `len` bytes that returned `n` comes to; `None`: try
    /// again (interrupted, or it would block and the socket now waits for epoll). One that
    /// moved fewer bytes than asked marks the socket not ready that way, except a read of
    /// none, which is the end of the stream.
    fn settle(&self, n: isize, len: usize, direction: Direction) -> Option<io::Result<usize>> {
        if n >= 0 {
            let n = n as usize;
            if n < len && (n > 0 || direction == Direction::Write) {
                self.clear(direction);
            }
            return Some(Ok(n));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => {
                self.clear(direction);
                None
            }
            io::ErrorKind::Interrupted => None,
            _ => Some(Err(e)),
        }
    }

    /// Writes what the socket takes of `buf`.
    pub fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if self.poll_ready(cx, Direction::Write).is_pending() {
                return Poll::Pending;
            }
            // What `write` on the stream does (MSG_NOSIGNAL: a closed peer is an error,
            // not SIGPIPE), without the two wrappers around it (~150 instructions a send).
            // SAFETY: send reads at most `buf.len()` bytes at `buf`, which is valid for
            // reads of that many.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if let Some(done) = self.settle(n, buf.len(), Direction::Write) {
                return Poll::Ready(done);
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Closing the descriptor would take it out of the epoll set too; deregistering
        // first keeps a late event from waking the slot's next owner.
        let _ = self.core.registry.deregister(&mut self.stream);
        self.core.sockets.borrow_mut()[self.slot] = Readiness::default();
        self.core.free_sockets.borrow_mut().push(self.slot);
    }
}

/// For TLS (tokio-rustls drives the socket through these traits; no tokio runtime).
impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: poll_recv only writes into the unfilled part and reports how much.
        let unfilled = unsafe { buf.unfilled_mut() };
        match self.poll_recv(cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                // SAFETY: recv initialized the first `n` bytes of the unfilled part.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Runtime, sleep, timeout};
    use super::*;
    use std::cell::Cell;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    #[test]
    fn a_socket_round_trips_bytes_while_a_timer_and_another_task_run() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            s.write_all(&buf).unwrap();
        });
        let rt = Runtime::new().unwrap();
        let ticks = Rc::new(Cell::new(0u32));
        let counted = Rc::clone(&ticks);
        rt.spawn(async move {
            for _ in 0..3 {
                sleep(Duration::from_millis(5)).await;
                counted.set(counted.get() + 1);
            }
        });
        let got = rt.block_on(async {
            let socket = Socket::connect(addr).await.unwrap();
            let mut sent = 0;
            while sent < 5 {
                sent += poll_fn(|cx| socket.poll_send(cx, &b"hello"[sent..]))
                    .await
                    .unwrap();
            }
            let mut buf = [MaybeUninit::<u8>::uninit(); 16];
            let mut got = Vec::new();
            while got.len() < 5 {
                let n = poll_fn(|cx| socket.poll_recv(cx, &mut buf)).await.unwrap();
                assert!(n > 0, "the peer closed early");
                // SAFETY: recv initialized the first n bytes.
                got.extend(buf[..n].iter().map(|b| unsafe { b.assume_init() }));
            }
            got
        });
        assert_eq!(got, b"hello");
        rt.run();
        assert_eq!(
            ticks.get(),
            3,
            "the timer task ran to its end beside the socket"
        );
        echo.join().unwrap();
    }

    #[test]
    fn the_end_of_the_stream_is_seen_after_data_that_came_with_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"bye").unwrap();
        });
        let rt = Runtime::new().unwrap();
        let (n, end) = rt.block_on(async {
            let socket = Socket::connect(addr).await.unwrap();
            peer.join().unwrap();
            // The data and the close both arrive before the first read: one edge-triggered
            // event for the two, and the read that takes the data is a short one.
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [MaybeUninit::<u8>::uninit(); 16];
            let n = poll_fn(|cx| socket.poll_recv(cx, &mut buf)).await.unwrap();
            let end = timeout(
                Duration::from_secs(5),
                poll_fn(|cx| socket.poll_recv(cx, &mut buf)),
            )
            .await;
            (n, end)
        });
        assert_eq!(n, 3);
        assert!(
            matches!(end, Ok(Ok(0))),
            "the close after the data: {end:?}"
        );
    }
}
