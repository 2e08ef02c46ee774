//! Pure renderers: records in, text out. The caller writes files.

use std::fmt::Write;

use serde::Serialize;

use crate::result::ResultRecord;
use crate::stats;

/// One case across its repetitions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseSummary {
    pub case: String,
    pub repetitions: usize,
    /// Median ops/s over repetitions.
    pub ops_per_sec: f64,
    /// (max − min) / median of ops/s, percent; see [`stats::range_pct`].
    pub ops_range_pct: Option<f64>,
    /// Latency percentiles, microseconds: of every measured request (the repetitions'
    /// histograms merged, as the charts draw them) where every repetition has a
    /// histogram; else the median over repetitions of each one's figure (max: the largest).
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p99_9_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Whether the percentiles come from the merged histogram.
    pub merged_histogram: bool,
    /// Requests answered with an error, over the repetitions (`None` where the engine
    /// reports no per-second series).
    pub errors: Option<u64>,
    /// Medians over repetitions, µs per request: the server's CPU, the client's CPU, and
    /// the command's own cost (`INFO commandstats` usec_per_call).
    pub server_cpu_us: Option<f64>,
    pub client_cpu_us: Option<f64>,
    pub usec_per_call: Option<f64>,
}

/// The repetitions' histograms merged, if every one has a histogram that decodes.
fn merged(reps: &[&ResultRecord]) -> Option<hdrhistogram::Histogram<u64>> {
    let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
    for r in reps {
        let h = crate::loadgen::stats::decode_histogram(r.metrics.histogram.as_deref()?).ok()?;
        match &mut merged {
            Some(m) => m.add(&h).ok()?,
            None => merged = Some(h),
        }
    }
    merged.filter(|h| !h.is_empty())
}

/// Groups records by case, in the order cases first appear.
pub fn summarize(records: &[ResultRecord]) -> Vec<CaseSummary> {
    let mut order: Vec<&str> = Vec::new();
    for r in records {
        if !order.contains(&r.case.as_str()) {
            order.push(&r.case);
        }
    }
    order
        .into_iter()
        .map(|case| {
            let reps: Vec<&ResultRecord> = records.iter().filter(|r| r.case == case).collect();
            let ops: Vec<f64> = reps.iter().map(|r| r.metrics.ops_per_sec).collect();
            let median_of = |get: fn(&ResultRecord) -> Option<f64>| {
                let values: Vec<f64> = reps.iter().filter_map(|r| get(r)).collect();
                stats::median(&values)
            };
            let histogram = merged(&reps);
            let at = |q: f64| histogram.as_ref().map(|h| h.value_at_quantile(q) as f64);
            let (p50_us, p90_us, p99_us, p99_9_us, max_us) = match &histogram {
                Some(h) => (at(0.5), at(0.9), at(0.99), at(0.999), Some(h.max() as f64)),
                None => (
                    median_of(|r| r.metrics.latency.p50_us),
                    median_of(|r| r.metrics.latency.p90_us),
                    median_of(|r| r.metrics.latency.p99_us),
                    median_of(|r| r.metrics.latency.p99_9_us),
                    reps.iter()
                        .filter_map(|r| r.metrics.latency.max_us)
                        .reduce(f64::max),
                ),
            };
            let with_series = reps.iter().any(|r| !r.metrics.series.is_empty());
            CaseSummary {
                case: case.to_string(),
                repetitions: reps.len(),
                ops_per_sec: stats::median(&ops).unwrap_or(0.0),
                ops_range_pct: stats::range_pct(&ops),
                p50_us,
                p90_us,
                p99_us,
                p99_9_us,
                max_us,
                merged_histogram: histogram.is_some(),
                errors: with_series.then(|| {
                    reps.iter()
                        .flat_map(|r| &r.metrics.series)
                        .map(|s| s.errors)
                        .sum()
                }),
                server_cpu_us: median_of(|r| r.metrics.server_cpu_us_per_request),
                client_cpu_us: median_of(|r| r.metrics.client_cpu_us_per_request),
                usec_per_call: median_of(|r| r.metrics.usec_per_call),
            }
        })
        .collect()
}

/// A Markdown table, readable as plain text in a terminal too.
pub fn markdown_table(summaries: &[CaseSummary]) -> String {
    let header = [
        "case",
        "ops/s (median)",
        "range",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "errors",
        "server µs/req",
        "usec/call",
        "reps",
    ];
    let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let small = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.case.clone(),
                group_thousands(s.ops_per_sec),
                s.ops_range_pct.map_or("-".into(), |p| format!("{p:.1}%")),
                us(s.p50_us),
                us(s.p90_us),
                us(s.p99_us),
                us(s.p99_9_us),
                us(s.max_us),
                s.errors.map_or("-".into(), |e| e.to_string()),
                small(s.server_cpu_us),
                small(s.usec_per_call),
                s.repetitions.to_string(),
            ]
        })
        .collect();
    aligned(&header, &rows)
}

/// Context printed above the table in `summary.md`.
#[derive(Clone, Debug, Default)]
pub struct SummaryHeader {
    pub run_id: String,
    pub suite: String,
    pub valkey: String,
    pub engine: String,
    pub host: String,
    /// Set when the run did not finish; says why.
    pub incomplete: Option<String>,
    /// What makes the run weak, each with what to do instead (`report_page::weak_run`).
    pub warnings: Vec<String>,
    /// The command line that started the run.
    pub command: Option<String>,
}

/// What the perf table's columns mean.
pub const PERF_NOTE: &str = "ops/s is the median over repetitions (fresh server each); range is (max − min) / \
     median of ops/s. Latency percentiles are of every measured request, the repetitions' histograms merged (the \
     charts draw the same histograms); where the engine records no histogram (valkey-benchmark) they are medians of \
     each repetition's figure, and max the largest. errors: requests answered with an error. server µs/req: the \
     server's CPU time (user + system) over the measured run / requests, median over repetitions; usec/call: the \
     command's own cost from INFO commandstats, without I/O.";

/// What the mem table's columns mean.
pub const MEM_NOTE: &str = "bytes/item is the data's memory (used_memory − mem_clients_normal) after − before, / \
     items, each read once it settled; user is the declared key + value bytes per item (members + 8 for a score; a \
     collection's key spread over its items); overhead = bytes/item − user; efficiency = user / \
     bytes/item (it can exceed 100% where an encoding stores less than declared, e.g. \
     small integer scores in a listpack); frag is mem_fragmentation_ratio after populating.";

/// The run's `summary.md` for the perf suite.
pub fn summary_markdown(header: &SummaryHeader, summaries: &[CaseSummary]) -> String {
    summary_with_table(header, PERF_NOTE, &markdown_table(summaries))
}

/// A `summary.md`: the header, what the columns mean, the table.
pub fn summary_with_table(header: &SummaryHeader, note: &str, table: &str) -> String {
    let mut out = format!("# valkey-bench run {}\n\n", header.run_id);
    let _ = writeln!(out, "- suite: {}", header.suite);
    let _ = writeln!(out, "- valkey: {}", header.valkey);
    let _ = writeln!(out, "- engine: {}", header.engine);
    let _ = writeln!(out, "- host: {}", header.host);
    if let Some(command) = &header.command {
        let _ = writeln!(out, "- reproduce: `{}`", command.replace('`', "'"));
    }
    if let Some(why) = &header.incomplete {
        let _ = writeln!(out, "- **incomplete**: {why}");
    }
    if !header.warnings.is_empty() {
        out.push_str("\n## Read this first\n\n");
        for w in &header.warnings {
            let _ = writeln!(out, "- {w}");
        }
    }
    let _ = write!(out, "\n{note}\n\n");
    out.push_str(table);
    out
}

/// What the sync table's columns mean.
pub const SYNC_NOTE: &str = "sync is from REPLICAOF to the replica reporting the link up with no sync in \
     progress (polled every millisecond); transfer is the primary's replication output during \
     the sync divided by the replicas (it includes the write stream when writes ran); rdb is the \
     file a disk-based sync wrote; fork is the primary's latest_fork_usec.";

/// The sync suite's table: one row per replica.
pub fn sync_table(records: &[crate::result::SyncRecord]) -> String {
    let header = [
        "case",
        "replica",
        "data MB",
        "sync s",
        "transfer MB",
        "MB/s",
        "rdb MB",
        "fork ms",
        "keys",
    ];
    let mb = |b: f64| format!("{:.1}", b / 1e6);
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let m = &r.metrics;
            vec![
                r.case.clone(),
                r.params.replica.to_string(),
                mb(r.params.data_bytes as f64),
                format!("{:.3}", m.sync_secs),
                mb(m.transfer_bytes as f64),
                format!("{:.0}", m.throughput_bytes_per_sec / 1e6),
                mb(m.rdb_bytes as f64),
                format!("{:.1}", m.fork_usec as f64 / 1000.0),
                group_thousands(m.keys_replica as f64),
            ]
        })
        .collect();
    aligned(&header, &rows)
}

/// The mem suite's table: one row per case.
pub fn mem_table(records: &[crate::result::MemRecord]) -> String {
    let header = [
        "case",
        "items",
        "bytes/item",
        "user",
        "overhead",
        "efficiency",
        "encoding",
        "frag",
        "populate items/s",
    ];
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let m = &r.metrics;
            vec![
                r.case.clone(),
                group_thousands(r.params.items as f64),
                format!("{:.1}", m.bytes_per_item),
                format!("{:.1}", m.user_bytes_per_item),
                format!("{:.1}", m.overhead_bytes_per_item),
                format!("{:.0}%", 100.0 * m.efficiency),
                m.encoding.clone(),
                format!("{:.2}", m.fragmentation_ratio),
                group_thousands(m.populate_items_per_sec),
            ]
        })
        .collect();
    aligned(&header, &rows)
}

/// The final table of `cargo xtask loadgen`: one row per command, then ALL.
pub fn loadgen_table(report: &crate::loadgen::Report) -> String {
    let header = [
        "command",
        "ops/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "errors",
        "hit %",
    ];
    let row = |c: &crate::loadgen::stats::CommandReport| -> Vec<String> {
        let l = &c.latency;
        let reads = c.hits + c.misses;
        vec![
            c.command.clone(),
            group_thousands(c.ops_per_sec),
            l.p50_us.to_string(),
            l.p90_us.to_string(),
            l.p99_us.to_string(),
            l.p99_9_us.to_string(),
            l.max_us.to_string(),
            c.errors.to_string(),
            if reads == 0 {
                "-".into()
            } else {
                format!("{:.1}", 100.0 * c.hits as f64 / reads as f64)
            },
        ]
    };
    let mut rows: Vec<Vec<String>> = report.commands.iter().map(row).collect();
    if report.commands.len() > 1 {
        rows.push(row(&report.all));
    }
    let mut out = aligned(&header, &rows);
    let _ = writeln!(
        out,
        "\n{} requests in {:.2} s; client CPU {:.2} µs/request",
        report.requests, report.measured_secs, report.client_cpu_us_per_request
    );
    if report.rate.is_some() {
        let _ = writeln!(
            out,
            "open loop: {} sends over 1 ms late; send lag p99 {} µs, max {} µs",
            report.late_sends, report.send_lag_p99_us, report.send_lag_max_us
        );
    }
    if !report.nodes.is_empty() {
        out.push('\n');
        out.push_str(&nodes_table(&report.nodes));
        let redirects: Vec<String> = report
            .redirects
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        let _ = writeln!(
            out,
            "\nredirects followed: {}",
            if redirects.is_empty() {
                "none".to_string()
            } else {
                redirects.join(", ")
            }
        );
    }
    out
}

/// A cluster run's share per node: replies, throughput and latency as the client saw them.
pub fn nodes_table(nodes: &[crate::loadgen::stats::NodeReport]) -> String {
    let header = ["node", "requests", "ops/s", "p50 µs", "p99 µs", "max µs"];
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.addr.clone(),
                n.requests.to_string(),
                group_thousands(n.ops_per_sec),
                n.latency.p50_us.to_string(),
                n.latency.p99_us.to_string(),
                n.latency.max_us.to_string(),
            ]
        })
        .collect();
    aligned(&header, &rows)
}

/// Each client host's part of a run driven from several: its connections, throughput,
/// latency, generator cost and lateness; then the host that was nearest its limit when
/// one was (its generator threads busy over `report_page::CLIENT_BUSY`).
pub fn client_hosts_table(hosts: &[crate::loadgen::merge::ClientHostReport]) -> String {
    let open_loop = hosts.iter().any(|h| h.offered_rate.is_some());
    let mut header = vec![
        "client host",
        "connections",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "CPU µs/req",
        "busy %",
        "late start ms",
        "clock offset µs",
    ];
    if open_loop {
        header.extend(["offered/s", "late sends"]);
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let mut row = vec![
                h.name.clone(),
                h.connections.to_string(),
                group_thousands(h.ops_per_sec),
                h.latency.p50_us.to_string(),
                h.latency.p99_us.to_string(),
                format!("{:.2}", h.client_cpu_us_per_request),
                format!("{:.0}", 100.0 * h.client_busy),
                format!("{:.1}", h.late_start_us as f64 / 1e3),
                format!("{:.0}", h.clock_offset_us),
            ];
            if open_loop {
                row.push(h.offered_rate.map_or("-".into(), group_thousands));
                row.push(h.late_sends.to_string());
            }
            row
        })
        .collect();
    let mut out = aligned(&header, &rows);
    let busiest = hosts
        .iter()
        .max_by(|a, b| a.client_busy.total_cmp(&b.client_busy));
    match busiest {
        Some(h) if h.client_busy >= crate::report_page::CLIENT_BUSY => {
            let _ = writeln!(
                out,
                "\nclient host {} used {:.0}% of its generator threads: it may be the limit, not \
                 the server (add threads or another client host)",
                h.name,
                100.0 * h.client_busy
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "\nmerged: every percentile above is of all the hosts' requests; no client host \
                 was near its limit"
            );
        }
    }
    out
}

/// A Markdown table with the first column left-aligned and the rest right-aligned.
pub(crate) fn aligned(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        out.push('|');
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - cell.chars().count());
            let _ = if i == 0 {
                write!(out, " {cell}{pad} |")
            } else {
                write!(out, " {pad}{cell} |")
            };
        }
        out.push('\n');
    };
    line(
        &mut out,
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    );
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        let dashes = "-".repeat(*w);
        let _ = if i == 0 {
            write!(out, " {dashes} |")
        } else {
            write!(out, " {}: |", &dashes[1..])
        };
    }
    out.push('\n');
    for row in rows {
        line(&mut out, row);
    }
    out
}

/// `1234567.8` → `1,234,568`.
pub(crate) fn group_thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_hosts_are_listed_and_the_busiest_named_when_near_its_limit() {
        use crate::loadgen::merge::ClientHostReport;
        let host = |name: &str, busy: f64, offered: Option<f64>| ClientHostReport {
            name: name.into(),
            connections: 25,
            threads: 1,
            requests: 500_000,
            ops_per_sec: 100_000.0,
            latency: Default::default(),
            client_cpu_us_per_request: 1.5,
            client_busy: busy,
            offered_rate: offered,
            late_sends: 7,
            send_lag_p99_us: 0,
            late_start_us: 2_500,
            clock_offset_us: -3.0,
            histogram: String::new(),
        };
        let table = client_hosts_table(&[host("c1", 0.4, None), host("c2", 0.93, None)]);
        assert!(table.contains("c1") && table.contains("100,000"), "{table}");
        assert!(table.contains("2.5"), "late start in ms: {table}");
        assert!(!table.contains("offered/s"), "closed loop: {table}");
        assert!(table.contains("client host c2 used 93%"), "{table}");
        let calm = client_hosts_table(&[host("c1", 0.2, Some(5e4)), host("c2", 0.3, Some(5e4))]);
        assert!(
            calm.contains("offered/s") && calm.contains("50,000"),
            "{calm}"
        );
        assert!(calm.contains("no client host was near its limit"), "{calm}");
    }

    use super::*;
    use crate::result::tests::sample;

    fn record(case: &str, ops: f64, p50: f64) -> ResultRecord {
        let mut r = sample();
        r.case = case.into();
        r.metrics.ops_per_sec = ops;
        r.metrics.latency.p50_us = Some(p50);
        r
    }

    #[test]
    fn summarizes_per_case_in_first_seen_order() {
        let records = [
            record("B", 100.0, 10.0),
            record("A", 50.0, 5.0),
            record("B", 120.0, 30.0),
            record("B", 110.0, 20.0),
        ];
        let s = summarize(&records);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].case, "B");
        assert_eq!(s[0].repetitions, 3);
        assert_eq!(s[0].ops_per_sec, 110.0);
        assert_eq!(s[0].p50_us, Some(20.0));
        assert!((s[0].ops_range_pct.unwrap() - 20.0 / 110.0 * 100.0).abs() < 1e-9);
        assert_eq!(s[0].p99_us, None);
        assert_eq!(s[1].ops_per_sec, 50.0);
    }

    #[test]
    fn latency_comes_from_the_merged_histogram_when_every_repetition_has_one() {
        // Repetition 1: 990 requests at 100 µs, 10 at 5,000; repetition 2: 1000 at 200 µs.
        // Merged, p99 is 200 (the 1,980th of 2,000) and p99.9 is 5,000; the median of the
        // repetitions' own p99s would say 150 and hide the tail.
        let histogram = |values: &[(u64, u64)]| {
            let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            for &(v, n) in values {
                h.record_n(v, n).unwrap();
            }
            crate::loadgen::stats::encode_histogram(&h)
        };
        let mut a = record("X", 100.0, 100.0);
        a.metrics.histogram = Some(histogram(&[(100, 990), (5000, 10)]));
        a.metrics.latency.p99_us = Some(100.0);
        let mut b = record("X", 100.0, 200.0);
        b.metrics.histogram = Some(histogram(&[(200, 1000)]));
        b.metrics.latency.p99_us = Some(200.0);
        let s = &summarize(&[a.clone(), b.clone()])[0];
        assert!(s.merged_histogram);
        assert_eq!(s.p99_us, Some(200.0));
        assert!(
            (s.p99_9_us.unwrap() - 5000.0).abs() <= 5.0,
            "{:?}",
            s.p99_9_us
        );
        assert!((s.max_us.unwrap() - 5000.0).abs() <= 5.0);
        // One repetition without a histogram: medians of the repetitions' figures.
        b.metrics.histogram = None;
        let s = &summarize(&[a, b])[0];
        assert!(!s.merged_histogram);
        assert_eq!(s.p99_us, Some(150.0));
    }

    #[test]
    fn table_is_aligned_markdown() {
        let table = markdown_table(&summarize(&[
            record("GET/32B/P1/c50/io1", 81234.4, 287.0),
            record("PING/P16/c50/io1", 1234567.0, 700.0),
        ]));
        let expected = "\
| case               | ops/s (median) | range | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | errors | server µs/req | usec/call | reps |
| ------------------ | -------------: | ----: | -----: | -----: | -----: | -------: | -----: | -----: | ------------: | --------: | ---: |
| GET/32B/P1/c50/io1 |         81,234 |  0.0% |    287 |      - |      - |        - |   2000 |      - |          3.50 |      0.80 |    1 |
| PING/P16/c50/io1   |      1,234,567 |  0.0% |    700 |      - |      - |        - |   2000 |      - |          3.50 |      0.80 |    1 |
";
        assert_eq!(table, expected);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0.0), "0");
        assert_eq!(group_thousands(999.6), "1,000");
        assert_eq!(group_thousands(1234567.0), "1,234,567");
    }
}
