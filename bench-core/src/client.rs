//! The control plane's blocking client: readiness checks, INFO, CONFIG, CLUSTER, REPLICAOF,
//! preloading, and the Valkey queue.
//!
//! It is the `redis` crate's synchronous connection (TLS through its rustls support)
//! behind a small face: owned replies ([`Value`]), errors that name the address and the
//! command, and a pipeline of commands encoded by our RESP writer. It is not the load
//! generator, whose connections, RESP and routing are ours (`transport.rs`, `resp/`,
//! `loadgen/`): see docs/design.md for why each side has the client it has.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::resp;
use crate::transport::Tls;

/// An owned reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    /// A reply as our parser read it (the load generator's setup).
    pub(crate) fn from_frame(frame: &resp::Frame<'_>) -> Value {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match frame {
            resp::Frame::Simple(s) => Value::Simple(text(s)),
            resp::Frame::Error(s) => Value::Error(text(s)),
            resp::Frame::Integer(n) => Value::Integer(*n),
            resp::Frame::Bulk(b) => Value::Bulk(b.map(<[u8]>::to_vec)),
            resp::Frame::Array(items) => Value::Array(
                items
                    .as_ref()
                    .map(|items| items.iter().map(Value::from_frame).collect()),
            ),
        }
    }

    /// A RESP2 reply as the `redis` crate parsed it. A null is `Bulk(None)` (RESP2's null
    /// array reads the same to every caller here); RESP3's types, which a RESP2 connection
    /// never receives, are given their nearest RESP2 form.
    fn from_redis(value: redis::Value) -> Value {
        use redis::Value as R;
        let pairs = |pairs: Vec<(R, R)>| {
            Value::Array(Some(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [Value::from_redis(k), Value::from_redis(v)])
                    .collect(),
            ))
        };
        match value {
            R::Nil => Value::Bulk(None),
            R::Int(n) => Value::Integer(n),
            R::BulkString(bytes) => Value::Bulk(Some(bytes)),
            R::Array(items) | R::Set(items) | R::Push { data: items, .. } => {
                Value::Array(Some(items.into_iter().map(Value::from_redis).collect()))
            }
            R::SimpleString(s) => Value::Simple(s),
            R::Okay => Value::Simple("OK".into()),
            R::Map(map) => pairs(map),
            R::Attribute { data, .. } => Value::from_redis(*data),
            R::Double(x) => Value::Bulk(Some(x.to_string().into_bytes())),
            R::Boolean(b) => Value::Integer(i64::from(b)),
            R::VerbatimString { text, .. } => Value::Bulk(Some(text.into_bytes())),
            R::BigNumber(digits) => Value::Bulk(Some(digits)),
            R::ServerError(e) => Value::Error(server_message(&e)),
            // `redis::Value` is non-exhaustive.
            other => Value::Error(format!("unsupported reply {other:?}")),
        }
    }
}

/// The error line as the server sent it: its code, then its detail.
fn server_message(e: &redis::ServerError) -> String {
    match e.details() {
        Some(detail) => format!("{} {detail}", e.code()),
        None => e.code().to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    // `why` is in the message and not a `source`, so an error chain prints it once.
    #[error("{addr}: {why}")]
    Io { addr: SocketAddr, why: io::Error },
    #[error("{addr}: server closed the connection{}", closed_hint(.first_reply))]
    Closed { addr: SocketAddr, first_reply: bool },
    #[error("{addr}: {why}")]
    Protocol { addr: SocketAddr, why: String },
    /// TLS refused: a certificate, a CA, a plain port. No wait mends it.
    #[error("{addr}: {why}")]
    Tls { addr: SocketAddr, why: String },
    #[error("{addr}: `{command}` replied with error: {message}")]
    Server {
        addr: SocketAddr,
        command: String,
        message: String,
    },
    #[error("{addr}: `{command}` replied {got:?}, expected {expected}")]
    Unexpected {
        addr: SocketAddr,
        command: String,
        got: Value,
        expected: &'static str,
    },
}

pub struct Client {
    addr: SocketAddr,
    conn: redis::Connection,
    tls: bool,
    /// Commands queued for the next [`Client::flush_and_read`], RESP-encoded.
    write_buf: Vec<u8>,
    /// Whether a reply has arrived (a close before the first one is likely a TLS port, and
    /// a TLS error before it is the handshake's).
    answered: bool,
}

impl Client {
    /// Connects, over TLS when `tls` says how, with `timeout` applied to the connect and
    /// every later read and write (the handshake within [`HANDSHAKE_TIMEOUT`] at most).
    /// The connection sends nothing of its own (no AUTH, no CLIENT SETINFO) but, over TLS,
    /// one PING that completes the handshake.
    ///
    /// TLS verifies the address's IP, or the server name `tls` gives: a DNS name (the
    /// Valkey queue's URL host) must resolve to `addr`, and the crate connects by it.
    ///
    /// [`HANDSHAKE_TIMEOUT`]: crate::transport::HANDSHAKE_TIMEOUT
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&Tls>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let io = |why| ClientError::Io { addr, why };
        let ip = crate::transport::verified_ip(addr);
        let target = match tls {
            None => redis::ConnectionAddr::Tcp(ip.to_string(), addr.port()),
            Some(tls) => redis::ConnectionAddr::TcpTls {
                host: verified_name(addr, tls).map_err(|e| io(io::Error::other(e)))?,
                port: addr.port(),
                insecure: false,
                tls_params: None,
            },
        };
        let info = redis::IntoConnectionInfo::into_connection_info(target)
            .map_err(|e| io(io::Error::other(e.to_string())))?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
            .set_redis_settings(redis::RedisConnectionInfo::default().set_skip_set_lib_name());
        let client = match tls {
            None => redis::Client::open(info),
            Some(tls) => redis::Client::build_with_tls(info, tls.certificates()),
        }
        .map_err(|e| io(io::Error::other(e.to_string())))?;
        let conn = client
            .get_connection_with_timeout(timeout)
            .map_err(|e| io(io_error(&e)))?;
        let mut client = Client {
            addr,
            conn,
            tls: tls.is_some(),
            write_buf: Vec::with_capacity(64 * 1024),
            answered: false,
        };
        if client.tls {
            // The crate shakes hands at the first exchange; a PING makes that exchange
            // this one, under the handshake's deadline, so a wrong CA, a plain port or a
            // missing client certificate fails the connect, named. Before AUTH the reply
            // is NOAUTH, and a loading server's LOADING: the handshake is done either way.
            client.set_timeout(timeout.min(crate::transport::HANDSHAKE_TIMEOUT))?;
            match client.call(&["PING"]) {
                Ok(_) => {}
                Err(ClientError::Server { message, .. })
                    if message.starts_with("NOAUTH") || message.starts_with("LOADING") => {}
                Err(e) => return Err(e),
            }
        }
        // The crate clears its timeouts once connected: ours hold for every call.
        client.set_timeout(timeout)?;
        Ok(client)
    }

    /// Every later read and write takes at most `timeout`.
    fn set_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        let timeouts = self
            .conn
            .set_read_timeout(Some(timeout))
            .and_then(|()| self.conn.set_write_timeout(Some(timeout)));
        timeouts.map_err(|e| ClientError::Io {
            addr: self.addr,
            why: io_error(&e),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether this connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Sends one command and returns its reply; an error reply becomes `ClientError::Server`.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, ClientError> {
        self.queue(args);
        let mut replies = self.flush_and_read(1)?;
        let reply = replies.pop().expect("flush_and_read(1) returns one reply");
        match reply {
            Value::Error(message) => Err(ClientError::Server {
                addr: self.addr,
                command: command_name(args),
                message,
            }),
            other => Ok(other),
        }
    }

    /// Calls a command that replies with an integer.
    pub fn call_int<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<i64, ClientError> {
        match self.call(args)? {
            Value::Integer(n) => Ok(n),
            got => Err(self.unexpected(args, got, "an integer")),
        }
    }

    /// Calls a command that replies with a bulk string, such as INFO.
    pub fn call_text<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<String, ClientError> {
        match self.call(args)? {
            Value::Bulk(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Value::Simple(s) => Ok(s),
            got => Err(self.unexpected(args, got, "a string")),
        }
    }

    /// Runs a Lua script by its digest (EVALSHA), loading it first when the server does not
    /// hold it (after a restart, or the first time): the script's text crosses the network
    /// once per server, not once per call.
    pub fn script<K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &mut self,
        source: &str,
        keys: &[K],
        args: &[A],
    ) -> Result<Value, ClientError> {
        let script = redis::Script::new(source);
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k.as_ref());
        }
        for a in args {
            invocation.arg(a.as_ref());
        }
        match invocation.invoke::<redis::Value>(&mut self.conn) {
            Ok(value) => {
                self.answered = true;
                Ok(Value::from_redis(value))
            }
            Err(e) => Err(match e.kind() {
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => {
                    self.answered = true;
                    ClientError::Server {
                        addr: self.addr,
                        command: "EVALSHA".into(),
                        message: match (e.code(), e.detail()) {
                            (Some(code), Some(detail)) => format!("{code} {detail}"),
                            (Some(code), None) => code.to_string(),
                            _ => e.to_string(),
                        },
                    }
                }
                _ => self.failure(&e),
            }),
        }
    }

    /// Appends a command to the pipeline without sending it.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(&mut self.write_buf, args);
    }

    /// Sends every queued command and reads exactly `count` replies, in order. The first
    /// failure ends it (a stalled server costs one timeout, not one per reply); the
    /// connection is then of no further use.
    pub fn flush_and_read(&mut self, count: usize) -> Result<Vec<Value>, ClientError> {
        if self.write_buf.is_empty() && count == 0 {
            // A shard of a cluster that this batch sends nothing to.
            return Ok(Vec::new());
        }
        let sent = self.conn.send_packed_command(&self.write_buf);
        self.write_buf.clear();
        sent.map_err(|e| self.failure(&e))?;
        let mut replies = Vec::with_capacity(count);
        for _ in 0..count {
            let reply = self.conn.recv_response().map_err(|e| self.failure(&e))?;
            self.answered = true;
            replies.push(Value::from_redis(reply));
        }
        Ok(replies)
    }

    /// A failure of the connection (not a reply), said as our own transport says it: a
    /// close before the first reply hints at a TLS port, a TLS error at its likely cause.
    fn failure(&self, e: &redis::RedisError) -> ClientError {
        let addr = self.addr;
        let text = e.to_string();
        let first_reply = !self.answered && !self.tls;
        if let Some(hint) = crate::transport::tls_hint_in_text(&text) {
            return ClientError::Tls {
                addr,
                why: format!("TLS: {text}{hint}"),
            };
        }
        if e.is_timeout() {
            let why = io::Error::new(io::ErrorKind::TimedOut, text);
            let why = if self.tls && !self.answered {
                crate::transport::handshake_error(why)
            } else {
                why
            };
            return ClientError::Io { addr, why };
        }
        if e.is_connection_dropped() {
            return ClientError::Closed { addr, first_reply };
        }
        if self.tls && !self.answered && e.kind() == redis::ErrorKind::Io {
            // Neither a timeout nor a close, before any reply over TLS: rustls refused
            // the handshake (a protocol version, an alert), which no wait mends.
            return ClientError::Tls {
                addr,
                why: format!("TLS handshake failed: {text}"),
            };
        }
        if e.kind() == redis::ErrorKind::Io {
            return ClientError::Io {
                addr,
                why: io::Error::other(text),
            };
        }
        ClientError::Protocol { addr, why: text }
    }

    fn unexpected<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        got: Value,
        expected: &'static str,
    ) -> ClientError {
        ClientError::Unexpected {
            addr: self.addr,
            command: command_name(args),
            got,
            expected,
        }
    }
}

/// The name TLS verifies and the crate connects to: the address's IP, or the server name
/// `tls` gives (an IP equal to the address's, or a DNS name that resolves to it).
fn verified_name(addr: SocketAddr, tls: &Tls) -> Result<String, String> {
    use rustls::pki_types::ServerName;
    let ip = crate::transport::verified_ip(addr);
    match tls.server_name() {
        None => Ok(ip.to_string()),
        Some(ServerName::IpAddress(named)) if std::net::IpAddr::from(*named) == ip => {
            Ok(ip.to_string())
        }
        Some(ServerName::DnsName(name)) => {
            let name = name.as_ref();
            let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(name, addr.port()))
                .map_err(|e| format!("TLS server name {name:?}: {e}"))?;
            let ours = resolved.map(crate::transport::verified_ip).any(|r| r == ip);
            if ours {
                Ok(name.to_string())
            } else {
                Err(format!(
                    "TLS server name {name:?} does not resolve to {ip}; the control plane \
                     connects by the name it verifies"
                ))
            }
        }
        Some(other) => Err(format!(
            "TLS server name {other:?} is not the address {ip}; the control plane verifies \
             the name it connects to"
        )),
    }
}

/// A connect's failure as an I/O error of the kind it was.
fn io_error(e: &redis::RedisError) -> io::Error {
    let kind = if e.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e.to_string())
}

/// Why a server may close a plain connection before answering it.
fn closed_hint(first_reply: &bool) -> &'static str {
    if *first_reply {
        " before its first reply (a TLS port closes plaintext connections: is it one?)"
    } else {
        ""
    }
}

fn command_name<A: AsRef<[u8]>>(args: &[A]) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
        .unwrap_or_default()
}
