//! How a case's servers are arranged, as flags and suite files name it:
//! `standalone`, `replicas:N` (a primary with N replicas attached, load on the primary),
//! `cluster:SxR` (S shards, each a primary with R replicas). The name is what records and
//! case names carry.

use std::fmt;
use std::str::FromStr;

/// The most shards a local cluster gets; each is at least one process on this machine.
pub const MAX_SHARDS: u32 = 16;
/// The most replicas per primary.
pub const MAX_REPLICAS: u32 = 8;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub enum TopologySpec {
    /// One server.
    #[default]
    Standalone,
    /// A primary and this many replicas, in sync before anything is measured.
    Replicas(u32),
    /// `shards` primaries sharing the 16384 slots evenly, each with `replicas` replicas.
    Cluster { shards: u32, replicas: u32 },
}

impl TopologySpec {
    /// Servers it starts.
    pub fn nodes(self) -> u32 {
        match self {
            TopologySpec::Standalone => 1,
            TopologySpec::Replicas(n) => n + 1,
            TopologySpec::Cluster { shards, replicas } => shards * (replicas + 1),
        }
    }

    pub fn is_cluster(self) -> bool {
        matches!(self, TopologySpec::Cluster { .. })
    }

    /// Replicas per primary.
    pub fn replicas(self) -> u32 {
        match self {
            TopologySpec::Standalone => 0,
            TopologySpec::Replicas(n) => n,
            TopologySpec::Cluster { replicas, .. } => replicas,
        }
    }
}

impl fmt::Display for TopologySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologySpec::Standalone => f.write_str("standalone"),
            TopologySpec::Replicas(n) => write!(f, "replicas:{n}"),
            TopologySpec::Cluster { shards, replicas } => write!(f, "cluster:{shards}x{replicas}"),
        }
    }
}

impl From<TopologySpec> for String {
    fn from(t: TopologySpec) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for TopologySpec {
    type Error = String;
    fn try_from(s: String) -> Result<TopologySpec, String> {
        s.parse()
    }
}

const FORMS: &str = "use standalone, replicas:N (N 1 to 8) or cluster:SxR (S 1 to 16 shards, R 0 to 8 \
                     replicas each), e.g. cluster:3x1";

impl FromStr for TopologySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<TopologySpec, String> {
        let bad = || format!("topology {s:?}: {FORMS}");
        let number = |t: &str, range: std::ops::RangeInclusive<u32>| {
            t.parse::<u32>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(bad)
        };
        match s.split_once(':') {
            None if s == "standalone" => Ok(TopologySpec::Standalone),
            Some(("replicas", n)) => Ok(TopologySpec::Replicas(number(n, 1..=MAX_REPLICAS)?)),
            Some(("cluster", shape)) => {
                let (shards, replicas) = shape.split_once('x').ok_or_else(bad)?;
                Ok(TopologySpec::Cluster {
                    shards: number(shards, 1..=MAX_SHARDS)?,
                    replicas: number(replicas, 0..=MAX_REPLICAS)?,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Where a cluster client sends reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Every request to its slot's primary.
    #[default]
    Primaries,
    /// Read-only commands to the slot's replicas (after `READONLY`), writes to primaries.
    Replicas,
}

impl FromStr for ReadFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<ReadFrom, String> {
        match s {
            "primaries" => Ok(ReadFrom::Primaries),
            "replicas" => Ok(ReadFrom::Replicas),
            _ => Err(format!("read-from {s:?}: use primaries or replicas")),
        }
    }
}

impl fmt::Display for ReadFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadFrom::Primaries => "primaries",
            ReadFrom::Replicas => "replicas",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for text in [
            "standalone",
            "replicas:2",
            "cluster:3x1",
            "cluster:1x0",
            "cluster:16x8",
        ] {
            let t: TopologySpec = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
        }
        assert_eq!(
            "cluster:3x1".parse::<TopologySpec>().unwrap().nodes(),
            6,
            "3 primaries and 3 replicas"
        );
        assert_eq!("replicas:2".parse::<TopologySpec>().unwrap().nodes(), 3);
    }

    #[test]
    fn bad_forms_name_the_value_and_the_forms() {
        for text in [
            "",
            "cluster",
            "cluster:3",
            "cluster:0x1",
            "cluster:17x0",
            "cluster:3x9",
            "replicas:0",
            "replicas:x",
            "Standalone",
            "cluster:3x1x1",
        ] {
            let e = text.parse::<TopologySpec>().unwrap_err();
            assert!(
                e.contains(&format!("{text:?}")) && e.contains("cluster:SxR"),
                "{e}"
            );
        }
    }

    #[test]
    fn read_from_parses() {
        assert_eq!("replicas".parse::<ReadFrom>().unwrap(), ReadFrom::Replicas);
        assert!(
            "replica"
                .parse::<ReadFrom>()
                .unwrap_err()
                .contains("primaries or replicas")
        );
    }
}
