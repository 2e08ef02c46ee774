//! The floor: the least a client shaped like ours can cost per request.
//!
//! One thread, one epoll set, non-blocking sockets. Each connection writes `pipeline`
//! pre-encoded requests in one `send`, reads until every reply is in, scans them with the
//! same RESP scanner, and writes the next batch. Nothing is timed or recorded. What this
//! costs is what the kernel charges a sender for the loopback TCP traffic (which includes
//! the receiver's TCP input, run in the sender's softirq) plus the least user work a client
//! needs. `selfbench` runs it beside the real engines so the generator's overhead over the
//! floor, and valkey-benchmark's, are measured in the same run instead of argued about.
//!
//! It is a yardstick, not an engine for suites: no latency, no reconnects, no open loop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::distribution::{KeySampler, worker_rng};
use crate::engine::{Engine, EngineError, Latency, Load, Measurement, Target};
use crate::resp::{self, ParseError};
use crate::shutdown::Shutdown;

pub struct FloorEngine;

struct Conn {
    stream: TcpStream,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Bytes of `rbuf` that hold data.
    filled: usize,
    /// Replies still to come for the batch in flight.
    awaited: u64,
}

impl Engine for FloorEngine {
    fn name(&self) -> &'static str {
        "floor"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn describe(&self, target: &Target, load: &Load) -> Vec<String> {
        vec![
            "floor".into(),
            target.primary().to_string(),
            format!("clients={}", load.clients),
            format!("pipeline={}", load.pipeline),
            format!("requests={}", load.requests),
        ]
    }

    fn run(
        &self,
        target: &Target,
        load: &Load,
        shutdown: &Shutdown,
    ) -> Result<Measurement, EngineError> {
        self.can_run(load).map_err(|message| EngineError::Failed {
            engine: "floor",
            message,
        })?;
        let addr = target.primary();
        let failed = |e: io::Error| EngineError::Failed {
            engine: "floor",
            message: e.to_string(),
        };
        let started = Instant::now();
        let requests = run(addr, load, shutdown).map_err(failed)?;
        if shutdown.is_triggered() {
            return Err(EngineError::Interrupted);
        }
        let wall_secs = started.elapsed().as_secs_f64();
        Ok(Measurement {
            requests,
            ops_per_sec: requests as f64 / wall_secs,
            wall_secs,
            latency: Latency::default(),
            histogram: None,
            series: Vec::new(),
            client_cpu_us_per_request: None,
            ..Default::default()
        })
    }
}

/// Sends `load.requests` requests of the load's command; returns the replies received.
fn run(addr: SocketAddr, load: &Load, shutdown: &Shutdown) -> io::Result<u64> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let spec = super::engine::workload(load);
    let templates = spec.compile().map_err(|e| invalid(e.to_string()))?;
    let value = vec![b'x'; load.value_size as usize];
    let prepared = templates[0]
        .prepare(&value, Some(value.len()))
        .ok_or_else(|| invalid(format!("{} has no fixed-length form", load.command.name())))?;
    let mut keys = KeySampler::new(&spec.keys, spec.keyspace, 0, 1).map_err(invalid)?;
    let mut key_rng = worker_rng(spec.seed, 1);
    let pipeline = u64::from(load.pipeline.max(1));

    let epoll = Epoll::new()?;
    let mut conns = Vec::new();
    for i in 0..load.clients.max(1) {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        epoll.add(stream.as_raw_fd(), u64::from(i))?;
        conns.push(Conn {
            stream,
            wbuf: Vec::with_capacity(16 * 1024),
            rbuf: vec![0; 64 * 1024],
            filled: 0,
            awaited: 0,
        });
    }

    let mut budget = load.requests;
    let mut done = 0u64;
    let mut send = |c: &mut Conn, budget: &mut u64| -> io::Result<()> {
        let batch = pipeline.min(*budget);
        if batch == 0 {
            return Ok(());
        }
        *budget -= batch;
        c.wbuf.clear();
        for _ in 0..batch {
            prepared.encode(&mut c.wbuf, &mut || keys.sample(&mut key_rng), &mut || 0, 0);
        }
        c.awaited = batch;
        // Batches are a few hundred bytes against a socket buffer of hundreds of KB:
        // a short write means something is badly wrong, not a case to optimize.
        write_fully(&mut c.stream, &c.wbuf)
    };
    for c in &mut conns {
        send(c, &mut budget)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    while conns.iter().any(|c| c.awaited > 0) {
        if shutdown.is_triggered() {
            return Ok(done);
        }
        for i in epoll.wait(&mut events, 100)? {
            let c = &mut conns[i as usize];
            // One read per readiness event; level-triggered epoll reports the rest.
            let n = match c.stream.read(&mut c.rbuf[c.filled..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            c.filled += n;
            let mut pos = 0;
            loop {
                match resp::scan(&c.rbuf[pos..c.filled]) {
                    Ok((_, used)) => {
                        pos += used;
                        c.awaited = c.awaited.saturating_sub(1);
                        done += 1;
                    }
                    Err(ParseError::Incomplete) => break,
                    Err(ParseError::Invalid { offset }) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("invalid RESP from the server at byte {}", pos + offset),
                        ));
                    }
                }
            }
            c.rbuf.copy_within(pos..c.filled, 0);
            c.filled -= pos;
            if c.filled == c.rbuf.len() {
                c.rbuf.resize(c.rbuf.len() * 2, 0);
            }
            if c.awaited == 0 {
                send(c, &mut budget)?;
            }
        }
    }
    Ok(done)
}

fn write_fully(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A level-triggered epoll set, closed on drop.
struct Epoll(libc::c_int);

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(fd))
    }

    fn add(&self, fd: libc::c_int, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The tokens of the ready descriptors (none on timeout or EINTR).
    fn wait<'a>(
        &self,
        events: &'a mut [libc::epoll_event],
        timeout_ms: i32,
    ) -> io::Result<impl Iterator<Item = u64> + 'a> {
        // SAFETY: the kernel writes at most `events.len()` entries into `events`.
        let n = unsafe {
            libc::epoll_wait(
                self.0,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        let n = if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            0
        } else {
            n as usize
        };
        Ok(events[..n].iter().map(|e| e.u64))
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}
