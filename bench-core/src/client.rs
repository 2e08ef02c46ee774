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

use redis::ConnectionLike;

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
    /// Connects, over TLS when `tls` says how, with `timeout` applied to the connect, the
    /// handshake and every later read and write. The connection sends nothing of its own
    /// (no AUTH, no CLIENT SETINFO) but, over TLS, one PING that completes the handshake.
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&Tls>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let io = |why| ClientError::Io { addr, why };
        let host = crate::transport::verified_ip(addr).to_string();
        let target = match tls {
            None => redis::ConnectionAddr::Tcp(host, addr.port()),
            Some(tls) => {
                if tls.server_name().is_some() {
                    // The crate verifies the name it connects to; a name other than the
                    // address is the load generator's (`--tls-server-name`), not ours.
                    return Err(io(io::Error::other(
                        "a TLS server name other than the address is for the load generator's \
                         connections; the control plane verifies the server's IP",
                    )));
                }
                redis::ConnectionAddr::TcpTls {
                    host,
                    port: addr.port(),
                    insecure: false,
                    tls_params: None,
                }
            }
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
        // The crate clears its timeouts once connected: ours hold for every call.
        let timeouts = conn
            .set_read_timeout(Some(timeout))
            .and_then(|()| conn.set_write_timeout(Some(timeout)));
        timeouts.map_err(|e| io(io_error(&e)))?;
        let mut client = Client {
            addr,
            conn,
            tls: tls.is_some(),
            write_buf: Vec::with_capacity(64 * 1024),
            answered: false,
        };
        if client.tls {
            // The crate shakes hands at the first exchange; a PING makes that exchange
            // this one, so a wrong CA, a plain port or a missing client certificate fails
            // the connect, named. Any reply will do (before AUTH it is NOAUTH).
            match client.call(&["PING"]) {
                Ok(_) | Err(ClientError::Server { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(client)
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

    /// Sends every queued command and reads exactly `count` replies, in order.
    pub fn flush_and_read(&mut self, count: usize) -> Result<Vec<Value>, ClientError> {
        if self.write_buf.is_empty() && count == 0 {
            // A shard of a cluster that this batch sends nothing to.
            return Ok(Vec::new());
        }
        let sent = std::mem::take(&mut self.write_buf);
        let replies = if count == 1 {
            self.conn.req_packed_command(&sent).map(|r| vec![r])
        } else {
            self.conn.req_packed_commands(&sent, 0, count)
        };
        // The buffer keeps its capacity for the next batch.
        self.write_buf = sent;
        self.write_buf.clear();
        let replies = replies.map_err(|e| self.failure(&e))?;
        self.answered = true;
        Ok(replies.into_iter().map(Value::from_redis).collect())
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
