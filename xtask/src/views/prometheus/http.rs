//! The metrics endpoint's HTTP: one body-less `GET` (or `HEAD`) per connection, answered
//! and closed, within limits no client can stretch.
//!
//! Anything that reaches the port is untrusted, so every resource a request could hold is
//! bounded: the request head is at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers
//! (parsed by `httparse`), it must arrive within [`READ_DEADLINE`] and the answer be taken
//! within as long again, a request that
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
        let (pages, slot) = (pages.clone(), Slot(active.clone()));
        // The slot is given back when the thread ends, a panic included; or here, with the
        // closure, when no thread could be started.
        let _ = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                let _slot = slot;
                let _ = answer(stream, &pages);
            });
    }
}

/// One of the [`MAX_CONNECTIONS`], given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
    // One deadline for the whole answer: a client that reads a little now and then
    // cannot hold the connection longer than that.
    let deadline = Instant::now() + READ_DEADLINE;
    let mut left = out.as_bytes();
    while !left.is_empty() {
        let time = deadline.saturating_duration_since(Instant::now());
        if time.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(time))?;
        match stream.write(left) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Pages {
        Arc::new(|path: &str| (path == "/metrics").then(|| "up 1\n".to_string()))
    }

    fn serve() -> Endpoint {
        Endpoint::serve("127.0.0.1:0", pages()).unwrap()
    }

    /// Sends `bytes`, then reads until the server closes (or 5 s pass).
    fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn heads_parse_and_bodies_are_refused() {
        let get = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(
            get,
            Some(Head {
                method: "GET".into(),
                path: "/metrics".into()
            })
        );
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost"), Ok(None));
        let zero = parse_head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(zero.is_some());
        for refused in [
            &b"POST /metrics HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics HTTP/1.1\r\nContent-Length: 1125899906842624\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\ncontent-length: 2000\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\x16\x03\x01 not http\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(refused), Err(Refusal::Status(_, _))),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        let text = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_head(text.as_bytes()),
            Err(Refusal::Status(431, "too many headers\n"))
        );
    }

    /// The requests that aborted or blocked the tiny_http endpoint are answered at once, and
    /// the endpoint still serves the page afterwards.
    #[test]
    fn hostile_requests_get_an_answer_and_leave_the_endpoint_serving() {
        let e = serve();
        let huge = exchange(
            e.addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 1125899906842624\r\n\r\n",
        );
        assert!(huge.starts_with("HTTP/1.1 405"), "{huge}");
        let announced = exchange(
            e.addr,
            b"GET /metrics HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
        );
        assert!(announced.starts_with("HTTP/1.1 400"), "{announced}");
        // Headers without end: refused once MAX_HEAD bytes arrived, nothing more read.
        let mut s = TcpStream::connect(e.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let line = format!("X: {}\r\n", "y".repeat(100));
        let mut sent = 0;
        while sent < 2 * MAX_HEAD && s.write_all(line.as_bytes()).is_ok() {
            sent += line.len();
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with("HTTP/1.1 431") || out.starts_with("HTTP/1.1 400"),
            "{out}"
        );
        let ok = exchange(e.addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("up 1\n"),
            "{ok}"
        );
        let head = exchange(e.addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200") && !head.contains("up 1"),
            "{head}"
        );
        let missing = exchange(e.addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    }

    /// Clients that connect and send nothing hold a connection until the read deadline only;
    /// beyond MAX_CONNECTIONS they get 503; and dropping the endpoint does not wait on them.
    #[test]
    fn silent_clients_neither_block_others_for_long_nor_the_endpoints_end() {
        let e = serve();
        let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(e.addr).unwrap())
            .collect();
        let until = |status: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let reply = exchange(e.addr, b"GET /metrics HTTP/1.1\r\n\r\n");
                if reply.starts_with(status) || Instant::now() > deadline {
                    return reply;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let busy = until("HTTP/1.1 503");
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        // After their deadline the silent ones are closed and the page is served again.
        let ok = until("HTTP/1.1 200");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        let lingering = TcpStream::connect(e.addr).unwrap();
        let started = Instant::now();
        drop(e);
        assert!(
            started.elapsed() < READ_DEADLINE,
            "dropping the endpoint waited {:?} on a client",
            started.elapsed()
        );
        drop((silent, lingering));
    }
}
