//! A run's report: every worker's counters merged into per-command figures, the series,
//! errors, per-node shares, and the warnings that say when to doubt them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use hdrhistogram::Histogram;

use super::stats::{
    CommandReport, LatencySummary, NodeReport, WorkerStats, encode_histogram, new_histogram,
};
use super::{DELIVERY, Plan, Report, RunOptions, stats};
use crate::workload::WorkloadSpec;

#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    spec: &WorkloadSpec,
    options: &RunOptions,
    threads: u32,
    plan: &Plan,
    workers: Vec<WorkerStats>,
    measured_secs: f64,
    cpu: f64,
    partial: Option<String>,
) -> Report {
    let secs = measured_secs.max(1e-9);
    let mut by_name: BTreeMap<&str, (Histogram<u64>, u64, u64, u64)> = BTreeMap::new();
    let mut all = new_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut reconnects, mut late, mut lag) = (0, 0, new_histogram());
    let mut redirects: BTreeMap<String, u64> = BTreeMap::new();
    let mut nodes: BTreeMap<SocketAddr, Histogram<u64>> = BTreeMap::new();
    for w in &workers {
        for (kind, n) in &w.redirects {
            *redirects.entry((*kind).to_string()).or_default() += n;
        }
        for (addr, h) in &w.nodes {
            nodes
                .entry(*addr)
                .or_insert_with(new_histogram)
                .add(h)
                .expect("same bounds");
        }
        for (t, c) in w.commands.iter().enumerate() {
            let Some(template) = plan.templates.get(t) else {
                // The delivery slot: end-to-end pub/sub latency, not requests.
                let entry = by_name
                    .entry(DELIVERY)
                    .or_insert_with(|| (new_histogram(), 0, 0, 0));
                entry.0.add(&c.latency).expect("same bounds");
                entry.2 += c.hits;
                continue;
            };
            let entry = by_name
                .entry(template.name.as_str())
                .or_insert_with(|| (new_histogram(), 0, 0, 0));
            entry.0.add(&c.latency).expect("same bounds");
            entry.1 += c.errors;
            entry.2 += c.hits;
            entry.3 += c.misses;
            all.add(&c.latency).expect("same bounds");
        }
        for (k, v) in &w.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        reconnects += w.reconnects;
        late += w.late;
        lag.add(&w.send_lag).expect("same bounds");
    }
    let command_report =
        |name: &str, h: &Histogram<u64>, errors: u64, hits: u64, misses: u64| CommandReport {
            command: name.to_string(),
            requests: h.len(),
            ops_per_sec: h.len() as f64 / secs,
            errors,
            hits,
            misses,
            latency: LatencySummary::of(h),
            histogram: encode_histogram(h),
        };
    let commands: Vec<CommandReport> = by_name
        .iter()
        .map(|(name, (h, e, hits, misses))| command_report(name, h, *e, *hits, *misses))
        .collect();
    let requests_only = commands.iter().filter(|c| c.command != DELIVERY);
    let total_errors = requests_only.clone().map(|c| c.errors).sum();
    let (hits, misses) = requests_only.fold((0, 0), |(h, m), c| (h + c.hits, m + c.misses));
    let all = command_report("ALL", &all, total_errors, hits, misses);
    let requests = all.requests;
    let mut warnings = Vec::new();
    // In open loop the generator busy-polls near due sends, so its CPU says nothing about
    // saturation there; lateness does.
    // A window too short to time (nothing answered) says nothing about saturation either.
    if options.rate.is_none() && secs >= 0.05 && cpu > 0.9 * f64::from(threads) * secs {
        warnings.push(format!(
            "the generator used {:.0}% of its {threads} thread(s): the client, not the server, may be the bottleneck; add --threads",
            100.0 * cpu / (f64::from(threads) * secs)
        ));
    }
    if options.rate.is_some() && late > requests / 100 {
        warnings.push(format!("{late} sends were over 1 ms behind schedule: the client or the connections cannot keep this rate"));
    }
    if total_errors > 0
        || errors
            .keys()
            .any(|k| k.starts_with("io") || k.starts_with("check"))
    {
        warnings.push(format!(
            "{} errors; see errors",
            errors.values().sum::<u64>()
        ));
    }
    Report {
        workload: spec.name.clone(),
        seed: spec.seed,
        connections: options.connections,
        pipeline: options.pipeline,
        threads,
        rate: options.rate,
        measured_secs,
        requests,
        ops_per_sec: requests as f64 / secs,
        all,
        commands,
        series: stats::merge_series(&workers, options.share.is_some()),
        errors,
        reconnects,
        late_sends: late,
        send_lag_p99_us: if lag.is_empty() {
            0
        } else {
            lag.value_at_quantile(0.99)
        },
        send_lag_max_us: if lag.is_empty() { 0 } else { lag.max() },
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
            .iter()
            .map(|(addr, h)| NodeReport {
                addr: addr.to_string(),
                requests: h.len(),
                ops_per_sec: h.len() as f64 / secs,
                latency: LatencySummary::of(h),
                histogram: options.share.is_some().then(|| encode_histogram(h)),
            })
            .collect(),
        late_start_us: 0,
    }
}
