//! Test doubles for the case flow's order tests: servers and an engine that start nothing
//! and write what is done to them, in order, into one shared [`Log`] (as hyperfine tests
//! its scheduler with a mock executor).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bench_core::engine::{Engine, EngineError, Load, Measurement, Target};
use bench_core::info::Info;
use bench_core::result::HostInfo;
use bench_core::shutdown::Shutdown;

use super::monitor::Monitor;
use super::preload::{Preload, Reads};
use super::{CaseContext, Server, Servers};
use crate::instances;
use crate::valkey::Binaries;

/// What was done, one line per step: `deploy#1 baseline`, `preload#1 strings 1000`,
/// `run#1 5000`, `info#1`, `check#1`.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, line: String) {
        self.0.lock().expect("log lock").push(line);
    }

    /// Everything so far, and the log emptied.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("log lock"))
    }
}

/// Binaries that name a side (`version`); nothing is ever started from them.
pub fn binaries(version: &str) -> Binaries {
    Binaries {
        server: "/nonexistent/valkey-server".into(),
        cli: "/nonexistent/valkey-cli".into(),
        benchmark: "/nonexistent/valkey-benchmark".into(),
        version: version.into(),
        source_id: format!("fake:{version}"),
        build: Default::default(),
        compiler: "none".into(),
        cached: true,
        source_archive: None,
    }
}

/// Numbers each deployment (`#1`, `#2`, ...) by the port of its target.
pub struct FakeServers {
    pub log: Log,
    deployed: Mutex<u16>,
}

impl FakeServers {
    pub fn new(log: &Log) -> FakeServers {
        FakeServers {
            log: log.clone(),
            deployed: Mutex::new(0),
        }
    }
}

impl Servers for FakeServers {
    fn start(
        &self,
        binaries: &Binaries,
        _options: &instances::Options,
        _shutdown: &Shutdown,
    ) -> anyhow::Result<Box<dyn Server>> {
        let n = {
            let mut d = self.deployed.lock().expect("deployed lock");
            *d += 1;
            *d
        };
        self.log.push(format!("deploy#{n} {}", binaries.version));
        Ok(Box::new(FakeServer {
            n,
            log: self.log.clone(),
            calls: 0,
        }))
    }
}

/// A server that answers INFO with a GET count that grows by the requests run on it.
pub struct FakeServer {
    n: u16,
    log: Log,
    calls: u64,
}

impl Server for FakeServer {
    fn target(&self) -> Target {
        Target::standalone(SocketAddr::from(([127, 0, 0, 1], self.n)))
    }

    fn port(&self) -> u16 {
        self.n
    }

    fn pid(&self) -> u32 {
        0
    }

    fn perf_record(
        &self,
        _event: &str,
        _frequency: u32,
    ) -> anyhow::Result<crate::instances::perf_record::PerfRecording<'_>> {
        anyhow::bail!("a fake server has no process to profile")
    }

    fn client(&self) -> anyhow::Result<bench_core::client::Client> {
        anyhow::bail!("a fake server has no connection")
    }

    fn info(&mut self) -> anyhow::Result<Info> {
        self.log.push(format!("info#{}", self.n));
        // The engine cannot reach us; count a call per INFO so deltas are non-zero.
        self.calls += 1000;
        Ok(Info::parse(&format!(
            "# CPU\r\nused_cpu_sys:0\r\nused_cpu_user:{}\r\n# Commandstats\r\ncmdstat_get:calls={},usec={}\r\n",
            self.calls as f64 / 1e6,
            self.calls,
            self.calls
        )))
    }

    fn preload(&mut self, preload: &Preload) -> anyhow::Result<u64> {
        let (what, items) = match &preload.reads {
            Reads::Nothing => ("nothing".to_string(), 0),
            Reads::Strings => ("strings".to_string(), preload.spec.keyspace),
            Reads::List { key, len } => (format!("list {key}"), *len),
        };
        self.log.push(format!("preload#{} {what} {items}", self.n));
        Ok(items)
    }

    fn answers(&mut self) -> anyhow::Result<()> {
        self.log.push(format!("check#{}", self.n));
        Ok(())
    }

    fn list_len(&mut self, key: &str) -> anyhow::Result<i64> {
        self.log.push(format!("llen#{} {key}", self.n));
        Ok(1)
    }

    fn exited(&mut self) -> Option<String> {
        None
    }

    fn monitor(&self) -> Monitor {
        self.log.push(format!("monitor#{}", self.n));
        Monitor::start(Vec::new(), None)
    }

    fn hosts(
        &self,
        _hosts: &crate::host::ServerHosts,
    ) -> Vec<bench_core::result::ServerHostRecord> {
        Vec::new()
    }
}

/// An engine that logs `run#N REQUESTS` and reports 100,000 ops/s.
pub struct FakeEngine {
    pub log: Log,
}

impl Engine for FakeEngine {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn version(&self) -> &str {
        "0"
    }

    fn describe(&self, _target: &Target, _load: &Load) -> Vec<String> {
        vec!["fake".into()]
    }

    fn run(
        &self,
        target: &Target,
        load: &Load,
        _shutdown: &Shutdown,
    ) -> Result<Measurement, EngineError> {
        self.log
            .push(format!("run#{} {}", target.primary().port(), load.requests));
        Ok(Measurement {
            requests: load.requests,
            ops_per_sec: 100_000.0,
            wall_secs: load.requests as f64 / 100_000.0,
            ..Default::default()
        })
    }
}

/// A context on fake servers and the fake engine, for `binaries`.
pub fn context<'a>(
    binaries: &'a Binaries,
    host: &'a HostInfo,
    engine: &'a FakeEngine,
    servers: &'a FakeServers,
    shutdown: &'a Shutdown,
) -> CaseContext<'a> {
    CaseContext {
        run_id: "fake",
        binaries,
        host,
        hosts: crate::host::local_hosts(),
        engine,
        base_port: 1,
        shutdown,
        servers,
        tls: None,
    }
}
