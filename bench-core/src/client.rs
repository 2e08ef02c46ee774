//! A small blocking client for the control plane: readiness checks, INFO, preloading.
//!
//! It is not the load generator. It pipelines when asked (the populator sends thousands of
//! commands per round trip) and turns replies into owned values.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::resp::{self, Frame, ParseError};
use crate::transport::{Stream, Tls};

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
    fn from_frame(frame: &Frame<'_>) -> Value {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match frame {
            Frame::Simple(s) => Value::Simple(text(s)),
            Frame::Error(s) => Value::Error(text(s)),
            Frame::Integer(n) => Value::Integer(*n),
            Frame::Bulk(b) => Value::Bulk(b.map(<[u8]>::to_vec)),
            Frame::Array(items) => Value::Array(
                items
                    .as_ref()
                    .map(|items| items.iter().map(Value::from_frame).collect()),
            ),
        }
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
    Protocol { addr: SocketAddr, why: ParseError },
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
    stream: Stream,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    /// Whether a reply has arrived (a close before the first one is likely a TLS port).
    answered: bool,
}

impl Client {
    /// Connects, over TLS when `tls` says how, with `timeout` applied to the connect, the
    /// handshake and every later read and write.
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&Tls>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let stream =
            Stream::connect(addr, tls, timeout).map_err(|why| ClientError::Io { addr, why })?;
        Ok(Client {
            addr,
            stream,
            read_buf: Vec::with_capacity(64 * 1024),
            write_buf: Vec::with_capacity(64 * 1024),
            answered: false,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether this connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
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

    /// Appends a command to the pipeline without sending it.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(&mut self.write_buf, args);
    }

    /// Sends every queued command and reads exactly `count` replies, in order.
    pub fn flush_and_read(&mut self, count: usize) -> Result<Vec<Value>, ClientError> {
        let addr = self.addr;
        let io = |why| ClientError::Io { addr, why };
        self.stream.write_all(&self.write_buf).map_err(io)?;
        self.write_buf.clear();
        let mut replies = Vec::with_capacity(count);
        let mut pos = 0;
        while replies.len() < count {
            match resp::parse(&self.read_buf[pos..]) {
                Ok((frame, used)) => {
                    replies.push(Value::from_frame(&frame));
                    pos += used;
                }
                Err(ParseError::Incomplete) => {
                    self.read_buf.drain(..pos);
                    pos = 0;
                    self.fill()?;
                }
                Err(why) => return Err(ClientError::Protocol { addr, why }),
            }
        }
        self.read_buf.drain(..pos);
        self.answered = true;
        Ok(replies)
    }

    fn fill(&mut self) -> Result<(), ClientError> {
        let addr = self.addr;
        let mut chunk = [0u8; 64 * 1024];
        let first_reply = !self.answered && !self.stream.is_tls();
        let n = match self.stream.read(&mut chunk) {
            Ok(n) => n,
            // A server closing with our request unread resets the connection.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && first_reply => 0,
            Err(why) => {
                return Err(ClientError::Io {
                    addr,
                    why: crate::transport::explain(why),
                });
            }
        };
        if n == 0 {
            return Err(ClientError::Closed { addr, first_reply });
        }
        self.read_buf.extend_from_slice(&chunk[..n]);
        Ok(())
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
