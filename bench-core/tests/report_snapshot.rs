//! Snapshots of the report's Markdown, its HTML structure (inline SVG bodies elided) and its
//! chart list, built from records of real runs (`fixtures/report/`: a perf run long enough
//! for per-second series, a mem run, a sync run, a compare of 8.1.1 against 9.1.2). An
//! output change shows up as a reviewed diff: `INSTA_UPDATE=always cargo test -p bench-core
//! --test report_snapshot` accepts it (or `cargo insta review`).

use std::path::Path;

use bench_core::charts;
use bench_core::report_page::{self, Run};
use bench_core::result::{MemRecord, SCHEMA_VERSION};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lines<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
    fixture(name)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn font() {
    let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{path}: {e}; install fonts-dejavu-core (.ci/run does)"));
    charts::use_font(Box::leak(bytes.into_boxed_slice())).unwrap();
}

fn runs() -> Vec<Run> {
    vec![
        Run {
            run_id: "compare-8.1.1-9.1.2".into(),
            compare: Some(serde_json::from_str(&fixture("compare.json")).unwrap()),
            ..Run::default()
        },
        Run {
            run_id: "perf-series".into(),
            perf: lines("perf.jsonl"),
            ..Run::default()
        },
        Run {
            run_id: "mem-quick".into(),
            mem: lines("mem.jsonl"),
            ..Run::default()
        },
        Run {
            run_id: "sync-quick".into(),
            sync: lines("sync.jsonl"),
            ..Run::default()
        },
    ]
}

#[test]
fn the_report_reads_as_before() {
    font();
    let report = report_page::build(&runs(), "charts").unwrap();
    insta::assert_snapshot!("report_md", report.markdown);
    insta::assert_snapshot!(
        "report_html_structure",
        report_page::html_structure(&report.html)
    );
    insta::assert_snapshot!("charts", charts::describe(&report.charts));
}

#[test]
fn the_page_is_self_contained() {
    font();
    let report = report_page::build(&runs(), "charts").unwrap();
    let html = &report.html;
    assert_eq!(
        html.matches("<svg").count(),
        report.charts.len(),
        "every chart inline"
    );
    for external in ["<script", "<link", "<img", "src=", "href=\"http"] {
        assert!(!html.contains(external), "{external} in the page");
    }
    for chart in &report.charts {
        assert!(html.contains(&format!("<figure id=\"{}\">", chart.name)));
        // The Markdown names each chart's file but links no image: pasted into a pull
        // request a relative image is a broken one.
        assert!(
            report
                .markdown
                .contains(&format!("charts/{}.png).*", chart.name)),
            "the Markdown names {}",
            chart.name
        );
    }
    assert!(
        !report.markdown.contains("!["),
        "no image links in the Markdown"
    );
    // Long tables fold.
    assert!(
        report
            .markdown
            .contains("<details><summary>Parameters of every case")
    );
    // Every kind of chart the issue asks for is there.
    let names: Vec<&str> = report.charts.iter().map(|c| c.name.as_str()).collect();
    for prefix in [
        "compare-",
        "throughput",
        "latency-get",
        "series-",
        "memory",
        "sync",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "{prefix}: {names:?}"
        );
    }
}

#[test]
fn mem_records_of_an_older_schema_are_flagged() {
    font();
    let record: MemRecord = lines("mem.jsonl").remove(0);
    let run = |id: &str, schema: u32| Run {
        run_id: id.into(),
        mem: vec![MemRecord {
            schema,
            ..record.clone()
        }],
        ..Run::default()
    };
    let markdown = |runs: &[Run]| report_page::build(runs, "charts").unwrap().markdown;
    let new = markdown(&[run("new", SCHEMA_VERSION)]);
    assert!(!new.contains("Warning:"), "{new}");
    let both = markdown(&[run("old", 5), run("new", SCHEMA_VERSION)]);
    assert!(
        both.contains("Warning: old measured with record schema < 6"),
        "{both}"
    );
    assert!(!both.contains("Warning: old, new"), "{both}");
}
