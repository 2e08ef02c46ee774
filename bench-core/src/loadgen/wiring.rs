//! Cluster mode's wiring: the slot map read once per run, turned into the links every
//! connection opens (primaries, then the replicas reads go to), the slot table a worker
//! thread's connections share, and how each template is routed.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::{ClusterOptions, LoadgenError};
use crate::cluster::{SlotMap, SlotPrefix, key_slot};
use crate::topology::ReadFrom;
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
        tls: Option<&crate::net::Tls>,
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
            let found = crate::client::Client::connect(seed, tls, Duration::from_secs(5))
                .map_err(|e| e.to_string())
                .and_then(|mut c| SlotMap::discover(&mut c).map_err(|e| e.to_string()));
            match found {
                Ok(m) => {
                    map = Some(m);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let map = map.ok_or(LoadgenError::Cluster(last))?;
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
pub(super) async fn readonly_mode(stream: &mut crate::net::Wire) -> std::io::Result<()> {
    exchange(stream, b"*1\r\n$8\r\nREADONLY\r\n", b"+OK\r\n", "READONLY").await
}

/// Sends `PING` on a new connection, before the clock starts, and checks its `+PONG`: a
/// server that does not speak RESP on it (a TLS port reached in plaintext closes it, one
/// that wants AUTH says `-NOAUTH`) fails the run with why, instead of every request.
pub(super) async fn ping(stream: &mut crate::net::Wire) -> std::io::Result<()> {
    exchange(stream, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n", "PING").await
}

/// How long a new connection's first exchange (PING, READONLY, SUBSCRIBE) may take.
const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `request` and reads a reply of exactly `expected`'s length, which must be it,
/// within [`SETUP_TIMEOUT`].
async fn exchange(
    stream: &mut crate::net::Wire,
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
    match tokio::time::timeout(SETUP_TIMEOUT, setup).await {
        Ok(done) => done.map_err(crate::net::explain),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no reply to {what} within {SETUP_TIMEOUT:?}"),
        )),
    }
}

async fn exchange_now(
    stream: &mut crate::net::Wire,
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

/// The slot map one worker thread's connections share: one table per thread, not per
/// connection (50 connections' copies of 16384 slots missed the cache on every request:
/// 59% of the cluster-mode generator's own time in one `perf record`), updated by
/// whichever connection learns a MOVED.
pub(crate) struct Owners {
    /// Per slot, its owner's node id (`u16::MAX`: unowned).
    pub slot: Box<[Cell<u16>]>,
    /// Node ids: the run's links in order (primaries, then replicas), then nodes learned
    /// from redirects.
    pub nodes: RefCell<Vec<SocketAddr>>,
}

impl Owners {
    pub fn new(owner: &[u16], links: &[SocketAddr]) -> Owners {
        Owners {
            slot: owner.iter().map(|&o| Cell::new(o)).collect(),
            nodes: RefCell::new(links.to_vec()),
        }
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
#[derive(Clone, Copy, Debug)]
pub(crate) enum Route {
    /// No key: any primary.
    Any,
    /// One slot for every request.
    Slot(u16),
    /// The first drawn key's slot: the key's prefix and its leading zeros (indexes are
    /// below the keyspace) hashed once, then the last `width` digits per request.
    Drawn(SlotPrefix, u8),
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
                    hashed => Route::Drawn(hashed, width as u8),
                }
            }
        }
    }

    /// Cluster mode: each key index's slot, for a drawn route over a keyspace of at most
    /// [`SLOT_TABLE_MAX`] keys (one u16 load per request instead of formatting the key's
    /// digits and hashing them: about 70 instructions a request under callgrind).
    pub fn slot_table(self, keyspace: u64) -> Option<Box<[u16]>> {
        match self {
            Route::Drawn(prefix, width) if keyspace <= SLOT_TABLE_MAX => Some(
                (0..keyspace)
                    .map(|k| crate::workload::slot_of_index(prefix, k, usize::from(width)))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// The largest keyspace whose slots are tabled (512 KiB a template; built in about 10 ms).
pub(crate) const SLOT_TABLE_MAX: u64 = 1 << 18;

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
    fn a_slot_table_holds_each_keys_own_slot() {
        let spec = WorkloadSpec::single("GET {key}", 1000, 8);
        let template = &spec.compile().unwrap()[0];
        let route = Route::of(template, spec.keyspace);
        let table = route
            .slot_table(spec.keyspace)
            .expect("a drawn route is tabled");
        assert_eq!(table.len(), 1000);
        for k in [0u64, 1, 42, 999] {
            let name = spec.key_name("key", k);
            assert_eq!(table[k as usize], key_slot(name.as_bytes()), "{name}");
        }
        // Too many keys, or no drawn key: computed per request instead.
        assert!(route.slot_table(SLOT_TABLE_MAX + 1).is_none());
        let ping = &WorkloadSpec::single("PING", 10, 8).compile().unwrap()[0];
        assert!(Route::of(ping, 10).slot_table(10).is_none());
    }
}
