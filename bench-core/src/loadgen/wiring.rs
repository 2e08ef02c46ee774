//! Cluster mode's wiring: the slot map read once per run, turned into the links every
//! connection opens (primaries, then the replicas reads go to) and the routing tables it
//! copies.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ClusterOptions, LoadgenError};
use crate::cluster::{SlotMap, SlotPrefix};
use crate::topology::ReadFrom;
use crate::workload::{KeyRoute, Template};

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
            let found = crate::client::Client::connect(seed, Duration::from_secs(5))
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
pub(super) async fn readonly_mode(stream: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"*1\r\n$8\r\nREADONLY\r\n").await?;
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).await?;
    if &reply != b"+OK\r\n" {
        return Err(std::io::Error::other(format!(
            "READONLY replied {:?}",
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(())
}
