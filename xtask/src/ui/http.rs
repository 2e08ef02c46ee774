//! The metrics endpoint's HTTP: one body-less `GET` (or `HEAD`) per connection, answered
//! and closed, within limits no client can stretch.
//!
//! Anything that reaches the port is untrusted, so every resource a request could hold is
//! bounded: the request head is at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers
//! (parsed by `httparse`), it must arrive within [`READ_DEADLINE`], a request that
//! announces a body is refused without reading it, at most [`MAX_CONNECTIONS`]
//! connections are served at once (more get 503 and are closed), and the listener is
//! polled, so dropping the endpoint never waits on a client: connection threads are left
//! to end at their own deadlines. (tiny_http, used before, allocated a body's declared
//! length when a request was dropped, so one `Content-Length: 2^50` aborted the runner.)

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The largest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// The most headers a request may carry.
pub const MAX_HEADERS: usize = 32;
/// The whole request head must arrive within this.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// What a refused client may still send after the answer, read and dropped.
const MAX_DRAINED: usize = 64 * 1024;
const DRAIN_DEADLINE: Duration = Duration::from_millis(500);
/// How often the listener looks for a new connection or for the endpoint's end.
const POLL: Duration = Duration::from_millis(25);

/// What a path answers: `Some(body)` for a page, `None` for 404.
pub type Pages = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A listening endpoint; dropping it stops accepting (within [`POLL`]) and returns.
pub struct Endpoint {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Listens on `addr` and answers with `pages`.
    pub fn serve(addr: &str, pages: Pages) -> std::io::Result<Endpoint> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || accept_loop(listener, &stop, pages))?
        };
        Ok(Endpoint {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, stop: &AtomicBool, pages: Pages) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            // A connection reset before it was accepted, or no descriptors left for now.
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = refuse(stream);
            continue;
        }
        let (pages, count) = (pages.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                let _ = answer(stream, &pages);
                count.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// 503 to a connection beyond [`MAX_CONNECTIONS`], without reading it.
fn refuse(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(READ_DEADLINE))?;
    respond(
        &stream,
        &Response::text(503, "too many connections\n"),
        false,
    )
}

/// Reads one request head within the limits and answers it.
fn answer(stream: TcpStream, pages: &Pages) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(READ_DEADLINE))?;
    let (response, head_only) = match read_head(&stream) {
        Ok(head) => {
            let head_only = head.method == "HEAD";
            (route(&head, pages), head_only)
        }
        Err(Refusal::Gone) => return Ok(()),
        Err(Refusal::Status(code, why)) => (Response::text(code, why), false),
    };
    respond(&stream, &response, head_only)?;
    linger(stream);
    Ok(())
}

/// Closes our side, then reads and drops what the client still sends, up to
/// [`MAX_DRAINED`] bytes or [`DRAIN_DEADLINE`]: closing with unread input would send a
/// reset, which can destroy the answer before the client reads it.
fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut drained = 0;
    let mut buf = [0u8; 4096];
    while drained < MAX_DRAINED {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub method: String,
    pub path: String,
}

/// Why a request is not answered with a page.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The client went away or sent nothing in time: nothing to answer.
    Gone,
    /// Answer with this status and reason.
    Status(u16, &'static str),
}

fn read_head(mut stream: &TcpStream) -> Result<Head, Refusal> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Refusal::Gone);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| Refusal::Gone)?;
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return Err(Refusal::Gone),
            Ok(n) => n,
        };
        len += n;
        match parse_head(&buf[..len]) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) if len == MAX_HEAD => {
                return Err(Refusal::Status(431, "request head too large\n"));
            }
            Ok(None) => {}
            Err(refusal) => return Err(refusal),
        }
    }
}

/// The request head in `bytes`, `None` while incomplete. A request that announces a body
/// is refused (the endpoint reads none), as is any method but GET and HEAD.
pub fn parse_head(bytes: &[u8]) -> Result<Option<Head>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::Status(431, "too many headers\n"));
        }
        Err(_) => return Err(Refusal::Status(400, "not an HTTP/1 request\n")),
    }
    let method = request.method.unwrap_or_default().to_string();
    if method != "GET" && method != "HEAD" {
        return Err(Refusal::Status(405, "only GET and HEAD\n"));
    }
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let empty_body = name == "content-length" && header.value.trim_ascii() == b"0";
        if (name == "content-length" && !empty_body) || name == "transfer-encoding" {
            return Err(Refusal::Status(400, "a request body is not accepted\n"));
        }
    }
    let path = request.path.unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default().to_string();
    Ok(Some(Head { method, path }))
}

fn route(head: &Head, pages: &Pages) -> Response {
    match pages(&head.path) {
        Some(body) => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body,
        },
        None => Response::text(404, "metrics are at /metrics\n"),
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }
}

fn respond(mut stream: &TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if r.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&r.body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests;
