//! One section of the page per suite (perf, mem, sync), compare's verdicts and the flame
//! graphs: records → blocks and charts.

use super::*;

pub(crate) fn push_chart(
    name: &str,
    chart: &impl charts::Draw,
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    charts.push(charts::render(name, chart).map_err(|e| format!("chart {name}: {e}"))?);
    blocks.push(Block::Chart(charts.len() - 1));
    Ok(())
}

pub(crate) fn perf_section(
    runs: &[Run],
    labels: &[String],
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    blocks.push(Block::Heading(2, "Throughput and latency (perf)".into()));
    blocks.push(Block::Paragraph(tables::PERF_NOTE.into()));
    for (run, label) in runs.iter().zip(labels) {
        if run.perf.is_empty() {
            continue;
        }
        blocks.push(Block::Heading(3, run_heading(label, run)));
        blocks.push(Block::Table(tables::markdown_table(&tables::summarize(
            &run.perf,
        ))));
        blocks.push(Block::Folded(
            format!("Parameters of every case ({})", run.run_id),
            super::context::parameters_table(&run.perf),
        ));
    }
    blocks.push(Block::Paragraph(super::context::CASE_NAME_NOTE.into()));

    // Cases in first-seen order, grouped by command in first-seen order.
    let mut commands: Vec<&str> = Vec::new();
    let mut cases: Vec<(&str, &str)> = Vec::new();
    for r in runs.iter().flat_map(|r| &r.perf) {
        if !commands.contains(&r.params.command.as_str()) {
            commands.push(&r.params.command);
        }
        if !cases.iter().any(|(c, _)| *c == r.case) {
            cases.push((&r.case, &r.params.command));
        }
    }
    cases.sort_by_key(|(_, command)| commands.iter().position(|c| c == command));
    let with_perf: Vec<(&Run, &String)> = runs
        .iter()
        .zip(labels)
        .filter(|(r, _)| !r.perf.is_empty())
        .collect();
    // One chart per pipeline depth: P1 and P16 differ by 5× or more, and on one linear
    // axis the P1 bars would be slivers.
    let pipeline_of = |case: &str| {
        runs.iter()
            .flat_map(|r| &r.perf)
            .find(|r| r.case == case)
            .map_or(1, |r| r.params.pipeline)
    };
    let mut pipelines: Vec<u32> = cases.iter().map(|(case, _)| pipeline_of(case)).collect();
    pipelines.sort_unstable();
    pipelines.dedup();
    for &pipeline in &pipelines {
        let throughput = charts::Throughput {
            group: (pipelines.len() > 1).then(|| format!("pipeline {pipeline}")),
            series: with_perf.iter().map(|(_, l)| (*l).clone()).collect(),
            rows: cases
                .iter()
                .filter(|(case, _)| pipeline_of(case) == pipeline)
                .map(|(case, command)| charts::ThroughputRow {
                    case: case.to_string(),
                    command: command.to_string(),
                    bars: with_perf
                        .iter()
                        .map(|(run, _)| {
                            let ops: Vec<f64> = run
                                .perf
                                .iter()
                                .filter(|r| r.case == *case)
                                .map(|r| r.metrics.ops_per_sec)
                                .collect();
                            Spread::of(&ops)
                        })
                        .collect(),
                })
                .collect(),
        };
        let name = if pipelines.len() > 1 {
            format!("throughput-p{pipeline}")
        } else {
            "throughput".to_string()
        };
        push_chart(&name, &throughput, blocks, charts)?;
    }

    // Latency curves per command, from the saved histograms (repetitions merged).
    let mut without = Vec::new();
    for command in &commands {
        let mut curves = Vec::new();
        for (run, label) in &with_perf {
            for (case, c) in &cases {
                if c != command {
                    continue;
                }
                let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
                for r in run.perf.iter().filter(|r| r.case == *case) {
                    let Some(h) = r.metrics.histogram.as_deref() else {
                        continue;
                    };
                    let h = crate::loadgen::stats::decode_histogram(h)
                        .map_err(|e| format!("{}: histogram of {case}: {e}", run.run_id))?;
                    match &mut merged {
                        Some(m) => m.add(&h).map_err(|e| format!("{case}: {e}"))?,
                        None => merged = Some(h),
                    }
                }
                match merged {
                    Some(h) if !h.is_empty() => curves.push(charts::Curve {
                        label: if with_perf.len() > 1 {
                            format!("{case} ({label})")
                        } else {
                            case.to_string()
                        },
                        points: charts::percentile_points(&h),
                        count: h.len(),
                    }),
                    _ => without.push(case.to_string()),
                }
            }
        }
        if !curves.is_empty() {
            let chart = charts::Percentiles {
                title: format!("{command} latency percentiles (repetitions merged)"),
                curves,
            };
            push_chart(
                &format!("latency-{}", slug(command)),
                &chart,
                blocks,
                charts,
            )?;
        }
    }
    without.sort();
    without.dedup();
    if !without.is_empty() {
        blocks.push(Block::Paragraph(format!(
            "No latency histogram for {} (valkey-benchmark records none; the native engine does).",
            without.join(", ")
        )));
    }

    // Per-second series of runs long enough to have one.
    let mut drawn = 0;
    let mut short = 0;
    for (run, label) in &with_perf {
        for (case, _) in &cases {
            let reps: Vec<&ResultRecord> = run.perf.iter().filter(|r| r.case == *case).collect();
            if reps.is_empty() {
                continue;
            }
            if reps
                .iter()
                .all(|r| r.metrics.series.len() <= MIN_SERIES_SECONDS)
            {
                short += 1;
                continue;
            }
            if drawn == MAX_SERIES_CHARTS {
                continue;
            }
            let lines = reps
                .iter()
                .map(|r| {
                    // A run's last second is partial: its count is not a rate, so it is left
                    // out (the measured run's is kept when its wall time shows it whole).
                    let warm = whole_seconds(&r.metrics.warmup_series, None);
                    let measured = whole_seconds(&r.metrics.series, Some(r.metrics.wall_secs));
                    let offset = r.metrics.warmup_series.len() as f64;
                    let point = |s: &crate::loadgen::stats::SecondReport, offset: f64| {
                        (f64::from(s.second) - offset, s.ops as f64, s.p99_us as f64)
                    };
                    charts::SeriesLine {
                        label: format!("repetition {}", r.repetition),
                        points: warm
                            .iter()
                            .map(|s| point(s, offset))
                            .chain(measured.iter().map(|s| point(s, 0.0)))
                            .collect(),
                    }
                })
                .collect();
            let chart = charts::TimeSeries {
                title: format!("{case} per second, {label}"),
                lines,
            };
            drawn += 1;
            push_chart(
                &format!("series-{drawn:02}-{}", slug(case)),
                &chart,
                blocks,
                charts,
            )?;
        }
    }
    if short > 0 {
        blocks.push(Block::Paragraph(format!(
            "{short} case(s) ran for less than {MIN_SERIES_SECONDS} s per repetition, too short \
             for a per-second series; set `measure_seconds` (and `warmup_seconds`) in a suite \
             file to see one."
        )));
    }
    Ok(())
}

/// The first record schema whose mem `bytes_per_item` is the data's memory alone.
pub(crate) const MEM_SCHEMA: u32 = 6;

pub(crate) fn mem_section(
    runs: &[Run],
    labels: &[String],
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    blocks.push(Block::Heading(2, "Memory efficiency (mem)".into()));
    blocks.push(Block::Paragraph(tables::MEM_NOTE.into()));
    let older: Vec<&str> = runs
        .iter()
        .filter(|run| run.mem.iter().any(|r| r.schema < MEM_SCHEMA))
        .map(|run| run.run_id.as_str())
        .collect();
    if !older.is_empty() {
        blocks.push(Block::Paragraph(format!(
            "Warning: {} measured with record schema < {MEM_SCHEMA}, whose bytes/item also \
             counts client buffers resized between its readings and the server's first-call \
             allocations (each 1 to 2 bytes/item at 20,000 items, more with fewer items): \
             compare those runs with each other, not with newer ones.",
            older.join(", ")
        )));
    }
    let groups = per_run_then_grouped(
        runs,
        labels,
        |run| &run.mem,
        tables::mem_table,
        |r: &MemRecord| {
            let p = &r.params;
            let mut line = format!("{} k{}", p.data_type, p.key_size);
            if p.field_size > 0 {
                let _ = write!(line, " f{}", p.field_size);
            }
            if p.expiry {
                line.push_str(" ttl");
            }
            (line, p.value_size)
        },
        blocks,
    );
    let points = groups
        .into_iter()
        .map(|(line, value_size, records)| charts::MemPoint {
            line,
            value_size: value_size as f64,
            bytes_per_item: median_of(&records, |r| r.metrics.bytes_per_item),
            overhead_bytes_per_item: median_of(&records, |r| r.metrics.overhead_bytes_per_item),
        })
        .collect();
    push_chart("memory", &charts::Memory { points }, blocks, charts)
}

pub(crate) fn sync_section(
    runs: &[Run],
    labels: &[String],
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    blocks.push(Block::Heading(2, "Full sync (sync)".into()));
    blocks.push(Block::Paragraph(tables::SYNC_NOTE.into()));
    let groups = per_run_then_grouped(
        runs,
        labels,
        |run| &run.sync,
        tables::sync_table,
        |r: &SyncRecord| {
            let p = &r.params;
            let mut line = if p.diskless_sync { "diskless" } else { "disk" }.to_string();
            if p.diskless_load != "disabled" {
                let _ = write!(line, ", load {}", p.diskless_load);
            }
            if p.replicas > 1 {
                let _ = write!(line, ", {} replicas", p.replicas);
            }
            if p.write_load {
                line.push_str(" + writes");
            }
            (line, p.data_bytes)
        },
        blocks,
    );
    let points = groups
        .into_iter()
        .map(|(line, data_bytes, records)| charts::SyncPoint {
            line,
            data_bytes: data_bytes as f64,
            sync_secs: median_of(&records, |r| r.metrics.sync_secs),
            throughput_bytes_per_sec: median_of(&records, |r| r.metrics.throughput_bytes_per_sec),
        })
        .collect();
    push_chart("sync", &charts::Sync { points }, blocks, charts)
}

/// A suite's records: a heading and `table` per run, then the records of all runs grouped
/// by `key` = (chart line, x), lines in first-seen order (suffixed with the run's label when
/// several runs have records), x ascending.
pub(crate) fn per_run_then_grouped<'a, R>(
    runs: &'a [Run],
    labels: &[String],
    records: fn(&Run) -> &Vec<R>,
    table: fn(&[R]) -> String,
    key: impl Fn(&R) -> (String, u64),
    blocks: &mut Vec<Block>,
) -> Vec<(String, u64, Vec<&'a R>)> {
    let many = runs.iter().filter(|r| !records(r).is_empty()).count() > 1;
    let mut groups: BTreeMap<(String, u64), Vec<&R>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (run, label) in runs.iter().zip(labels) {
        if records(run).is_empty() {
            continue;
        }
        blocks.push(Block::Heading(3, run_heading(label, run)));
        blocks.push(Block::Table(table(records(run))));
        for r in records(run) {
            let (mut line, x) = key(r);
            if many {
                let _ = write!(line, " ({label})");
            }
            if !order.contains(&line) {
                order.push(line.clone());
            }
            groups.entry((line, x)).or_default().push(r);
        }
    }
    let mut out = Vec::new();
    for line in order {
        for ((l, x), rs) in &groups {
            if *l == line {
                out.push((line.clone(), *x, rs.clone()));
            }
        }
    }
    out
}

pub(crate) fn median_of<R>(records: &[&R], f: fn(&R) -> f64) -> f64 {
    stats::median(&records.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(0.0)
}

pub(crate) fn compare_section(
    c: &CompareReport,
    label: &str,
    blocks: &mut Vec<Block>,
    charts: &mut Vec<Chart>,
) -> Result<(), String> {
    blocks.push(Block::Heading(
        2,
        format!(
            "Compare: {} against {} ({})",
            c.candidate.spec, c.baseline.spec, label
        ),
    ));
    let regressions = c.count(Verdict::Regression);
    let thresholds = match c.instructions_threshold_pct {
        Some(count) => format!(
            "the screen's counts change at {count}% of instructions (or 0.01 system calls per \
             request), timed trials decide at {}%",
            c.threshold_pct
        ),
        None => format!("threshold {}%", c.threshold_pct),
    };
    blocks.push(Block::Paragraph(format!(
        "Verdict: {}.",
        compare::headline(c)
    )));
    for finding in &c.findings {
        blocks.push(Block::Paragraph(format!("Finding: {finding}.")));
    }
    blocks.push(Block::Paragraph(format!(
        "{} suite, {} mode, {thresholds}: {} regression(s), {} improvement(s), {} no change, \
         {} inconclusive; {} after {:.0} s.",
        c.suite,
        c.mode,
        regressions,
        c.count(Verdict::Improvement),
        c.count(Verdict::NoChange),
        c.count(Verdict::Inconclusive),
        c.stopped,
        c.elapsed_secs
    )));
    let rows = c
        .cases
        .iter()
        .flat_map(|case| {
            // The count's row, and a timed case's time row under it.
            compare::headline_metrics(case)
                .into_iter()
                .map(move |m| (case, m))
        })
        .map(|(case, m)| {
            let cmp = &m.comparison;
            // Every row as a cost, so that slower (or more work) is always to the right:
            // a higher-is-better metric (ops/s) becomes time per operation, 1/ratio.
            let (cost, label) = match m.better {
                compare::Better::Lower => (
                    (|r: f64| (r - 1.0) * 100.0) as fn(f64) -> f64,
                    m.label.clone(),
                ),
                compare::Better::Higher => (
                    (|r: f64| (1.0 / r - 1.0) * 100.0) as fn(f64) -> f64,
                    format!("{} as time/op", m.label),
                ),
            };
            let ci = cmp.ci_low.zip(cmp.ci_high).map(|(lo, hi)| {
                let (a, b) = (cost(lo), cost(hi));
                (a.min(b), a.max(b))
            });
            charts::CompareRow {
                label: format!("{} · {label}", case.case),
                // The unit is in the row's label.
                values: format!(
                    "{} → {}",
                    charts::si(cmp.baseline_median),
                    charts::si(cmp.candidate_median)
                ),
                change_pct: cost(cmp.ratio),
                ci_pct: ci,
                verdict: case.verdict,
            }
        })
        .collect();
    let side = |s: &compare::SideInfo| {
        if s.spec == s.version {
            s.spec.clone()
        } else {
            format!("{} (Valkey {})", s.spec, s.version)
        }
    };
    let chart = charts::Compare {
        title: format!(
            "{} against {}: change per case",
            side(&c.candidate),
            side(&c.baseline)
        ),
        // In the default mode most rows are counts: their band.
        threshold_pct: c.instructions_threshold_pct.unwrap_or(c.threshold_pct),
        rows,
    };
    push_chart(
        &format!("compare-{}", slug(&c.run_id)),
        &chart,
        blocks,
        charts,
    )?;
    blocks.push(Block::Table(compare::verdict_table(c)));
    Ok(())
}

pub(crate) fn flamegraph_section(profiled: &[(FlameGraphs, String)], blocks: &mut Vec<Block>) {
    if profiled.is_empty() {
        return;
    }
    blocks.push(Block::Heading(
        3,
        "Where the time moved (flame graphs)".into(),
    ));
    blocks.push(Block::Paragraph(
        "Each case was profiled on both sides (perf, after the verdicts). In the differential \
         flame graph widths are the candidate's; red grew and blue shrank against the \
         baseline. The table lists the functions whose share of the server's CPU moved most."
            .into(),
    ));
    for (f, movers) in profiled {
        blocks.push(Block::Heading(4, f.case.clone()));
        let file = |suffix: &str| format!("flamegraphs/{}{suffix}", f.stem);
        blocks.push(Block::Links(vec![
            ("differential flame graph".into(), file(".diff.svg")),
            ("baseline".into(), file(".baseline.svg")),
            ("candidate".into(), file(".svg")),
        ]));
        blocks.push(Block::Table(movers.clone()));
    }
}

/// The seconds of a series that were whole: all but the last, unless `wall_secs` shows the
/// run lasted through the end of its last second.
pub(crate) fn whole_seconds(
    series: &[crate::loadgen::stats::SecondReport],
    wall_secs: Option<f64>,
) -> &[crate::loadgen::stats::SecondReport] {
    match series.last() {
        Some(last) if wall_secs.is_some_and(|w| w >= f64::from(last.second) + 1.0) => series,
        Some(_) => &series[..series.len() - 1],
        None => series,
    }
}
