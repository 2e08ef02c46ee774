//! Cluster mode's wiring: the slot map read once per run, turned into the links every
//! connection opens (primaries, then the replicas reads go to), the slot owners a worker
//! thread's connections share, and how each template is routed.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::{ClusterOptions, LoadgenError};
use crate::client::{ClientError, Value};
use crate::cluster::{DigitSlots, SLOTS, SlotMap, SlotPrefix, key_slot};
use crate::resp;
use crate::topology::ReadFrom;
use crate::transport::{Stream, Tls};
use crate::workload::{KeyRoute, Prepared, Template};

/// Cluster mode's links: every connection opens one to each of them, in this order.
pub(super) struct Wiring {
    /// The primaries (shard order), then the replicas reads go to.
    pub links: Vec<SocketAddr>,
    pub primaries: usize,
    /// Per slot, its primary's link.
    pub owner: Vec<u16>,
    /// Per primary link, its replicas' links.
    pub replicas_of: Vec<Vec<u16>>,
    pub read_from: ReadFrom,
}

impl Wiring {
    /// Reads the slot map from the first seed that answers, and checks every template
    /// can be routed.
    pub fn discover(
        seeds: &[SocketAddr],
        tls: Option<&crate::transport::Tls>,
        templates: &[Template],
        options: ClusterOptions,
    ) -> Result<Wiring, LoadgenError> {
        for t in templates {
            if let KeyRoute::Drawn { prefix, keys } = &t.route
                && *keys > 1
                && !SlotPrefix::new(prefix).is_fixed()
                && !options.tag_multi_key
            {
                return Err(LoadgenError::Options(format!(
                    "{}: its {keys} keys would fall in different slots of the cluster; give \
                     the workload a key_prefix with a hash tag, e.g. \"{{t}}\", so they share one",
                    t.name
                )));
            }
        }
        let mut last = String::new();
        let mut map = None;
        for &seed in seeds {
            let found = read_map(seed, tls);
            match found {
                Ok(m) => {
                    map = Some(m);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let map = map.ok_or(LoadgenError::Cluster(last))?;
        if let Some(addr) = map.foreign(&options.nodes) {
            return Err(LoadgenError::Cluster(format!(
                "the slot map names {addr}, which is none of the deployment's nodes; nothing is sent there"
            )));
        }
        if map.unowned() > 0 {
            return Err(LoadgenError::Cluster(format!(
                "{} of {} slots have no owner: the cluster is not ready",
                map.unowned(),
                crate::cluster::SLOTS
            )));
        }
        let primaries = map.shards.len();
        let mut links: Vec<SocketAddr> = map.shards.iter().map(|s| s.primary).collect();
        let mut replicas_of = vec![Vec::new(); primaries];
        if options.read_from == ReadFrom::Replicas {
            for (i, shard) in map.shards.iter().enumerate() {
                for &r in &shard.replicas {
                    replicas_of[i].push(links.len() as u16);
                    links.push(r);
                }
            }
            if replicas_of.iter().all(Vec::is_empty) {
                return Err(LoadgenError::Options(
                    "--read-from replicas: the cluster has no replicas online".into(),
                ));
            }
        }
        Ok(Wiring {
            links,
            primaries,
            owner: map.owners().to_vec(),
            replicas_of,
            read_from: options.read_from,
        })
    }
}

/// Sends `READONLY` on a new replica connection and checks its `+OK`.
pub(super) async fn readonly_mode(stream: &mut crate::transport::Wire) -> std::io::Result<()> {
    exchange(stream, b"*1\r\n$8\r\nREADONLY\r\n", b"+OK\r\n", "READONLY").await
}

/// Sends `PING` on a new connection, before the clock starts, and checks its `+PONG`: a
/// server that does not speak RESP on it (a TLS port reached in plaintext closes it, one
/// that wants AUTH says `-NOAUTH`) fails the run with why, instead of every request.
pub(super) async fn ping(stream: &mut crate::transport::Wire) -> std::io::Result<()> {
    exchange(stream, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n", "PING").await
}

/// How long a new connection's first exchange (PING, READONLY, SUBSCRIBE) may take.
const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `request` and reads a reply of exactly `expected`'s length, which must be it,
/// within [`SETUP_TIMEOUT`].
async fn exchange(
    stream: &mut crate::transport::Wire,
    request: &[u8],
    expected: &[u8],
    name: &str,
) -> std::io::Result<()> {
    within_setup(name, exchange_now(stream, request, expected, name)).await
}

/// `setup` within [`SETUP_TIMEOUT`], its TLS errors explained; `what` names it if it is
/// late.
pub(super) async fn within_setup<T>(
    what: &str,
    setup: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match super::runtime::timeout(SETUP_TIMEOUT, setup).await {
        Ok(done) => done.map_err(crate::transport::explain),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no reply to {what} within {SETUP_TIMEOUT:?}"),
        )),
    }
}

async fn exchange_now(
    stream: &mut crate::transport::Wire,
    request: &[u8],
    expected: &[u8],
    name: &str,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    stream.send(request).await?;
    let mut reply = vec![0u8; expected.len()];
    let mut got = 0;
    while got < reply.len() {
        let read = match stream.read(&mut reply[got..]).await {
            // A server closing with our request unread resets the connection.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && got == 0 => 0,
            read => read?,
        };
        match read {
            0 if got == 0 && !stream.is_tls() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the server closed the connection before answering {name} (a TLS port \
                         closes plaintext connections: is it one?)"
                    ),
                ));
            }
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the server closed the connection before answering {name}"),
                ));
            }
            n => got += n,
        }
        // An error reply is shorter or longer than the one expected: stop at its end.
        if reply[0] == b'-' && reply[..got].ends_with(b"\r\n") {
            break;
        }
    }
    if reply[..got] != *expected {
        // The rest of an error line, for the message.
        let mut line = reply[..got].to_vec();
        while !line.ends_with(b"\r\n") && line.len() < 512 {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await? == 0 {
                break;
            }
            line.push(byte[0]);
        }
        return Err(std::io::Error::other(format!(
            "{name} replied {:?}",
            String::from_utf8_lossy(&line).trim_end()
        )));
    }
    Ok(())
}

/// The most of a reply the slot map is read from: a large cluster's CLUSTER SHARDS is
/// a few hundred KiB.
const MAX_MAP_REPLY: usize = 16 << 20;

/// Reads the slot map over the generator's own transport, so that its TLS settings (a
/// server name among them) are the ones its connections use.
fn read_map(seed: SocketAddr, tls: Option<&Tls>) -> Result<SlotMap, String> {
    let mut stream =
        Stream::connect(seed, tls, Duration::from_secs(5)).map_err(|e| format!("{seed}: {e}"))?;
    let is_tls = stream.is_tls();
    SlotMap::read(seed, is_tls, |args| ask(&mut stream, seed, args)).map_err(|e| e.to_string())
}

/// One command and its reply, over a blocking connection, whole within [`SETUP_TIMEOUT`].
fn ask(stream: &mut Stream, addr: SocketAddr, args: &[&str]) -> Result<Value, ClientError> {
    let mut request = Vec::new();
    resp::encode_command(&mut request, args);
    let io = |why| ClientError::Io {
        addr,
        why: crate::transport::explain(why),
    };
    stream.write_all(&request).map_err(io)?;
    let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
    let mut reply = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    // The length at the last parse that found the reply unfinished: parsed again once it
    // doubles or the socket is drained, so a large reply is parsed a few times, not once
    // per read.
    let mut tried = 0;
    loop {
        let n = match stream.read(&mut chunk) {
            // A server closing with our request unread resets the connection.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && reply.is_empty() => 0,
            read => read.map_err(io)?,
        };
        if n == 0 {
            return Err(ClientError::Closed {
                addr,
                first_reply: reply.is_empty() && !stream.is_tls(),
            });
        }
        reply.extend_from_slice(&chunk[..n]);
        let drained = n < chunk.len();
        if n == chunk.len() && chunk.len() < 1 << 20 {
            chunk.resize(chunk.len() * 2, 0);
        }
        if !drained && reply.len() < 2 * tried {
            continue;
        }
        match resp::parse(&reply) {
            Ok((frame, _)) => {
                return match Value::from_frame(&frame) {
                    Value::Error(message) => Err(ClientError::Server {
                        addr,
                        command: args.join(" "),
                        message,
                    }),
                    value => Ok(value),
                };
            }
            Err(resp::ParseError::Incomplete)
                if reply.len() < MAX_MAP_REPLY && std::time::Instant::now() < deadline =>
            {
                tried = reply.len();
            }
            Err(resp::ParseError::Incomplete) => {
                return Err(ClientError::Protocol {
                    addr,
                    why: format!(
                        "no whole reply to {} within {SETUP_TIMEOUT:?} and {MAX_MAP_REPLY} bytes",
                        args.join(" ")
                    ),
                });
            }
            Err(why) => {
                return Err(ClientError::Protocol {
                    addr,
                    why: why.to_string(),
                });
            }
        }
    }
}

/// The slot map one worker thread's connections share: one table per thread, not per
/// connection (50 connections' copies of 16384 slots missed the cache on every request:
/// 59% of the cluster-mode generator's own time in one `perf record`), updated by
/// whichever connection learns a MOVED.
pub(crate) struct Owners {
    /// Per block of [`BLOCK`] slots, the owner of all of them, or [`MIXED`] when they have
    /// more than one (a MOVED split the block): 256 entries that stay in the L1 cache,
    /// where the 32 KiB per-slot table missed it on every other request.
    block: Box<[Cell<u16>; SLOTS / BLOCK]>,
    /// Per slot, its owner's node id (`u16::MAX`: unowned), read for mixed blocks.
    slot: Box<[Cell<u16>; SLOTS]>,
    /// Node ids: the run's links in order (primaries, then replicas), then nodes learned
    /// from redirects.
    pub nodes: RefCell<Vec<SocketAddr>>,
}

/// Slots per entry of [`Owners`]' block table.
const BLOCK: usize = 64;
/// A block whose slots have different owners.
const MIXED: u16 = u16::MAX - 1;

impl Owners {
    pub fn new(owner: &[u16], links: &[SocketAddr]) -> Owners {
        let slot: Box<[Cell<u16>; SLOTS]> = owner
            .iter()
            .map(|&o| Cell::new(o))
            .collect::<Box<[_]>>()
            .try_into()
            .expect("an owner per slot");
        let block = slot
            .chunks(BLOCK)
            .map(|b| Cell::new(Owners::common(b)))
            .collect::<Box<[_]>>()
            .try_into()
            .expect("SLOTS is a multiple of BLOCK");
        Owners {
            block,
            slot,
            nodes: RefCell::new(links.to_vec()),
        }
    }

    fn common(slots: &[Cell<u16>]) -> u16 {
        let first = slots[0].get();
        if slots.iter().all(|s| s.get() == first) {
            first
        } else {
            MIXED
        }
    }

    /// The node id owning `slot` (`u16::MAX`: unowned).
    #[inline]
    pub fn owner(&self, slot: u16) -> u16 {
        // Slots are below SLOTS; the mask lets the compiler drop the bounds checks.
        let slot = usize::from(slot) & (SLOTS - 1);
        match self.block[slot / BLOCK].get() {
            MIXED => self.slot[slot].get(),
            owner => owner,
        }
    }

    /// Records that node `node` owns `slot` (a MOVED).
    pub fn set(&self, slot: u16, node: u16) {
        let slot = usize::from(slot) & (SLOTS - 1);
        self.slot[slot].set(node);
        let b = slot / BLOCK;
        self.block[b].set(Owners::common(&self.slot[b * BLOCK..(b + 1) * BLOCK]));
    }

    /// The node id of `addr`, given one if it is new.
    pub fn node(&self, addr: SocketAddr) -> usize {
        let mut nodes = self.nodes.borrow_mut();
        match nodes.iter().position(|&a| a == addr) {
            Some(i) => i,
            None => {
                nodes.push(addr);
                nodes.len() - 1
            }
        }
    }
}

/// How a connection finds a request's node in a cluster.
pub(crate) struct Routing {
    pub owners: Rc<Owners>,
    /// Per node id, this connection's link to it (`u16::MAX`: none yet).
    pub link_of: Vec<u16>,
    /// Per primary node id (`0..primaries`), its replicas' node ids (reads go there with
    /// `--read-from replicas`). Nodes learned from redirects have none.
    pub replicas_of: Vec<Vec<u16>>,
    /// Nodes `0..primaries` are the primaries the run started with.
    pub primaries: usize,
    pub read_from: ReadFrom,
    /// Round robin for requests without a key.
    pub next: usize,
}

/// How a template's requests are routed, computed once per run.
#[derive(Clone, Debug)]
pub(crate) enum Route {
    /// No key: any primary.
    Any,
    /// One slot for every request.
    Slot(u16),
    /// The first drawn key's slot: the key's prefix and its leading zeros (indexes are
    /// below the keyspace) hashed once, then a term per group of three varying digits.
    Drawn(Box<DigitSlots>),
}

impl Route {
    pub fn of(template: &Template, keyspace: u64) -> Route {
        match &template.route {
            KeyRoute::None => Route::Any,
            KeyRoute::Literal(key) => Route::Slot(key_slot(key)),
            KeyRoute::Drawn { prefix, .. } => {
                let (zeros, width) = template.varying_digits(keyspace);
                let mut fixed = prefix.clone();
                fixed.resize(fixed.len() + zeros, b'0');
                match SlotPrefix::new(&fixed) {
                    SlotPrefix::Fixed(slot) => Route::Slot(slot),
                    hashed => Route::Drawn(Box::new(
                        DigitSlots::new(hashed, width).expect("a prefix without a hash tag"),
                    )),
                }
            }
        }
    }
}

/// A template a connection encodes with its own hash tag (multi-key commands in cluster
/// mode), in place of the plan's.
pub(crate) struct Tagged {
    pub template: Template,
    pub prepared: Option<Prepared>,
    pub route: Route,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::WorkloadSpec;

    #[test]
    fn a_drawn_route_gives_each_keys_own_slot() {
        for keyspace in [1000, 123_457, 10_000_000] {
            let spec = WorkloadSpec::single("GET {key}", keyspace, 8);
            let template = &spec.compile().unwrap()[0];
            let Route::Drawn(slots) = Route::of(template, spec.keyspace) else {
                panic!("GET {{key}} is drawn")
            };
            for k in [0u64, 1, 42, 999, keyspace / 2, keyspace - 1] {
                let name = spec.key_name("key", k);
                assert_eq!(slots.slot(k), key_slot(name.as_bytes()), "{name}");
            }
        }
        let ping = &WorkloadSpec::single("PING", 10, 8).compile().unwrap()[0];
        assert!(matches!(Route::of(ping, 10), Route::Any));
        let tagged = WorkloadSpec {
            key_prefix: "{t}".into(),
            ..WorkloadSpec::single("GET {key}", 10, 8)
        };
        let template = &tagged.compile().unwrap()[0];
        assert!(matches!(Route::of(template, 10), Route::Slot(s) if s == key_slot(b"t")));
    }

    #[test]
    fn owners_follow_moved_slots_inside_a_block() {
        let links: Vec<SocketAddr> = vec!["127.0.0.1:1".parse().unwrap()];
        let mut owner = vec![0u16; SLOTS];
        owner[SLOTS - 1] = u16::MAX;
        let owners = Owners::new(&owner, &links);
        assert_eq!((owners.owner(0), owners.owner(130)), (0, 0));
        assert_eq!(owners.owner(SLOTS as u16 - 1), u16::MAX);
        // A MOVED splits slot 130's block; its neighbours keep their owner.
        let other = owners.node("127.0.0.1:2".parse().unwrap()) as u16;
        owners.set(130, other);
        assert_eq!(
            (owners.owner(129), owners.owner(130), owners.owner(131)),
            (0, other, 0)
        );
        // The whole block moved: one owner again.
        for slot in 128..192 {
            owners.set(slot, other);
        }
        assert!((128..192).all(|s| owners.owner(s) == other));
        assert_eq!((owners.owner(127), owners.owner(192)), (0, 0));
    }
}
