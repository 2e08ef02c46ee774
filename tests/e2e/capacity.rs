//! `cargo xtask capacity` against real servers: a search ends with an interval and its
//! verification (whether this VM's noise lets it verify is what the answer reports, not
//! what the test decides), and bad input exits 2 before anything starts.

use serde_json::Value;

use crate::util::*;

#[test]
fn bad_objectives_and_settings_exit_2_naming_them_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (vec!["--slo", "p101<=1ms"], "percentile 101"),
        (vec!["--slo", "p99<=-1"], "has no unit"),
        (vec!["--slo", "p99<=1h"], "unit \"h\""),
        (vec!["--slo", "latency<=1ms"], "neither a percentile"),
        (vec!["--slo", "errors<=0"], "no latency bound"),
        (
            vec!["--slo", "p99<=1ms", "--resolution", "0"],
            "--resolution 0",
        ),
        (vec!["--slo", "p99<=1ms", "--start=-5"], "--start"),
        (
            vec!["--slo", "p99<=1ms", "--trial-seconds", "0.01"],
            "--trial-seconds",
        ),
        (vec!["--slo", "p99<=1ms", "--pipelines", "1,16"], "one case"),
        (
            vec!["--slo", "p99<=1ms", "--commands", "LPOP"],
            "does not use up",
        ),
        (vec!["--slo", "p99<=1ms", "--tls"], "not there yet"),
    ] {
        let mut all = vec!["capacity"];
        all.extend_from_slice(&args);
        let out = run(&all, Some(tmp.path()));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn a_search_brackets_bisects_and_verifies_on_fresh_servers() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let base = ports(4).to_string();
    let dir = tmp.path().join("run");
    // One connection at pipeline 1: its window is the limit, a few thousand a second, so
    // the generator is never what runs out.
    let out = run(
        &[
            "capacity",
            "--slo",
            "p99<=50ms",
            "--clients",
            "1",
            "--pipelines",
            "1",
            "--trial-seconds",
            "0.2",
            "--resolution",
            "5",
            "--base-port",
            &base,
            "--out",
            dir.to_str().unwrap(),
            "--json",
        ],
        Some(tmp.path()),
    );
    let err = stderr(&out);
    // 0: verified; 3: an answer this machine's noise left unverified.
    assert!(matches!(out.status.code(), Some(0 | 3)), "{err}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let peak = json["closed_loop_peak"].as_f64().unwrap();
    assert!(peak > 100.0, "{json}");
    let answer = &json["answer"];
    let rate = answer["rate"].as_f64().unwrap_or_else(|| panic!("{json}"));
    let interval: Vec<f64> = answer["interval"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(interval[0], rate);
    assert!(interval[1] > rate, "{json}");
    let rates = json["rates"].as_array().unwrap();
    let verdict = |r: f64| {
        rates
            .iter()
            .find(|x| (x["rate"].as_f64().unwrap() - r).abs() < 1e-6)
            .map(|x| x["verdict"].as_str().unwrap().to_string())
    };
    // r* passed and the interval's top failed, each after at least two trials.
    assert_eq!(verdict(rate).as_deref(), Some("pass"), "{json}");
    assert_eq!(verdict(interval[1]).as_deref(), Some("fail"), "{json}");
    assert!(
        rates.iter().all(|r| r["trials"].as_u64().unwrap() >= 2),
        "{json}"
    );
    // The verification ran: 0.9 r* and 1.1 r* are the last two rates decided.
    let n = rates.len();
    let last: Vec<f64> = rates[n - 2..]
        .iter()
        .map(|r| r["rate"].as_f64().unwrap())
        .collect();
    assert!((last[0] - 0.9 * rate).abs() < 1e-6 && (last[1] - 1.1 * rate).abs() < 1e-6);
    let verified = answer["verified"].as_bool().unwrap();
    assert_eq!(verified, out.status.code() == Some(0), "{json}");
    if !verified {
        assert!(
            answer["not_verified_because"]
                .as_str()
                .unwrap()
                .contains("r*")
        );
    }
    // Every trial is reported with how it was judged; after the search, one headroom
    // trial at each of r*, 0.9, 0.75 and 0.5 r*.
    let trials = json["trials"].as_array().unwrap();
    assert!(trials.len() >= 2 * n + 4);
    assert!(trials.iter().all(|t| t["judged"].is_string()));
    let headroom: Vec<f64> = trials
        .iter()
        .filter(|t| t["stage"] == "headroom")
        .map(|t| t["rate"].as_f64().unwrap() / rate)
        .collect();
    assert_eq!(headroom.len(), 4, "{json}");
    for (got, want) in headroom.iter().zip([1.0, 0.9, 0.75, 0.5]) {
        assert!((got - want).abs() < 1e-9, "{headroom:?}");
    }
    // Every trial is a record in the run's results, in order, with the server's CPU.
    let records: Vec<Value> = std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), trials.len());
    for (i, (r, t)) in records.iter().zip(trials).enumerate() {
        assert_eq!(r["suite"], "capacity");
        assert_eq!(r["repetition"], i as u64 + 1);
        assert_eq!(r["capacity"]["rate"], t["rate"]);
        assert_eq!(r["capacity"]["stage"], t["stage"]);
        assert_eq!(r["metrics"]["offered_rate"], t["rate"]);
        assert_eq!(r["metrics"]["latency_from"], "intended");
        assert!(r["metrics"]["histogram"].is_string());
        assert!(r["metrics"]["server_cpu_us_per_request"].as_f64().unwrap() > 0.0);
    }
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(saved, json);
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("headroom (one trial each"), "{summary}");
    let svg = std::fs::read_to_string(dir.join("charts/knee.svg")).unwrap();
    assert!(svg.contains("objective: p99 ≤ 50.0ms"), "{svg}");
    assert!(
        std::fs::metadata(dir.join("charts/knee.png"))
            .unwrap()
            .len()
            > 1000
    );
    assert!(servers_under(tmp.path()).is_empty(), "every server stopped");
}
