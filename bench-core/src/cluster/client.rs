//! Control-plane writes to a cluster: a client per primary, each key sent to its owner.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ClusterError, SLOTS, SlotMap, key_slot};
use crate::client::{Client, ClientError, Value};
use crate::transport::Tls;

/// A control-plane client for a cluster: a [`Client`] per primary, each key sent to its
/// slot's owner. The populators write through it (`KeyedClient`).
pub struct ClusterClient {
    pub map: SlotMap,
    clients: Vec<Client>,
    /// Per client, how many replies its queue holds, in the order they were queued.
    queued: Vec<usize>,
    order: Vec<usize>,
}

impl ClusterClient {
    /// Reads the slot map from `seed` and connects to every primary (over TLS with `tls`);
    /// refused when the map names an address outside `nodes` ([`SlotMap::foreign`]).
    pub fn connect(
        seed: SocketAddr,
        nodes: &[SocketAddr],
        tls: Option<&Tls>,
        timeout: Duration,
    ) -> Result<ClusterClient, ClusterError> {
        let map = SlotMap::discover(&mut Client::connect(seed, tls, timeout)?)?;
        if let Some(addr) = map.foreign(nodes) {
            return Err(ClusterError::Map {
                addr: seed,
                what: format!(
                    "the slot map names {addr}, which is none of the deployment's nodes; nothing is sent there"
                ),
            });
        }
        if map.unowned() > 0 {
            return Err(ClusterError::Map {
                addr: seed,
                what: format!("{} of {SLOTS} slots have no owner", map.unowned()),
            });
        }
        let clients = map
            .shards
            .iter()
            .map(|s| Client::connect(s.primary, tls, timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterClient {
            queued: vec![0; clients.len()],
            map,
            clients,
            order: Vec::new(),
        })
    }

    /// The client of the primary that owns `key`.
    pub fn for_key(&mut self, key: &[u8]) -> &mut Client {
        let shard = self.map.owner(key_slot(key)).unwrap_or(0);
        &mut self.clients[shard]
    }

    /// Every primary's client, in shard order.
    pub fn primaries(&mut self) -> &mut [Client] {
        &mut self.clients
    }
}

/// Where a populator sends its commands: one server, or a cluster's owners.
pub trait KeyedClient {
    /// Queues a command on `key`'s node.
    fn queue_keyed(&mut self, key: &[u8], args: &[&[u8]]);
    /// Sends everything queued and returns the replies in the order they were queued.
    fn flush_all(&mut self) -> Result<Vec<Value>, ClientError>;
    /// Keys in the whole dataset (every primary's DBSIZE).
    fn dbsize(&mut self) -> Result<u64, ClientError>;
    /// One command on `key`'s node.
    fn call_keyed(&mut self, key: &[u8], args: &[&[u8]]) -> Result<Value, ClientError>;
    /// Whether every key lives on one node, so one command may carry keys of any slot.
    fn one_node(&self) -> bool {
        false
    }
}

/// One server, with what [`Client`] queued counted (`flush_all` reads that many).
pub struct Single<'a> {
    pub client: &'a mut Client,
    queued: usize,
}

impl<'a> Single<'a> {
    pub fn new(client: &'a mut Client) -> Single<'a> {
        Single { client, queued: 0 }
    }
}

impl KeyedClient for Single<'_> {
    fn queue_keyed(&mut self, _key: &[u8], args: &[&[u8]]) {
        self.client.queue(args);
        self.queued += 1;
    }

    fn flush_all(&mut self) -> Result<Vec<Value>, ClientError> {
        let n = std::mem::take(&mut self.queued);
        self.client.flush_and_read(n)
    }

    fn dbsize(&mut self) -> Result<u64, ClientError> {
        Ok(self.client.call_int(&["DBSIZE"])? as u64)
    }

    fn call_keyed(&mut self, _key: &[u8], args: &[&[u8]]) -> Result<Value, ClientError> {
        self.client.call(args)
    }

    fn one_node(&self) -> bool {
        true
    }
}

impl KeyedClient for ClusterClient {
    fn queue_keyed(&mut self, key: &[u8], args: &[&[u8]]) {
        let shard = self.map.owner(key_slot(key)).unwrap_or(0);
        self.clients[shard].queue(args);
        self.queued[shard] += 1;
        self.order.push(shard);
    }

    fn flush_all(&mut self) -> Result<Vec<Value>, ClientError> {
        let mut per_shard = Vec::with_capacity(self.clients.len());
        for (client, queued) in self.clients.iter_mut().zip(&mut self.queued) {
            per_shard.push(client.flush_and_read(std::mem::take(queued))?.into_iter());
        }
        Ok(self
            .order
            .drain(..)
            .filter_map(|shard| per_shard[shard].next())
            .collect())
    }

    fn dbsize(&mut self) -> Result<u64, ClientError> {
        let mut total = 0;
        for client in &mut self.clients {
            total += client.call_int(&["DBSIZE"])? as u64;
        }
        Ok(total)
    }

    fn call_keyed(&mut self, key: &[u8], args: &[&[u8]]) -> Result<Value, ClientError> {
        self.for_key(key).call(args)
    }
}
