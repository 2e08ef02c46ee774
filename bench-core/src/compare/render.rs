//! A comparison as text: the terminal verdict table, the detail table, the PR-comment
//! Markdown (escaped, no HTML).

use super::*;

/// Escapes text for a Markdown table cell or line: Markdown punctuation gets a backslash,
/// `<`, `>` and `&` become entities (so nothing renders as HTML), newlines become spaces.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A number with 3–4 significant figures, thousands grouped for large ones.
fn figure(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        crate::tables::group_thousands(v)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A row's evidence: raw and Holm-adjusted p, at which look and α, for a sampled metric;
/// "exact" for counts.
fn evidence_text(case: &CaseResult, metric: &MetricResult) -> String {
    match &case.evidence {
        _ if metric.comparison.sign_p.is_none() => "exact".into(),
        Some(e) => format!(
            "{} / {} (look {}, α {})",
            p_text(e.raw_p),
            p_text(e.adjusted_p),
            e.look,
            p_text(e.alpha)
        ),
        None => "-".into(),
    }
}

/// The metrics a case's verdict rests on, one table row each: the primary, and in a
/// screened comparison the timed primary after the count.
pub fn headline_metrics(case: &CaseResult) -> Vec<&MetricResult> {
    let mut rows: Vec<&MetricResult> = case.metrics.iter().take(1).collect();
    if matches!(
        case.screen,
        Some(screen::Screen::Moved | screen::Screen::Guard)
    ) && let Some(timed) = screen::timed_primary(case)
        && !rows.iter().any(|m| std::ptr::eq(*m, timed))
    {
        rows.push(timed);
    }
    rows
}

/// A case's verdict as the tables show it: "changed, not timed" for a case whose counts
/// moved and that no trial timed; in instructions mode, a count's call is labelled as
/// one ("regression (instructions)").
pub fn verdict_label(report: &CompareReport, case: &CaseResult) -> String {
    if screen::changed_not_timed(case) {
        return "changed, not timed".into();
    }
    if report.mode == "instructions" && case.verdict != Verdict::Inconclusive {
        return format!("{} (instructions)", case.verdict.label());
    }
    case.verdict.label().into()
}

/// A metric's change: percent, or for system calls the difference in calls per request.
fn change_cell(m: &MetricResult) -> String {
    if screen::is_syscalls(m) {
        let c = &m.comparison;
        format!("{:+.2}/req", c.candidate_median - c.baseline_median)
    } else {
        format!("{:+.2}%", m.comparison.change_pct())
    }
}

/// The one-line outcome of a comparison, as the Markdown, the terminal and the report
/// page open with it: the regressions, else inconclusive (with what stays open), else no
/// regression; a kernel-side change is named whatever the outcome.
pub fn headline(report: &CompareReport) -> String {
    let regressions = report.count(Verdict::Regression);
    let open = report.count(Verdict::Inconclusive);
    let improvements = report.count(Verdict::Improvement);
    let mut text = if regressions > 0 {
        format!("{regressions} regression(s)")
    } else if open > 0 {
        let not_timed = report
            .cases
            .iter()
            .filter(|c| screen::changed_not_timed(c))
            .count();
        let mut why = Vec::new();
        if not_timed > 0 {
            why.push(format!("{not_timed} changed, not timed"));
        }
        if open > not_timed {
            why.push(format!("{} undecided", open - not_timed));
        }
        format!(
            "inconclusive: no regression found, {open} of {} case(s) open ({})",
            report.cases.len(),
            why.join(", ")
        )
    } else {
        "no regression".to_string()
    };
    if improvements > 0 {
        text.push_str(&format!(", {improvements} improvement(s)"));
    }
    if report
        .findings
        .iter()
        .any(|f| f.starts_with("kernel-side change"))
    {
        text.push_str("; kernel-side change");
    }
    text
}

/// A p-value or α with the digits it needs: 0.031, 0.0078, 4.9e-4.
fn p_text(p: f64) -> String {
    if p >= 0.01 {
        format!("{p:.3}")
    } else if p >= 0.001 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

/// The note column: the case's note, and for an undecided case the smallest change its
/// trials could have detected.
fn note_text(case: &CaseResult) -> String {
    let mut parts: Vec<String> = case.note.iter().cloned().collect();
    if case.verdict == Verdict::Inconclusive
        && let Some(mde) = case.metrics.first().and_then(|m| m.comparison.mde_pct)
    {
        parts.push(format!("MDE {mde:.1}%"));
    }
    escape_markdown(&parts.join("; "))
}

fn ci_text(c: &Comparison) -> String {
    match (c.ci_low, c.ci_high) {
        (Some(_), Some(_)) if c.sign_p.is_none() => "exact count".into(),
        (Some(l), Some(h)) => format!("{:+.1}% .. {:+.1}%", (l - 1.0) * 100.0, (h - 1.0) * 100.0),
        _ => "-".into(),
    }
}

/// The main table: one row per case, its primary metric, the verdict.
pub fn verdict_table(report: &CompareReport) -> String {
    let header = [
        "case",
        "metric",
        "baseline",
        "candidate",
        "change",
        "95% CI",
        "pairs",
        "p raw / adjusted",
        "verdict",
        "note",
    ];
    let rows: Vec<Vec<String>> = report
        .cases
        .iter()
        .flat_map(|case| {
            headline_metrics(case)
                .into_iter()
                .enumerate()
                .map(move |(row, m)| {
                    let c = &m.comparison;
                    // A case's second row (its timed metric) leaves the case's columns blank.
                    let first = |text: String| if row == 0 { text } else { String::new() };
                    vec![
                        first(escape_markdown(&case.case)),
                        m.label.clone(),
                        figure(c.baseline_median),
                        figure(c.candidate_median),
                        change_cell(m),
                        ci_text(c),
                        c.pairs.to_string(),
                        evidence_text(case, m),
                        first(verdict_label(report, case)),
                        first(note_text(case)),
                    ]
                })
        })
        .collect();
    crate::tables::aligned(&header, &rows)
}

/// Every metric of every case with its tests: the detail under the verdicts.
pub fn detail_table(report: &CompareReport) -> String {
    let header = [
        "case",
        "metric",
        "baseline",
        "candidate",
        "change",
        "95% CI",
        "sign p",
        "U p",
        "CV base",
        "CV cand",
        "MDE",
    ];
    let p = |v: Option<f64>| v.map_or("-".into(), |p| format!("{p:.3}"));
    let rows: Vec<Vec<String>> = report
        .cases
        .iter()
        .flat_map(|case| {
            case.metrics.iter().map(move |m| {
                let c = &m.comparison;
                vec![
                    escape_markdown(&case.case),
                    m.label.clone(),
                    figure(c.baseline_median),
                    figure(c.candidate_median),
                    change_cell(m),
                    ci_text(c),
                    p(c.sign_p),
                    p(c.mann_whitney_p),
                    format!("{:.1}%", c.baseline_cv * 100.0),
                    format!("{:.1}%", c.candidate_cv * 100.0),
                    c.mde_pct.map_or("-".into(), |m| format!("{m:.1}%")),
                ]
            })
        })
        .collect();
    crate::tables::aligned(&header, &rows)
}

/// The summary for a pull-request comment: plain Markdown, no HTML, everything that came
/// from a source tree or a config escaped.
pub fn markdown(report: &CompareReport) -> String {
    let side = |s: &SideInfo| {
        format!(
            "{} (Valkey {}, {})",
            escape_markdown(&s.spec),
            escape_markdown(&s.version),
            escape_markdown(&s.source_id)
        )
    };
    let regressions = report.count(Verdict::Regression);
    let open = report.count(Verdict::Inconclusive);
    let headline = format!("**{}**", escape_markdown(&headline(report)));
    let mut out = format!(
        "## valkey-bench compare: {headline}\n\n\
         - baseline: {}\n- candidate: {}\n- suite: {}, mode: {}, threshold: {}%\n\
         - {} case(s): {} regression, {} improvement, {} no change, {} inconclusive; \
         {:.0} s, stopped: {}\n",
        side(&report.baseline),
        side(&report.candidate),
        escape_markdown(&report.suite),
        escape_markdown(&report.mode),
        report.threshold_pct,
        report.cases.len(),
        regressions,
        report.count(Verdict::Improvement),
        report.count(Verdict::NoChange),
        open,
        report.elapsed_secs,
        escape_markdown(&report.stopped),
    );
    if let Some(t) = report.instructions_threshold_pct {
        let with = |role: screen::Screen| {
            report
                .cases
                .iter()
                .filter(|c| c.screen == Some(role))
                .count()
        };
        let moved = report.cases.iter().filter(|c| screen::moved(c)).count();
        let calls = if report
            .cases
            .iter()
            .any(|c| c.metrics.iter().any(screen::is_syscalls))
        {
            "; system calls per request by kind"
        } else {
            "; system calls not counted"
        };
        out.push_str(&format!(
            "- screened by exact counts (instructions, threshold {t}%{calls}): \
             {moved} of {} case(s) changed; timed (threshold {}%): {} changed case(s) and {} guard(s) \
             whose counts did not move\n",
            report.cases.len(),
            report.threshold_pct,
            with(screen::Screen::Moved),
            with(screen::Screen::Guard),
        ));
    }
    for finding in &report.findings {
        out.push_str(&format!("- **finding**: {}\n", escape_markdown(finding)));
    }
    out.push('\n');
    out.push_str(&verdict_table(report));
    out.push_str("\n### Every metric\n\n");
    out.push_str(&detail_table(report));
    out.push_str(METHOD_NOTE);
    out
}

/// How to read the tables, printed under them.
pub const METHOD_NOTE: &str = "\nChange is the median of per-trial ratios candidate/baseline (in the perf suite a \
trial's ratio is the median of its slices; trials alternate AB/BA on fresh servers). 95% CI: the distribution-free \
interval of the median from order statistics. p raw: the sign test over the trials; adjusted: Holm over every timed \
case of the comparison, at the look's share of 5% (at most 8 looks at fixed trial counts, a third of alpha at the \
first, 2/21 at each later one), so the whole comparison false-alarms at most 5% of the time (10% where guards showed the counts blind and \
further unmoved cases were timed as a family of their own). A regression needs the \
adjusted p within the look's alpha and the change past the threshold. No change: the CI within ±threshold (in \
the default mode also an unchanged count that time did not contradict, below). \
Inconclusive: neither when the trials stopped (a CI entirely beyond ±threshold that the family's rule did not \
decide stays inconclusive); MDE: the smallest change these trials detect at 80% power. Exact counts are not \
samples: in the default mode (auto) every case's instructions per request and system calls per request (by kind) \
are counted under callgrind, and a count that moved says the case changed, not which way: Valkey trades \
instructions for fewer memory stalls, and a system call's cost is in the kernel. Time decides the direction: the \
changed cases are timed (the largest change first), then guards whose counts did not move as --max-time allows; a \
changed case left untimed is \"changed, not timed\" (inconclusive). An unmoved count vouches for its case unless a timed guard's \
time moved where its counts did not. Instructions mode (--mode instructions) calls regressions on counts alone, \
labelled as instruction verdicts.\n";
