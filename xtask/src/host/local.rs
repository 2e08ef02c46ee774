//! This machine: servers are local child processes (`instances`), owned by `process`.

use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;

use super::Host;
use crate::instances::{self, Instance};
use crate::valkey::Binaries;

/// The machine xtask runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Host for Local {
    fn name(&self) -> String {
        "local".into()
    }

    fn info(&self) -> HostInfo {
        super::info()
    }

    fn machine(&self) -> bench_core::placement::Machine {
        super::machine()
    }

    fn address(&self) -> std::net::IpAddr {
        std::net::Ipv4Addr::LOCALHOST.into()
    }

    fn is_local(&self) -> bool {
        true
    }

    fn perf_event(&self, shutdown: &Shutdown) -> anyhow::Result<&'static str> {
        instances::perf_record::perf_event(shutdown)
    }

    fn start_servers(
        &self,
        binaries: &Binaries,
        count: usize,
        options: &instances::Options,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Vec<Instance>> {
        instances::start(&binaries.server, count, options, shutdown)
    }
}
