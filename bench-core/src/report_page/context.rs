//! What a reader needs before the numbers: warnings about a weak run, the command that
//! reproduces it, the environment, and every parameter of every case.

use crate::result::ResultRecord;
use crate::tables::{self, CaseSummary};

/// Repetitions shorter than this see one of the machine's speed regimes (seconds).
pub const SHORT_REPETITION_SECS: f64 = 3.0;
/// A case whose repetitions' ops/s spread wider than this (percent) has no reliable median.
pub const WIDE_RANGE_PCT: f64 = 15.0;
/// The client thread is near saturation above this share of a core.
pub const CLIENT_BUSY: f64 = 0.8;
/// A client host that started this late after the agreed instant (µs) is named.
pub const LATE_START_US: u64 = 10_000;

/// The warnings for a perf run, each saying what to do instead; empty for a sound run.
pub fn weak_run(records: &[ResultRecord], summaries: &[CaseSummary]) -> Vec<String> {
    let mut out = Vec::new();
    let walls: Vec<f64> = records.iter().map(|r| r.metrics.wall_secs).collect();
    if let Some(wall) = crate::stats::median(&walls)
        && wall < SHORT_REPETITION_SECS
    {
        out.push(format!(
            "**Short repetitions**: each measured run lasted {wall:.1} s (median), under {SHORT_REPETITION_SECS:.0} s. \
             A short run sees one of the machine's speed regimes, so repetitions disagree. For conclusions use \
             the default suite or a suite file with `measure_seconds` of 5 or more, and judge a change with \
             `cargo xtask compare`, which pairs the two builds' runs."
        ));
    }
    let wide: Vec<&CaseSummary> = summaries
        .iter()
        .filter(|s| s.ops_range_pct.is_some_and(|r| r > WIDE_RANGE_PCT))
        .collect();
    if !wide.is_empty() {
        let mut worst = wide.clone();
        worst.sort_by(|a, b| {
            let r = |s: &CaseSummary| s.ops_range_pct.unwrap_or(0.0);
            r(b).total_cmp(&r(a))
        });
        let named: Vec<String> = worst
            .iter()
            .take(3)
            .map(|s| format!("{} {:.0}%", s.case, s.ops_range_pct.unwrap_or(0.0)))
            .collect();
        out.push(format!(
            "**Unstable cases**: {} of {} cases spread over {WIDE_RANGE_PCT:.0}% between repetitions (ops/s range; \
             widest: {}). Their medians are not reliable: add repetitions or lengthen them, quiet the machine, or \
             compare builds with `cargo xtask compare`.",
            wide.len(),
            summaries.len(),
            named.join(", ")
        ));
    }
    let pinned_apart = records.iter().all(|r| {
        let p = &r.params.placement;
        p.server_cpus.is_some() && p.client_cpus.is_some()
    });
    if let Some(r) = records.first()
        && !pinned_apart
        && records.iter().any(|r| {
            r.engine
                .argv
                .iter()
                .any(|a| a == "127.0.0.1" || a == "localhost")
        })
    {
        out.push(format!(
            "**Client and server share CPUs**: the load generator and the server ran on one host ({} CPUs), \
             unpinned, so they compete for cores and the figures measure the pair. Run the client on another \
             host, or pin the two to separate cores.",
            r.host.cpus
        ));
    }
    // Load from several hosts: each host's own generator, and whether they started
    // together.
    let mut host_busy: Vec<(String, String, f64)> = Vec::new();
    let mut late_start: Option<(String, u64)> = None;
    for r in records {
        for h in &r.metrics.client_hosts {
            if h.client_busy >= CLIENT_BUSY {
                host_busy.push((r.case.clone(), h.name.clone(), h.client_busy));
            }
            if h.late_start_us > LATE_START_US
                && late_start
                    .as_ref()
                    .is_none_or(|(_, us)| h.late_start_us > *us)
            {
                late_start = Some((h.name.clone(), h.late_start_us));
            }
        }
    }
    if let Some((case, host, busy)) = host_busy.iter().max_by(|a, b| a.2.total_cmp(&b.2)) {
        out.push(format!(
            "**A client host is near saturation** in {} measured run(s) (client host {host} used {:.0}% of its \
             generator threads in {case}): there the figures may be that host's limit, not the server's. Add \
             client threads, or another client host.",
            host_busy.len(),
            busy * 100.0
        ));
    }
    if let Some((host, us)) = late_start {
        out.push(format!(
            "**Client hosts started apart**: client host {host} started {:.1} ms after the agreed instant (its \
             connections were up late), so the first second's figures mix hosts that had started and hosts that \
             had not.",
            us as f64 / 1e3
        ));
    }
    let busy: Vec<(String, f64)> = summaries
        .iter()
        .filter(|s| {
            // Several client hosts: judged per host above.
            !records
                .iter()
                .any(|r| r.case == s.case && !r.metrics.client_hosts.is_empty())
        })
        .filter_map(|s| {
            let threads = records
                .iter()
                .find(|r| r.case == s.case)
                .map_or(1, |r| r.params.client_threads.max(1));
            let cores = s.client_cpu_us? * s.ops_per_sec / 1e6 / f64::from(threads);
            (cores >= CLIENT_BUSY).then(|| (s.case.clone(), cores))
        })
        .collect();
    if !busy.is_empty() {
        let (case, cores) = busy
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("not empty");
        out.push(format!(
            "**The client is near saturation** in {} case(s) (up to {cores:.2} of a core per client thread, \
             {case}): there the figures may be the load generator's limit, not the server's. Add client threads \
             (`client_threads` in a suite file) or run the client on its own cores.",
            busy.len()
        ));
    }
    out
}

/// An RFC 3339 UTC timestamp as people read it: `2026-12-01T20:28:13.295Z` →
/// `1 December 2026, 20:28 UTC`; anything else unchanged.
pub fn human_date(timestamp: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let parse = || -> Option<String> {
        let (date, time) = timestamp.split_once('T')?;
        let mut d = date.split('-');
        let (y, m, day) = (d.next()?, d.next()?.parse::<usize>().ok()?, d.next()?);
        let day: u32 = day.parse().ok()?;
        let month = MONTHS.get(m.checked_sub(1)?)?;
        let hm = time.get(..5)?;
        Some(format!("{day} {month} {y}, {hm} UTC"))
    };
    parse().unwrap_or_else(|| timestamp.to_string())
}

/// The environment of a run, from its first record: one line each.
pub fn environment(first: &ResultRecord, engine: &str) -> Vec<String> {
    let v = &first.valkey;
    let h = &first.host;
    let mut lines = vec![
        format!(
            "Valkey {} ({}), built with {} by {}",
            v.version,
            v.source_id,
            v.build,
            if v.compiler.is_empty() {
                "an unrecorded compiler"
            } else {
                &v.compiler
            }
        ),
        format!(
            "{} {}: {} CPUs, {}; {:.1} GiB of memory; kernel {}",
            if first.server_hosts.is_empty() {
                "host"
            } else {
                "xtask ran on host"
            },
            h.hostname,
            h.cpus,
            h.model,
            h.memory_bytes as f64 / (1u64 << 30) as f64,
            h.kernel
        ),
        format!("load generator: {engine} {}", first.engine.version),
        format!("started {}", human_date(&first.timestamp)),
    ];
    for s in &first.server_hosts {
        lines.push(format!(
            "servers on host {} ({}): {}; {} CPUs, {}; kernel {}; round trip from the load's machine {}{}",
            s.name,
            s.address,
            s.servers.join(", "),
            s.facts.cpus,
            s.facts.model,
            s.facts.kernel,
            s.rtt_us
                .map_or("not measured".to_string(), |us| format!("{us:.0} µs (median of 21 PINGs)")),
            s.build
                .as_deref()
                .filter(|b| *b != "shipped")
                .map_or(String::new(), |b| format!("; Valkey {b}"))
        ));
    }
    if !first.metrics.client_hosts.is_empty() {
        let names: Vec<String> = first
            .metrics
            .client_hosts
            .iter()
            .map(|h| format!("{} ({} connections)", h.name, h.connections))
            .collect();
        lines.push(format!(
            "load from client hosts {}, merged: every percentile is of all their requests",
            names.join(", ")
        ));
    }
    lines
}

/// What a perf case name says.
pub const CASE_NAME_NOTE: &str = "A case name is COMMAND/VALUE/P<pipeline>/c<clients>/io<io-threads>/<keyspace>-keys: \
`GET/32B/P16/c50/io1/1M-keys` sends GET with 32-byte values, 16 requests in flight per connection, over 50 connections, \
to a server with 1 I/O thread, on keys drawn uniformly from 1,000,000 (its working set; commands that touch no \
key have no keyspace in their name). Each repetition starts a fresh server, writes what the command reads or \
overwrites (preloaded), \
runs the warmup requests (discarded), then the measured ones; the last column is the measured run's own command \
line (`cargo xtask loadgen` repeats it against a server you start).";

/// Every parameter of every case of a run, one row per case (its first repetition's).
pub fn parameters_table(records: &[ResultRecord]) -> String {
    let header = [
        "case",
        "requests / rep",
        "warmup requests",
        "keyspace",
        "preloaded",
        "clients",
        "client threads",
        "pipeline",
        "io-threads",
        "server config",
        "measured run",
    ];
    let mut seen: Vec<&str> = Vec::new();
    let rows: Vec<Vec<String>> = records
        .iter()
        .filter(|r| {
            let new = !seen.contains(&r.case.as_str());
            if new {
                seen.push(&r.case);
            }
            new
        })
        .map(|r| {
            let p = &r.params;
            let config: Vec<String> = p
                .server_config
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let argv: Vec<String> = r
                .engine
                .argv
                .iter()
                .map(|a| {
                    if a.contains(' ') || a.contains('{') {
                        format!("\"{a}\"")
                    } else {
                        a.clone()
                    }
                })
                .collect();
            vec![
                crate::compare::escape_markdown(&r.case),
                tables::group_thousands(p.requests as f64),
                tables::group_thousands(p.warmup_requests as f64),
                tables::group_thousands(p.keyspace as f64),
                tables::group_thousands(p.preloaded_items as f64),
                p.clients.to_string(),
                p.client_threads.to_string(),
                p.pipeline.to_string(),
                p.io_threads.to_string(),
                if config.is_empty() {
                    "-".into()
                } else {
                    crate::compare::escape_markdown(&config.join(", "))
                },
                format!("`{}`", argv.join(" ").replace('`', "'")),
            ]
        })
        .collect();
    tables::aligned(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::tests::sample;

    #[test]
    fn dates_read_as_people_write_them() {
        assert_eq!(
            human_date("2026-12-01T20:28:13.295Z"),
            "1 December 2026, 20:28 UTC"
        );
        assert_eq!(human_date("yesterday"), "yesterday");
    }

    #[test]
    fn a_short_wide_local_saturated_run_gets_every_warning_and_a_sound_one_none() {
        let rep = |ops: f64, wall: f64, client_us: f64| {
            let mut r = sample();
            r.case = "GET/32B/P1/c50/io1".into();
            r.metrics.ops_per_sec = ops;
            r.metrics.wall_secs = wall;
            r.metrics.client_cpu_us_per_request = Some(client_us);
            r.params.client_threads = 1;
            r.engine.argv = vec!["cargo".into(), "--host".into(), "127.0.0.1".into()];
            r
        };
        // 0.5 s runs, ops 100k..130k (27%), the client at 9 µs × 110k/s = 0.99 core.
        let weak = [
            rep(100_000.0, 0.5, 9.0),
            rep(110_000.0, 0.5, 9.0),
            rep(130_000.0, 0.5, 9.0),
        ];
        let w = weak_run(&weak, &tables::summarize(&weak));
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].contains("0.5 s"), "{}", w[0]);
        assert!(w[1].contains("GET/32B/P1/c50/io1 27%"), "{}", w[1]);
        assert!(w[3].contains("0.99 of a core"), "{}", w[3]);
        // 5 s runs within 2%, the client at a third of a core, a remote server.
        let mut sound = [
            rep(100_000.0, 5.0, 3.0),
            rep(101_000.0, 5.0, 3.0),
            rep(102_000.0, 5.0, 3.0),
        ];
        for r in &mut sound {
            r.engine.argv = vec!["--host".into(), "10.0.0.2".into()];
        }
        assert!(weak_run(&sound, &tables::summarize(&sound)).is_empty());
    }

    #[test]
    fn several_client_hosts_are_judged_each_on_its_own() {
        use crate::loadgen::merge::ClientHostReport;
        let host = |name: &str, busy: f64, late_start_us: u64| ClientHostReport {
            name: name.into(),
            connections: 25,
            threads: 1,
            requests: 500_000,
            ops_per_sec: 100_000.0,
            latency: Default::default(),
            client_cpu_us_per_request: busy * 10.0,
            client_busy: busy,
            offered_rate: None,
            late_sends: 0,
            send_lag_p99_us: 0,
            late_start_us,
            clock_offset_us: 3.0,
            histogram: String::new(),
        };
        let rep = |hosts: Vec<ClientHostReport>| {
            let mut r = sample();
            r.case = "GET/32B/P1/c50/io1".into();
            r.metrics.wall_secs = 5.0;
            r.metrics.ops_per_sec = 200_000.0;
            // Over both hosts: 1.2 cores of CPU a second, per one thread's worth of
            // `client_threads`; judged per host, neither is this busy.
            r.metrics.client_cpu_us_per_request = Some(6.0);
            r.params.client_threads = 1;
            r.engine.argv = vec!["--host".into(), "198.18.0.12".into()];
            r.metrics.client_hosts = hosts;
            r
        };
        let calm = [rep(vec![host("a", 0.6, 0), host("b", 0.6, 200)])];
        assert_eq!(
            weak_run(&calm, &tables::summarize(&calm)),
            Vec::<String>::new()
        );
        let busy = [rep(vec![host("a", 0.5, 0), host("b", 0.95, 25_000)])];
        let w = weak_run(&busy, &tables::summarize(&busy));
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w[0].contains("client host b used 95%"), "{}", w[0]);
        assert!(w[1].contains("client host b started 25.0 ms"), "{}", w[1]);
    }

    #[test]
    fn the_parameters_table_shows_the_measured_command_line() {
        let mut r = sample();
        r.engine.argv = ["cargo", "xtask", "loadgen", "--command", "GET {key}"]
            .map(String::from)
            .to_vec();
        let t = parameters_table(&[r.clone(), r]);
        assert_eq!(t.lines().count(), 3, "one row per case: {t}");
        assert!(
            t.contains("`cargo xtask loadgen --command \"GET {key}\"`"),
            "{t}"
        );
    }
}
