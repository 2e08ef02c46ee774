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
        "verdict",
        "note",
    ];
    let rows: Vec<Vec<String>> = report
        .cases
        .iter()
        .map(|case| {
            let m = &case.metrics[0];
            let c = &m.comparison;
            vec![
                escape_markdown(&case.case),
                m.label.clone(),
                figure(c.baseline_median),
                figure(c.candidate_median),
                format!("{:+.2}%", c.change_pct()),
                ci_text(c),
                c.pairs.to_string(),
                case.verdict.label().to_string(),
                escape_markdown(case.note.as_deref().unwrap_or("")),
            ]
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
                    format!("{:+.2}%", c.change_pct()),
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
    let headline = if regressions > 0 {
        format!("**{regressions} regression(s)**")
    } else {
        "**no regression**".to_string()
    };
    let mut out = format!(
        "## valkey-bench compare: {headline}\n\n\
         - baseline: {}\n- candidate: {}\n- suite: {}, mode: {}, threshold: {}%\n\
         - {} case(s): {} regression, {} improvement, {} no change, {} unstable; \
         {:.0} s, stopped: {}\n\n",
        side(&report.baseline),
        side(&report.candidate),
        escape_markdown(&report.suite),
        escape_markdown(&report.mode),
        report.threshold_pct,
        report.cases.len(),
        regressions,
        report.count(Verdict::Improvement),
        report.count(Verdict::NoChange),
        report.count(Verdict::Unstable),
        report.elapsed_secs,
        escape_markdown(&report.stopped),
    );
    out.push_str(&verdict_table(report));
    out.push_str("\n### Every metric\n\n");
    out.push_str(&detail_table(report));
    out.push_str(METHOD_NOTE);
    out
}

/// How to read the tables, printed under them.
pub const METHOD_NOTE: &str = "\nChange is the median of per-pair ratios candidate/baseline. \
Trials alternate AB/BA on fresh servers; in the perf suite a pair is two adjacent slices of one trial. \
95% CI: paired bootstrap of the median. A regression needs \
the CI to exclude 0, the sign test p below 0.05, the change past the threshold, and (time mode) the \
server's CPU per request to move the same way. No change: the whole CI within ±threshold. \
Unstable: the trials could not decide. MDE: the smallest change these pairs detect at 80% power.\n";
