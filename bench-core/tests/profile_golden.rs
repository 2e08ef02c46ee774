//! Golden files for folding and rendering, on `perf script` output recorded from a real
//! valkey-server 8.1.1 with 2 I/O threads under GET/SET load (`fixtures/`).
//! `VALKEY_BENCH_BLESS=1 cargo test -p bench-core --test profile_golden` rewrites them after
//! a deliberate change; review the diff.

use std::path::Path;

use bench_core::profile::{self, Title};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("VALKEY_BENCH_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with VALKEY_BENCH_BLESS=1", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the golden file at line {}: expected {:?}, got {:?} \
             (VALKEY_BENCH_BLESS=1 to accept)",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

fn folded() -> String {
    let script = std::fs::read(fixture("perf-script-io-threads.txt")).unwrap();
    profile::fold_perf_script(&script).unwrap()
}

#[test]
fn folding_matches_the_golden_file() {
    let folded = folded();
    let samples: u64 = profile::parse(&folded).map(|(_, n)| n).sum();
    // inferno sums each sample's period: 1,001,001 ns of CPU per cpu-clock sample here.
    assert_eq!(
        samples,
        240 * 1_001_001,
        "every recorded sample is folded once"
    );
    let roots: Vec<String> = profile::threads(&folded).into_iter().map(|t| t.0).collect();
    assert_eq!(roots, ["valkey-server", profile::IO_THREADS]);
    check("perf-script-io-threads.folded", &folded);
}

#[test]
fn top_functions_match_the_golden_file() {
    let top = profile::top_table(&profile::top_functions(&folded(), 15), "ns");
    check("perf-script-io-threads.top.md", &top);
}

#[test]
fn rendering_matches_the_golden_file() {
    let svg = profile::flamegraph_svg(
        &folded(),
        &Title {
            title: "valkey-server 8.1.1: GET/SET, 2 I/O threads",
            subtitle: "fixture",
            count_name: "ns",
        },
    )
    .unwrap();
    assert!(svg.contains("processCommand"));
    assert!(svg.contains("I/O threads"));
    check("perf-script-io-threads.svg", &svg);
}
