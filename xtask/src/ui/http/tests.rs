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
