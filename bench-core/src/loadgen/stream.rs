//! A request stream whose shape does not depend on timing, for counting the server's
//! instructions per request.
//!
//! The server's work per request depends on how requests arrive: a read that brings 16
//! requests costs one `read`, one event-loop pass and one reply write for all 16, while 16
//! reads cost 16 of each. With many connections the batches the server sees depend on
//! scheduling, which moves instruction counts by percents. Here there is one connection;
//! each batch of `pipeline` requests goes out in one write, and the next is written only
//! after every reply of the previous one arrived, so the server reads each batch whole and
//! the same seed gives the same requests in the same batches every time.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use crate::distribution::{KeyDistribution, KeySampler, worker_rng};
use crate::resp::{self, ParseError, Reply};
use crate::transport::{Stream, Tls};
use crate::workload::{Fill, WorkloadSpec};

/// What the stream sent and got back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub requests: u64,
    pub error_replies: u64,
}

/// Sends `requests` requests of the workload's first command in batches of `pipeline`,
/// on a connection of its own.
pub fn run(
    addr: SocketAddr,
    tls: Option<&Tls>,
    spec: &WorkloadSpec,
    requests: u64,
    pipeline: usize,
) -> io::Result<Outcome> {
    run_on(&mut connect(addr, tls)?, spec, requests, pipeline)
}

/// The stream's connection: no Nagle delay, and a generous read timeout (a server under
/// valgrind answers ~50× slower).
pub fn connect(addr: SocketAddr, tls: Option<&Tls>) -> io::Result<Stream> {
    let stream = Stream::connect(addr, tls, Duration::from_secs(30))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(stream)
}

/// [`run`] on a connection the caller opened (and keeps open afterwards, so the server
/// frees it when the caller says).
pub fn run_on(
    stream: &mut Stream,
    spec: &WorkloadSpec,
    requests: u64,
    pipeline: usize,
) -> io::Result<Outcome> {
    let templates = spec
        .compile()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let template = &templates[0];
    let value = vec![b'x'; spec.values.max() as usize];
    let value_len = spec.values.max() as usize;
    let mut rng = worker_rng(spec.seed, 0);
    let mut key_rng = worker_rng(spec.seed, 1);
    let mut member_rng = worker_rng(spec.seed, 2);
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mut keys = KeySampler::new(&spec.keys, spec.keyspace, 0, 1).map_err(invalid)?;
    let mut members =
        KeySampler::new(&KeyDistribution::Uniform, spec.keyspace, 0, 1).map_err(invalid)?;
    let mut wbuf = Vec::with_capacity(64 * 1024);
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut outcome = Outcome::default();
    let pipeline = pipeline.max(1) as u64;
    while outcome.requests < requests {
        let batch = pipeline.min(requests - outcome.requests);
        wbuf.clear();
        for _ in 0..batch {
            let score = if template.uses_score {
                rng.random_range(0..spec.keyspace)
            } else {
                0
            };
            template.encode(
                &mut wbuf,
                &mut || keys.sample(&mut key_rng),
                &mut || members.sample(&mut member_rng),
                &Fill {
                    value: &value,
                    value_len,
                    score,
                    stamp: 0,
                },
            );
        }
        stream.write_all(&wbuf)?;
        // Read until every reply of the batch is in.
        let (mut filled, mut pos, mut replies) = (0, 0, 0);
        while replies < batch {
            if filled == rbuf.len() {
                rbuf.resize(rbuf.len() * 2, 0);
            }
            let n = stream.read(&mut rbuf[filled..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            filled += n;
            loop {
                match resp::scan(&rbuf[pos..filled]) {
                    Ok((reply, used)) => {
                        if reply == Reply::Error {
                            outcome.error_replies += 1;
                        }
                        pos += used;
                        replies += 1;
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
        }
        outcome.requests += batch;
    }
    Ok(outcome)
}
