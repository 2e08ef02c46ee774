//! `cargo xtask loadgen --client-hosts X,Y`: the generator on several hosts against one
//! server, their measurements merged losslessly, a live line about once a second: each
//! host's last progress summed, once every host has reported (a remote host's as its
//! agent last saw it: up to a second behind).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bench_core::loadgen::merge::{self, ClientHostReport};
use bench_core::loadgen::{Progress, Report, RunOptions};
use bench_core::shutdown::Shutdown;
use bench_core::workload::WorkloadSpec;

use super::choice::{Hosts, HostsChoice};
use super::clients::{ClientHost, ClientHosts, PartsError};
use crate::error::UsageError;

/// Connects to the client hosts (host keys checked, agents started). A server address on
/// this machine's loopback is refused with hosts other than `local`: each would reach
/// its own.
pub fn connect(
    file: Option<PathBuf>,
    names: &str,
    addr: SocketAddr,
    shutdown: &Shutdown,
) -> anyhow::Result<Hosts> {
    let choice = HostsChoice {
        file,
        server_hosts: None,
        client_hosts: Some(names.to_string()),
        load_only: true,
    }
    .with_env();
    let checked = choice.check()?;
    let remote = checked.clients.iter().flatten().any(|spec| spec.is_some());
    if remote && (addr.ip().is_loopback() || addr.ip().is_unspecified()) {
        return Err(UsageError(format!(
            "--host {}: with --client-hosts {names} each host would reach its own loopback; \
             give the server's address on their network",
            addr.ip()
        ))
        .into());
    }
    choice.connect(shutdown)
}

/// Runs `options` (the whole run's) from every client host and merges their reports:
/// every percentile of the merged report is of all the hosts' requests. `second` gets a
/// line a second: the hosts' replies summed.
pub fn run(
    clients: &ClientHosts,
    addr: SocketAddr,
    spec: &WorkloadSpec,
    options: &RunOptions,
    shutdown: &Shutdown,
    second: &mut dyn FnMut(Progress),
) -> anyhow::Result<(Report, Vec<ClientHostReport>)> {
    let latest: Mutex<Vec<Option<Progress>>> = Mutex::new(vec![None; clients.hosts.len()]);
    let done = Shutdown::new();
    let names: Vec<&str> = clients.hosts.iter().map(ClientHost::name).collect();
    eprintln!(
        "load from {}: {} connections divided among them",
        names.join(", "),
        options.connections
    );
    let parts = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            // Triggered however this ends, a panic included, so the loop below ends too.
            struct Done<'a>(&'a Shutdown);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.trigger();
                }
            }
            let _done = Done(&done);
            clients.run_parts(&[addr], spec, options, shutdown, &|i, p| {
                latest.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(p);
            })
        });
        // A line once every host has reported a later second: what each saw last, summed.
        let mut printed = Duration::ZERO;
        while !done.is_triggered() {
            std::thread::sleep(Duration::from_millis(50));
            let seen = latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some(all) = seen.iter().copied().collect::<Option<Vec<Progress>>>() else {
                continue;
            };
            let slowest = all.iter().map(|p| p.elapsed).min().unwrap_or_default();
            if slowest >= printed + Duration::from_millis(900) {
                printed = slowest;
                second(sum(&seen));
            }
        }
        running.join()
    });
    let (parts, _wall) = match parts {
        Ok(Ok(parts)) => parts,
        Ok(Err(PartsError::Interrupted)) => anyhow::bail!("interrupted"),
        Ok(Err(PartsError::Failed(why))) => anyhow::bail!("{why}"),
        Err(_) => anyhow::bail!("the client hosts' run panicked"),
    };
    merge::merge(&parts).map_err(anyhow::Error::msg)
}

/// The hosts' progress, summed (elapsed: the longest).
fn sum(seen: &[Option<Progress>]) -> Progress {
    seen.iter().flatten().fold(
        Progress {
            elapsed: Duration::ZERO,
            ops_last_second: 0,
            completed: 0,
        },
        |acc, p| Progress {
            elapsed: acc.elapsed.max(p.elapsed),
            ops_last_second: acc.ops_last_second + p.ops_last_second,
            completed: acc.completed + p.completed,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_line_sums_the_hosts_that_reported() {
        let p = |s: u64, ops: u64, done: u64| {
            Some(Progress {
                elapsed: Duration::from_secs(s),
                ops_last_second: ops,
                completed: done,
            })
        };
        let total = sum(&[p(3, 100, 250), None, p(2, 50, 120)]);
        assert_eq!(total.elapsed, Duration::from_secs(3));
        assert_eq!(total.ops_last_second, 150);
        assert_eq!(total.completed, 370);
    }
}
