//! The one preload path: what a case's workload reads, written on its fresh server before
//! it runs, named as the workload's generator names its keys (`key_prefix`, `key_digits`),
//! and checked (DBSIZE, LLEN) before anything is measured. Every suite and mode that
//! drives a workload preloads through here: the perf suite and compare's slices,
//! instructions mode, flame graphs, selfbench.

use anyhow::Context;
use bench_core::client::Client;
use bench_core::cluster::{KeyedClient, Single};
use bench_core::populate;
use bench_core::workload::WorkloadSpec;

/// What a workload reads before it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Preload {
    /// The workload: its keyspace, key names and value sizes.
    pub spec: WorkloadSpec,
    pub reads: Reads,
}

/// What kind of data the workload's commands read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nothing (writes only).
    Nothing,
    /// Every string key of the keyspace (integers where the mix has INCR).
    Strings,
    /// One list of `len` elements, popped from.
    List { key: String, len: u64 },
}

impl Preload {
    /// Every string key of `spec`'s keyspace.
    pub fn strings(spec: WorkloadSpec) -> Preload {
        Preload {
            spec,
            reads: Reads::Strings,
        }
    }

    /// Writes it and returns how many items that was.
    pub fn write(&self, client: &mut Client) -> anyhow::Result<u64> {
        self.write_keyed(&mut Single::new(client))
    }

    /// Writes it through `client` (one server, or a cluster's primaries, each key to its
    /// slot's owner) and returns how many items that was.
    pub fn write_keyed(&self, client: &mut dyn KeyedClient) -> anyhow::Result<u64> {
        let items = match &self.reads {
            Reads::Nothing => 0,
            Reads::Strings => {
                populate::workload_strings(client, &self.spec)
                    .context("preloading the keyspace")?
                    .items
            }
            Reads::List { key, len } => {
                populate::list(client, key, *len, u64::from(self.spec.values.max()))
                    .with_context(|| format!("preloading the list {key}"))?
                    .items
            }
        };
        Ok(items)
    }
}
