//! One run driven from several hosts, merged into one [`Report`] losslessly: every
//! percentile of the merged report is a percentile of all the hosts' requests, read from
//! the sum of their HDR histograms (never an average of their percentiles, which is what
//! mutilate and Lancet report). Each host's own figures are kept beside it
//! ([`ClientHostReport`]), so a reader can see which host was the bottleneck (the
//! report names it: `report_page/context.rs`).
//!
//! The hosts' runs are shares of one run ([`super::Share`]) that started at one agreed
//! instant, so their seconds line up: second `i` of the merged series is second `i` of
//! every host, merged from their per-second histograms.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::Report;
use super::stats::{
    CommandReport, LatencySummary, NodeReport, SecondReport, decode_histogram, encode_histogram,
};

/// One client host's part of a merged run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientHostReport {
    /// Its name in the hosts file (`local` for this machine).
    pub name: String,
    pub connections: u32,
    pub threads: u32,
    pub requests: u64,
    pub ops_per_sec: f64,
    pub latency: LatencySummary,
    /// Its generator's CPU per request, µs, and the share of its threads' time it used
    /// (near 1: that host was the limit, not the server).
    pub client_cpu_us_per_request: f64,
    pub client_busy: f64,
    /// Open loop: the rate its share asked for and the rate it achieved, and its sends
    /// over 1 ms behind schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rate: Option<f64>,
    pub late_sends: u64,
    pub send_lag_p99_us: u64,
    /// How long after the agreed instant its clock started, µs.
    pub late_start_us: u64,
    /// Its clock minus the coordinator's, µs, as estimated over the control channel (the
    /// start instant was corrected by it).
    pub clock_offset_us: f64,
    /// All its requests' latency histogram (HDR V2 + base64): the merged one is their sum.
    pub histogram: String,
}

/// A host's report, with what the coordinator knows of it.
pub struct Part {
    pub name: String,
    pub report: Report,
    pub clock_offset_us: f64,
}

fn decode(text: &str, what: &str) -> Result<Histogram<u64>, String> {
    decode_histogram(text).map_err(|e| format!("{what}: {e}"))
}

fn add(into: &mut Option<Histogram<u64>>, h: &Histogram<u64>) -> Result<(), String> {
    match into {
        None => *into = Some(h.clone()),
        Some(sum) => sum
            .add(h)
            .map_err(|e| format!("histograms of other bounds: {e:?}"))?,
    }
    Ok(())
}

/// Merges the parts (at least one) into one report and each part's summary.
pub fn merge(parts: &[Part]) -> Result<(Report, Vec<ClientHostReport>), String> {
    let first = &parts.first().ok_or("no host's report to merge")?.report;
    let secs = parts
        .iter()
        .map(|p| p.report.measured_secs)
        .fold(0.0, f64::max)
        .max(1e-9);
    // Per command (and ALL): histograms and counters summed.
    // Per command: its histogram, errors, hits, misses.
    type Sums = (Option<Histogram<u64>>, u64, u64, u64);
    let mut commands: BTreeMap<String, Sums> = BTreeMap::new();
    let mut all: Option<Histogram<u64>> = None;
    let (mut all_errors, mut all_hits, mut all_misses) = (0, 0, 0);
    let mut series: BTreeMap<u32, (u64, u64, Option<Histogram<u64>>)> = BTreeMap::new();
    let mut nodes: BTreeMap<String, Option<Histogram<u64>>> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut redirects: BTreeMap<String, u64> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut partial = None;
    let mut hosts = Vec::new();
    for part in parts {
        let r = &part.report;
        let name = &part.name;
        let h = decode(&r.all.histogram, &format!("host {name}'s histogram"))?;
        add(&mut all, &h)?;
        all_errors += r.all.errors;
        all_hits += r.all.hits;
        all_misses += r.all.misses;
        for c in &r.commands {
            let entry = commands.entry(c.command.clone()).or_default();
            add(
                &mut entry.0,
                &decode(&c.histogram, &format!("host {name}'s {}", c.command))?,
            )?;
            entry.1 += c.errors;
            entry.2 += c.hits;
            entry.3 += c.misses;
        }
        for s in &r.series {
            let text = s
                .histogram
                .as_deref()
                .ok_or_else(|| format!("host {name}'s second {} has no histogram", s.second))?;
            let entry = series.entry(s.second).or_default();
            entry.0 += s.ops;
            entry.1 += s.errors;
            add(
                &mut entry.2,
                &decode(text, &format!("host {name}'s second {}", s.second))?,
            )?;
        }
        for n in &r.nodes {
            let text = n
                .histogram
                .as_deref()
                .ok_or_else(|| format!("host {name}'s node {} has no histogram", n.addr))?;
            add(
                nodes.entry(n.addr.clone()).or_default(),
                &decode(text, "a node's histogram")?,
            )?;
        }
        for (k, v) in &r.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &r.redirects {
            *redirects.entry(k.clone()).or_default() += v;
        }
        warnings.extend(r.warnings.iter().map(|w| format!("host {name}: {w}")));
        if let Some(why) = &r.partial {
            partial.get_or_insert_with(|| format!("host {name}: {why}"));
        }
        let busy_secs = f64::from(r.threads) * r.measured_secs.max(1e-9);
        hosts.push(ClientHostReport {
            name: name.clone(),
            connections: r.connections,
            threads: r.threads,
            requests: r.requests,
            ops_per_sec: r.ops_per_sec,
            latency: LatencySummary::of(&h),
            client_cpu_us_per_request: r.client_cpu_us_per_request,
            client_busy: r.client_cpu_secs / busy_secs,
            offered_rate: r
                .rate
                .map(|rate| rate * f64::from(r.connections) / f64::from(total_connections(parts))),
            late_sends: r.late_sends,
            send_lag_p99_us: r.send_lag_p99_us,
            late_start_us: r.late_start_us,
            clock_offset_us: part.clock_offset_us,
            histogram: r.all.histogram.clone(),
        });
    }
    let all = all.expect("at least one part");
    let requests = all.len();
    let summary = |name: &str, h: &Histogram<u64>, errors, hits, misses| CommandReport {
        command: name.to_string(),
        requests: h.len(),
        ops_per_sec: h.len() as f64 / secs,
        errors,
        hits,
        misses,
        latency: LatencySummary::of(h),
        histogram: encode_histogram(h),
    };
    let cpu: f64 = parts.iter().map(|p| p.report.client_cpu_secs).sum();
    let report = Report {
        workload: first.workload.clone(),
        seed: first.seed,
        connections: total_connections(parts),
        pipeline: first.pipeline,
        threads: parts.iter().map(|p| p.report.threads).sum(),
        rate: first.rate,
        measured_secs: secs,
        requests,
        ops_per_sec: requests as f64 / secs,
        all: summary("ALL", &all, all_errors, all_hits, all_misses),
        commands: commands
            .iter()
            .map(|(name, (h, e, hits, misses))| {
                summary(name, h.as_ref().expect("added above"), *e, *hits, *misses)
            })
            .collect(),
        series: series
            .into_iter()
            .map(|(second, (ops, errors, h))| {
                let h = h.expect("added above");
                let q = |q| {
                    if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(q)
                    }
                };
                SecondReport {
                    second,
                    ops,
                    p50_us: q(0.5),
                    p99_us: q(0.99),
                    errors,
                    histogram: None,
                }
            })
            .collect(),
        errors,
        reconnects: parts.iter().map(|p| p.report.reconnects).sum(),
        late_sends: parts.iter().map(|p| p.report.late_sends).sum(),
        // The hosts' lag histograms are not sent: the worst host's, per host in `hosts`.
        send_lag_p99_us: parts
            .iter()
            .map(|p| p.report.send_lag_p99_us)
            .max()
            .unwrap_or(0),
        send_lag_max_us: parts
            .iter()
            .map(|p| p.report.send_lag_max_us)
            .max()
            .unwrap_or(0),
        client_cpu_secs: cpu,
        client_cpu_us_per_request: if requests > 0 {
            cpu * 1e6 / requests as f64
        } else {
            0.0
        },
        warnings,
        partial,
        redirects,
        nodes: nodes
            .into_iter()
            .map(|(addr, h)| {
                let h = h.expect("added above");
                NodeReport {
                    addr,
                    requests: h.len(),
                    ops_per_sec: h.len() as f64 / secs,
                    latency: LatencySummary::of(&h),
                    histogram: None,
                }
            })
            .collect(),
        late_start_us: parts
            .iter()
            .map(|p| p.report.late_start_us)
            .max()
            .unwrap_or(0),
    };
    Ok((report, hosts))
}

fn total_connections(parts: &[Part]) -> u32 {
    parts.iter().map(|p| p.report.connections).sum()
}

#[cfg(test)]
mod tests {
    use super::super::stats::new_histogram;
    use super::*;

    /// A report of `values` (µs), every one a GET in second `value % 3`.
    fn report(values: &[u64], connections: u32) -> Report {
        let mut all = new_histogram();
        let mut seconds: BTreeMap<u32, Histogram<u64>> = BTreeMap::new();
        for &v in values {
            all.record(v).unwrap();
            seconds
                .entry((v % 3) as u32)
                .or_insert_with(new_histogram)
                .record(v)
                .unwrap();
        }
        let command = CommandReport {
            command: "GET".into(),
            requests: all.len(),
            ops_per_sec: all.len() as f64,
            errors: 0,
            hits: all.len(),
            misses: 0,
            latency: LatencySummary::of(&all),
            histogram: encode_histogram(&all),
        };
        Report {
            workload: "get".into(),
            seed: 1,
            connections,
            pipeline: 1,
            threads: 1,
            rate: Some(1000.0),
            measured_secs: 1.0,
            requests: all.len(),
            ops_per_sec: all.len() as f64,
            all: CommandReport {
                command: "ALL".into(),
                ..command.clone()
            },
            commands: vec![command],
            series: seconds
                .iter()
                .map(|(&second, h)| SecondReport {
                    second,
                    ops: h.len(),
                    p50_us: h.value_at_quantile(0.5),
                    p99_us: h.value_at_quantile(0.99),
                    errors: 0,
                    histogram: Some(encode_histogram(h)),
                })
                .collect(),
            errors: BTreeMap::new(),
            reconnects: 0,
            late_sends: 0,
            send_lag_p99_us: 0,
            send_lag_max_us: 0,
            client_cpu_secs: 0.5,
            client_cpu_us_per_request: 0.0,
            warnings: Vec::new(),
            partial: None,
            redirects: BTreeMap::new(),
            nodes: Vec::new(),
            late_start_us: 0,
        }
    }

    #[test]
    fn the_merged_histogram_is_the_histogram_of_every_request() {
        // Two hosts with very different latencies: averaging their p99s would say ~5 ms.
        let fast: Vec<u64> = (0..900).map(|i| 100 + i % 50).collect();
        let slow: Vec<u64> = (0..100).map(|i| 10_000 + i * 7).collect();
        let parts = [
            Part {
                name: "a".into(),
                report: report(&fast, 3),
                clock_offset_us: 12.0,
            },
            Part {
                name: "b".into(),
                report: report(&slow, 1),
                clock_offset_us: -4.0,
            },
        ];
        let (merged, hosts) = merge(&parts).unwrap();
        let mut union = new_histogram();
        for v in fast.iter().chain(&slow) {
            union.record(*v).unwrap();
        }
        let got = decode_histogram(&merged.all.histogram).unwrap();
        assert_eq!(got.len(), 1000);
        for (a, b) in got.iter_recorded().zip(union.iter_recorded()) {
            assert_eq!(
                (a.value_iterated_to(), a.count_at_value()),
                (b.value_iterated_to(), b.count_at_value())
            );
        }
        assert_eq!(got.iter_recorded().count(), union.iter_recorded().count());
        assert_eq!(merged.all.latency, LatencySummary::of(&union));
        assert!(
            merged.all.latency.p99_us >= 10_000,
            "{:?}",
            merged.all.latency
        );
        assert_eq!(
            (merged.requests, merged.connections, merged.threads),
            (1000, 4, 2)
        );
        assert_eq!(merged.commands[0].requests, 1000);
        // Seconds: ops summed, percentiles of the second's union.
        let ops: u64 = merged.series.iter().map(|s| s.ops).sum();
        assert_eq!(ops, 1000);
        let mut second0 = new_histogram();
        for v in fast.iter().chain(&slow).filter(|v| *v % 3 == 0) {
            second0.record(*v).unwrap();
        }
        assert_eq!(merged.series[0].p99_us, second0.value_at_quantile(0.99));
        // Each host's own figures, its share of the offered rate and its clock.
        assert_eq!(hosts[0].requests, 900);
        assert_eq!(hosts[1].offered_rate, Some(250.0));
        assert_eq!(hosts[1].clock_offset_us, -4.0);
        assert!((merged.client_cpu_us_per_request - 1e6 / 1000.0).abs() < 1e-9);
    }

    #[test]
    fn a_part_without_its_seconds_histograms_is_refused() {
        let mut r = report(&[100, 200], 1);
        r.series[0].histogram = None;
        let err = merge(&[Part {
            name: "a".into(),
            report: r,
            clock_offset_us: 0.0,
        }])
        .unwrap_err();
        assert!(err.contains("host a's second"), "{err}");
    }
}
