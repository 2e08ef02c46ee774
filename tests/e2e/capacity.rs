//! `cargo xtask capacity` against real servers (over TLS): a search ends with an interval
//! and its verification (whether this VM's noise lets it verify is what the answer reports, not
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
        (
            vec![
                "--slo",
                "p99<=1ms",
                "--commands",
                "PING",
                "--over",
                "value-size=16,1K",
            ],
            "make the same case",
        ),
        (
            vec!["--slo", "p99<=1ms", "--topology", "cluster:0x1"],
            "--topology",
        ),
        (
            vec!["--slo", "p99<=1ms", "--read-from", "replicas"],
            "primaries only",
        ),
        (
            vec!["--slo", "p99<=1ms", "--over", "threads=1,2"],
            "no parameter",
        ),
        (
            vec!["--slo", "p99<=1ms", "--over", "clients=50"],
            "no curve",
        ),
        (
            vec![
                "--slo",
                "p99<=1ms",
                "--over",
                "clients=1,2",
                "--clients",
                "5",
            ],
            "both set it",
        ),
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
fn searches_over_a_parameter_bracket_bisect_verify_and_record_every_trial() {
    let _machine = heavy();
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let base = ports(4).to_string();
    let dir = tmp.path().join("run");
    let progress = tmp.path().join("progress.jsonl");
    // One connection at pipeline 1 and 2: its window is the limit, a few thousand a
    // second, so the generator is never what runs out.
    let out = run(
        &[
            "capacity",
            "--slo",
            "p99<=50ms",
            "--clients",
            "1",
            "--over",
            "pipeline=1,2",
            // Over TLS: the servers speak only TLS, and so does every connection of ours.
            "--tls",
            "--trial-seconds",
            "0.2",
            "--resolution",
            "5",
            "--base-port",
            &base,
            "--out",
            dir.to_str().unwrap(),
            "--progress-json",
            progress.to_str().unwrap(),
            "--json",
        ],
        Some(tmp.path()),
    );
    let err = stderr(&out);
    // 0: every answer verified; 3: one this machine's noise left unverified, or none.
    assert!(matches!(out.status.code(), Some(0 | 3)), "{err}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["over"], "pipeline", "{json}");
    let searches = json["searches"].as_array().unwrap();
    assert_eq!(searches.len(), 2, "{json}");
    let records: Vec<Value> = std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut records = records.iter();
    let mut all_verified = true;
    for (search, pipeline) in searches.iter().zip([1, 2]) {
        assert_eq!(search["value"], pipeline);
        let case = search["case"].as_str().unwrap();
        assert!(
            case.starts_with(&format!("GET/32B/P{pipeline}/c1/")),
            "{case}"
        );
        assert!(case.ends_with("/tls"), "{case}");
        all_verified &= check_search(search);
        // Every trial is a record in the run's results, in order, with the server's CPU.
        let trials = search["trials"].as_array().unwrap();
        for (i, t) in trials.iter().enumerate() {
            let r = records.next().expect("a record per trial");
            assert_eq!(r["suite"], "capacity");
            assert_eq!(r["case"], case);
            assert_eq!(r["repetition"], i as u64 + 1);
            assert_eq!(r["capacity"]["rate"], t["rate"]);
            assert_eq!(r["capacity"]["stage"], t["stage"]);
            assert_eq!(r["metrics"]["offered_rate"], t["rate"]);
            assert_eq!(r["metrics"]["latency_from"], "intended");
            assert_eq!(r["params"]["tls"]["auth_clients"], false);
            assert!(r["metrics"]["histogram"].is_string());
            assert!(r["metrics"]["server_cpu_us_per_request"].as_f64().unwrap() > 0.0);
        }
        let svg = std::fs::read_to_string(dir.join(format!("charts/knee-pipeline-{pipeline}.svg")))
            .unwrap();
        assert!(svg.contains("objective: p99 ≤ 50.0ms"), "{svg}");
    }
    assert!(records.next().is_none(), "no record beyond the trials");
    // The progress stream: a capacity_step per trial and per decided rate, each with the
    // bracket so far, then `finished` counting the records.
    let events: Vec<Value> = std::fs::read_to_string(&progress)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps = |trial: bool| {
        events
            .iter()
            .filter(|e| e["event"] == "capacity_step" && e["trial"].is_null() != trial)
            .count()
    };
    let count = |key: &str| -> usize {
        searches
            .iter()
            .map(|s| s[key].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(steps(true), count("trials"));
    assert_eq!(steps(false), count("rates"));
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "capacity_step")
            .all(|e| e.get("passed").is_some() && e.get("failed").is_some())
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(last["complete"], true);
    assert_eq!(last["records"].as_u64().unwrap() as usize, count("trials"));
    assert_eq!(all_verified, out.status.code() == Some(0), "{json}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(saved, json);
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("capacity over pipeline within p99<=50ms:"),
        "{summary}"
    );
    assert!(servers_under(tmp.path()).is_empty(), "every server stopped");
}

/// One search's JSON: an answer with its interval and verification, or none found (this
/// VM's noise can leave every rate undecided). True when the answer was verified.
fn check_search(json: &Value) -> bool {
    let peak = json["closed_loop_peak"].as_f64().unwrap();
    assert!(peak > 100.0, "{json}");
    let answer = &json["answer"];
    let rates = json["rates"].as_array().unwrap();
    let trials = json["trials"].as_array().unwrap();
    assert!(trials.iter().all(|t| t["judged"].is_string()));
    assert!(
        rates.iter().all(|r| r["trials"].as_u64().unwrap() >= 2),
        "{json}"
    );
    let Some(rate) = answer["rate"].as_f64() else {
        assert_eq!(answer["none"], "nothing passes", "{json}");
        return false;
    };
    let interval: Vec<f64> = answer["interval"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(interval[0], rate);
    assert!(interval[1] > rate, "{json}");
    let verdict = |r: f64| {
        rates
            .iter()
            .find(|x| (x["rate"].as_f64().unwrap() - r).abs() < 1e-6)
            .map(|x| x["verdict"].as_str().unwrap().to_string())
    };
    // r* passed and the interval's top failed, each after at least two trials.
    assert_eq!(verdict(rate).as_deref(), Some("pass"), "{json}");
    assert_eq!(verdict(interval[1]).as_deref(), Some("fail"), "{json}");
    // The verification ran: 0.9 r* and 1.1 r* are the last two rates decided.
    let n = rates.len();
    let last: Vec<&Value> = rates[n - 2..].iter().collect();
    assert!((last[0]["rate"].as_f64().unwrap() - 0.9 * rate).abs() < 1e-6);
    assert!((last[1]["rate"].as_f64().unwrap() - 1.1 * rate).abs() < 1e-6);
    assert!(last.iter().all(|r| r["stage"] == "verify"), "{json}");
    let verified = answer["verified"].as_bool().unwrap();
    if !verified {
        assert!(
            answer["not_verified_because"]
                .as_str()
                .unwrap()
                .contains("r*")
        );
    }
    // After the search, one headroom trial at each of r*, 0.9, 0.75 and 0.5 r*.
    assert!(trials.len() >= 2 * n + 4);
    let headroom: Vec<f64> = trials
        .iter()
        .filter(|t| t["stage"] == "headroom")
        .map(|t| t["rate"].as_f64().unwrap() / rate)
        .collect();
    assert_eq!(headroom.len(), 4, "{json}");
    for (got, want) in headroom.iter().zip([1.0, 0.9, 0.75, 0.5]) {
        assert!((got - want).abs() < 1e-9, "{headroom:?}");
    }
    verified
}
