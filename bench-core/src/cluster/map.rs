//! The slot map: which shard owns each slot, read from `CLUSTER SHARDS` or `CLUSTER SLOTS`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use super::SLOTS;
use crate::client::{Client, ClientError, Value};

/// One shard: its primary and replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub primary: SocketAddr,
    pub replicas: Vec<SocketAddr>,
}

/// Which shard owns each slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    pub shards: Vec<Shard>,
    /// Per slot, the index of its shard in `shards`; `u16::MAX` where no shard owns it.
    owner: Vec<u16>,
}

/// Why a slot map could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{addr}: {what}")]
    Map { addr: SocketAddr, what: String },
}

impl SlotMap {
    /// A map from `(first slot, last slot, shard)` ranges.
    pub fn from_ranges(shards: Vec<Shard>, ranges: &[(u16, u16, usize)]) -> SlotMap {
        let mut owner = vec![u16::MAX; SLOTS];
        for &(first, last, shard) in ranges {
            for slot in first..=last.min(SLOTS as u16 - 1) {
                owner[usize::from(slot)] = shard as u16;
            }
        }
        SlotMap { shards, owner }
    }

    /// The shard that owns `slot`.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        let i = *self.owner.get(usize::from(slot))?;
        (i != u16::MAX).then_some(usize::from(i))
    }

    /// Per slot, its shard's index (`u16::MAX`: unowned): what the generator copies.
    pub fn owners(&self) -> &[u16] {
        &self.owner
    }

    /// The first address the map names (a primary or a replica) that is not among
    /// `nodes`: a node that announces another address (`cluster-announce-*`) would send our
    /// traffic somewhere that is not ours. `None` when every address is, or `nodes` is
    /// empty (a user's own cluster, whatever its addresses).
    pub fn foreign(&self, nodes: &[SocketAddr]) -> Option<SocketAddr> {
        if nodes.is_empty() {
            return None;
        }
        self.shards
            .iter()
            .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
            .find(|a| !nodes.contains(a))
            .copied()
    }

    /// Slots no shard owns.
    pub fn unowned(&self) -> usize {
        self.owner.iter().filter(|&&o| o == u16::MAX).count()
    }

    /// How many slots each shard owns, in shard order.
    pub fn slots_per_shard(&self) -> Vec<usize> {
        let mut counts = vec![0; self.shards.len()];
        for &o in &self.owner {
            if let Some(c) = counts.get_mut(usize::from(o)) {
                *c += 1;
            }
        }
        counts
    }

    /// Reads the map from one node: `CLUSTER SHARDS` (Valkey 7+), else `CLUSTER SLOTS`.
    pub fn discover(client: &mut Client) -> Result<SlotMap, ClusterError> {
        let (addr, tls) = (client.addr(), client.is_tls());
        SlotMap::read(addr, tls, |args| client.call(args))
    }

    /// Reads the map from the node at `addr` through `ask` (one command, its reply): the
    /// control plane asks with its [`Client`], the load generator over its own transport.
    pub fn read(
        addr: SocketAddr,
        tls: bool,
        mut ask: impl FnMut(&[&str]) -> Result<Value, ClientError>,
    ) -> Result<SlotMap, ClusterError> {
        let map = match ask(&["CLUSTER", "SHARDS"]) {
            Ok(reply) => from_shards(&reply, addr, tls),
            Err(ClientError::Server { message, .. }) if message.contains("unknown") => {
                from_slots(&ask(&["CLUSTER", "SLOTS"])?, addr)
            }
            Err(e) => return Err(e.into()),
        };
        map.map_err(|what| ClusterError::Map { addr, what })
    }

    /// The same map with its shards in primary-address order and each shard's replicas
    /// sorted: nodes list shards in their own order, so two nodes agree when their
    /// normalized maps are equal.
    pub fn normalized(&self) -> SlotMap {
        let mut order: Vec<usize> = (0..self.shards.len()).collect();
        order.sort_by_key(|&i| self.shards[i].primary);
        let mut new_index = vec![0u16; self.shards.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new as u16;
        }
        let shards = order
            .iter()
            .map(|&i| {
                let mut shard = self.shards[i].clone();
                shard.replicas.sort();
                shard
            })
            .collect();
        let owner = self
            .owner
            .iter()
            .map(|&o| {
                if o == u16::MAX {
                    o
                } else {
                    new_index[usize::from(o)]
                }
            })
            .collect();
        SlotMap { shards, owner }
    }

    /// The shard whose primary is `addr`, if any.
    pub fn shard_of_primary(&self, addr: SocketAddr) -> Option<usize> {
        self.shards.iter().position(|s| s.primary == addr)
    }
}

/// A node's address from its `ip` (or `endpoint`) and `port`; `fallback` stands in for an
/// empty or `?` ip, the address we reached the node at.
fn node_addr(ip: &str, port: i64, fallback: SocketAddr) -> Result<SocketAddr, String> {
    let port = u16::try_from(port).map_err(|_| format!("port {port} out of range"))?;
    let ip = ip.trim();
    if ip.is_empty() || ip == "?" {
        return Ok(SocketAddr::new(fallback.ip(), port));
    }
    (ip, port)
        .to_socket_addrs()
        .map_err(|e| format!("address {ip}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {ip}:{port} resolves to nothing"))
}

/// A RESP2 map (a flat array of name, value pairs) as name → value.
fn flat_map(v: &Value) -> Result<BTreeMap<String, &Value>, String> {
    let Value::Array(Some(items)) = v else {
        return Err(format!("expected a map, got {v:?}"));
    };
    let mut map = BTreeMap::new();
    for pair in items.chunks(2) {
        if let [name, value] = pair {
            map.insert(text(name)?, value);
        }
    }
    Ok(map)
}

fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::Simple(s) => Ok(s.clone()),
        Value::Bulk(Some(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        v => Err(format!("expected a string, got {v:?}")),
    }
}

fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Integer(n) => Ok(*n),
        v => text(v)?
            .parse()
            .map_err(|_| format!("expected an integer, got {v:?}")),
    }
}

fn array(v: &Value) -> Result<&[Value], String> {
    match v {
        Value::Array(Some(items)) => Ok(items),
        v => Err(format!("expected an array, got {v:?}")),
    }
}

/// Parses a `CLUSTER SHARDS` reply. Nodes whose health is `fail` are left out; a shard
/// with no primary left owns nothing. A replica reported `loading` stays: a node calls a
/// replica that until the replica's replication offset reaches it by gossip, which takes
/// up to half the node timeout (7.5 s by default) after a sync that is long finished; a
/// replica that really is loading answers `-LOADING`, which the generator counts.
/// Over TLS a node's address is its `tls-port`, else its `port` (a TLS-only node has no
/// `port`, a plain one no `tls-port`).
pub fn from_shards(reply: &Value, reached: SocketAddr, tls: bool) -> Result<SlotMap, String> {
    let mut shards = Vec::new();
    let mut ranges = Vec::new();
    for shard in array(reply)? {
        let shard = flat_map(shard)?;
        let slots = shard.get("slots").ok_or("a shard without `slots`")?;
        let nodes = shard.get("nodes").ok_or("a shard without `nodes`")?;
        let (mut primary, mut replicas) = (None, Vec::new());
        for node in array(nodes)? {
            let node = flat_map(node)?;
            let field = |name: &str| node.get(name).ok_or(format!("a node without `{name}`"));
            if node.get("health").map(|h| text(h)).transpose()?.as_deref() == Some("fail") {
                continue;
            }
            let ip = node
                .get("ip")
                .map(|v| text(v))
                .transpose()?
                .unwrap_or_default();
            let port = match (tls, node.get("tls-port")) {
                (true, Some(port)) => int(port)?,
                _ => int(field("port")?)?,
            };
            let addr = node_addr(&ip, port, reached)?;
            match text(field("role")?)?.as_str() {
                "master" | "primary" => primary = Some(addr),
                _ => replicas.push(addr),
            }
        }
        let Some(primary) = primary else { continue };
        let bounds = array(slots)?;
        let index = shards.len();
        for pair in bounds.chunks(2) {
            if let [first, last] = pair {
                ranges.push((slot(first)?, slot(last)?, index));
            }
        }
        shards.push(Shard { primary, replicas });
    }
    Ok(SlotMap::from_ranges(shards, &ranges))
}

/// Parses a `CLUSTER SLOTS` reply: `[first, last, [ip, port, id], replicas...]` per range.
pub fn from_slots(reply: &Value, reached: SocketAddr) -> Result<SlotMap, String> {
    let mut shards: Vec<Shard> = Vec::new();
    let mut ranges = Vec::new();
    for range in array(reply)? {
        let range = array(range)?;
        let [first, last, nodes @ ..] = range else {
            return Err(format!("a slot range with {} fields", range.len()));
        };
        let addr = |node: &Value| -> Result<SocketAddr, String> {
            let node = array(node)?;
            let [ip, port, ..] = node else {
                return Err("a node without an address".into());
            };
            node_addr(&text(ip)?, int(port)?, reached)
        };
        let Some((primary, replicas)) = nodes.split_first() else {
            continue;
        };
        let primary = addr(primary)?;
        let index = match shards.iter().position(|s| s.primary == primary) {
            Some(i) => i,
            None => {
                shards.push(Shard {
                    primary,
                    replicas: replicas.iter().map(addr).collect::<Result<_, _>>()?,
                });
                shards.len() - 1
            }
        };
        ranges.push((slot(first)?, slot(last)?, index));
    }
    Ok(SlotMap::from_ranges(shards, &ranges))
}

fn slot(v: &Value) -> Result<u16, String> {
    let n = int(v)?;
    u16::try_from(n)
        .ok()
        .filter(|&s| usize::from(s) < SLOTS)
        .ok_or(format!("slot {n} out of range"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_that_is_not_a_node_of_ours_is_foreign() {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let map = SlotMap::from_ranges(
            vec![
                Shard {
                    primary: a(1),
                    replicas: vec![a(3)],
                },
                Shard {
                    primary: a(2),
                    replicas: vec![SocketAddr::from(([127, 0, 0, 99], 6379))],
                },
            ],
            &[(0, 8191, 0), (8192, 16383, 1)],
        );
        assert_eq!(
            map.foreign(&[a(1), a(2), a(3)]),
            Some(SocketAddr::from(([127, 0, 0, 99], 6379)))
        );
        assert_eq!(
            map.foreign(&[a(1), a(2), a(3), SocketAddr::from(([127, 0, 0, 99], 6379))]),
            None
        );
        assert_eq!(map.foreign(&[]), None);
    }

    use super::*;
    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }
    fn reached() -> SocketAddr {
        "127.0.0.1:7000".parse().unwrap()
    }
    #[test]
    fn cluster_shards_replies_give_the_owners() {
        let node = |port: i64, role: &str, health: &str| {
            Value::Array(Some(vec![
                bulk("id"),
                bulk("abc"),
                bulk("port"),
                Value::Integer(port),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
                bulk("health"),
                bulk(health),
            ]))
        };
        let shard = |slots: &[i64], nodes: Vec<Value>| {
            Value::Array(Some(vec![
                bulk("slots"),
                Value::Array(Some(slots.iter().map(|&s| Value::Integer(s)).collect())),
                bulk("nodes"),
                Value::Array(Some(nodes)),
            ]))
        };
        let reply = Value::Array(Some(vec![
            shard(
                &[0, 8191],
                vec![
                    node(7000, "master", "online"),
                    node(7002, "replica", "online"),
                ],
            ),
            shard(
                &[8192, 16000, 16001, 16383],
                vec![
                    node(7001, "master", "online"),
                    node(7003, "replica", "fail"),
                ],
            ),
        ]));
        let map = from_shards(&reply, reached(), false).unwrap();
        assert_eq!(map.shards.len(), 2);
        assert_eq!(
            map.shards[0].replicas,
            vec!["127.0.0.1:7002".parse().unwrap()]
        );
        assert!(
            map.shards[1].replicas.is_empty(),
            "a failed replica serves nothing"
        );
        assert_eq!(map.owner(0), Some(0));
        assert_eq!(map.owner(8192), Some(1));
        assert_eq!(map.owner(16383), Some(1));
        assert_eq!(map.unowned(), 0);
        assert_eq!(map.slots_per_shard(), vec![8192, 8192]);
        // Another node lists the shards the other way round: the same map.
        let Value::Array(Some(mut shards)) = reply else {
            unreachable!()
        };
        shards.reverse();
        let other = from_shards(&Value::Array(Some(shards)), reached(), false).unwrap();
        assert_ne!(other, map);
        assert_eq!(other.normalized(), map.normalized());
    }
    #[test]
    fn tls_clients_use_the_tls_port() {
        let node = |fields: &[(&str, i64)]| {
            let mut items = vec![bulk("ip"), bulk("127.0.0.1"), bulk("role"), bulk("master")];
            for (name, port) in fields {
                items.extend([bulk(name), Value::Integer(*port)]);
            }
            Value::Array(Some(items))
        };
        let reply = |n: Value| {
            Value::Array(Some(vec![Value::Array(Some(vec![
                bulk("slots"),
                Value::Array(Some(vec![Value::Integer(0), Value::Integer(16383)])),
                bulk("nodes"),
                Value::Array(Some(vec![n])),
            ]))]))
        };
        let primary = |r: &Value, tls| from_shards(r, reached(), tls).map(|m| m.shards[0].primary);
        let both = reply(node(&[("port", 7000), ("tls-port", 7100)]));
        assert_eq!(primary(&both, false), Ok("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(primary(&both, true), Ok("127.0.0.1:7100".parse().unwrap()));
        let tls_only = reply(node(&[("tls-port", 7100)]));
        assert_eq!(
            primary(&tls_only, true),
            Ok("127.0.0.1:7100".parse().unwrap())
        );
        assert!(primary(&tls_only, false).unwrap_err().contains("`port`"));
    }

    #[test]
    fn cluster_slots_replies_give_the_owners() {
        let node = |port: i64| {
            Value::Array(Some(vec![
                bulk("127.0.0.1"),
                Value::Integer(port),
                bulk("id"),
            ]))
        };
        let range = |a: i64, b: i64, nodes: Vec<Value>| {
            let mut v = vec![Value::Integer(a), Value::Integer(b)];
            v.extend(nodes);
            Value::Array(Some(v))
        };
        let reply = Value::Array(Some(vec![
            range(0, 99, vec![node(7000), node(7003)]),
            range(100, 199, vec![node(7001)]),
            range(200, 299, vec![node(7000), node(7003)]),
        ]));
        let map = from_slots(&reply, reached()).unwrap();
        assert_eq!(map.shards.len(), 2, "ranges of one primary are one shard");
        assert_eq!(map.owner(250), Some(0));
        assert_eq!(map.owner(150), Some(1));
        assert_eq!(map.owner(300), None);
        assert_eq!(map.unowned(), SLOTS - 300);
    }
    #[test]
    fn an_empty_ip_means_the_address_we_reached() {
        assert_eq!(node_addr("", 7005, reached()).unwrap().port(), 7005);
        assert_eq!(
            node_addr("?", 7005, reached()).unwrap().ip(),
            reached().ip()
        );
        assert!(node_addr("127.0.0.1", 70000, reached()).is_err());
    }
}
