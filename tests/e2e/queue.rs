//! The lab's directory queue through `cargo xtask queue` and `runner`: tasks validated
//! before they are queued, run once with their results and document side by side, bad
//! and hostile task files failed with why and nothing executed, and a runner killed with
//! SIGKILL mid-task whose task another runner runs again, once, with no server left.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    heavy, ports, run, servers_under, signal, stderr, wait_until, wait_with_limit, xtask,
};

/// `queue list --json`'s tasks; `queue` a directory or a URL.
pub fn queue_list(queue: impl AsRef<OsStr>) -> Vec<Value> {
    let out = run(
        &[
            "queue",
            "--queue",
            queue.as_ref().to_str().unwrap(),
            "list",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    listed["tasks"].as_array().unwrap().clone()
}

/// Queues `bench ARGS` and returns the task's id.
fn queue_bench(queue: &Path, args: &[&str]) -> String {
    let ids = queue_add(queue, "bench", args);
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

pub fn state_of<'a>(tasks: &'a [Value], id: &str) -> &'a Value {
    tasks
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {tasks:#?}"))
}

/// Starts `runner ARGS` on `queue` (scratch in `tmp`) and returns once it is mid-task:
/// holding task `id` with its servers up.
fn runner_mid_task(tmp: &Path, queue: &Path, id: &str, args: &[&str]) -> std::process::Child {
    let mut all = vec!["runner", "--queue", queue.to_str().unwrap()];
    all.extend_from_slice(args);
    let runner = xtask(&all, Some(tmp))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || {
            state_of(&queue_list(queue), id)["state"] == "running" && !servers_under(tmp).is_empty()
        }),
        "the runner never started the task"
    );
    runner
}

#[test]
fn queued_tasks_run_once_and_bad_or_hostile_ones_fail_with_why_executing_nothing() {
    let _heavy = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let (queue, results) = (tmp.path().join("queue"), tmp.path().join("results"));
    let q = queue.to_str().unwrap();

    // Refused before anything is queued, the flag named, exit 2.
    for (args, says) in [
        (vec!["--quikc"], "a similar argument exists: '--quick'"),
        (vec!["--out", "/etc"], "--out is not taken in a task"),
        (
            vec!["--valkey-src=/"],
            "--valkey-src is not taken in a task",
        ),
        (vec!["--topology", "cluster:0x1"], "--topology"),
    ] {
        let mut all = vec!["queue", "--queue", q, "add", "bench"];
        all.extend_from_slice(&args);
        let out = run(&all, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert!(queue_list(&queue).is_empty());

    let port = ports(8).to_string();
    let good = queue_bench(&queue, &["--suite", "mem", "--quick", "--base-port", &port]);
    // What a hostile writer of a shared queue could leave: a file that is no JSON, and
    // documents with shell metacharacters in every string field.
    let mark = tmp.path().join("pwned");
    let touch = format!(
        "$(touch {}); `touch {0}` | touch {0} && touch {0}",
        mark.display()
    );
    let pending = queue.join("pending");
    fs::write(pending.join("0-poison.json"), b"{\"version\": 1, \"id\": ").unwrap();
    let hostile = |id: &str, args: Vec<String>| {
        serde_json::json!({
            "version": 1,
            "id": id,
            "kind": "bench",
            "args": args,
            "created": touch,
        })
    };
    // One document per flag, so each reaches its own check.
    let fields: [(&str, Vec<String>); 4] = [
        ("1-suite", vec!["--suite".into(), touch.clone()]),
        (
            "1-config",
            vec!["--server-config".into(), format!("dir={touch}")],
        ),
        ("1-version", vec!["--valkey-version".into(), touch.clone()]),
        ("1-cflags", vec!["--cflags".into(), touch.clone()]),
    ];
    for (id, args) in &fields {
        let mut args = args.clone();
        args.extend(["--base-port".to_string(), port.clone()]);
        fs::write(
            pending.join(format!("{id}.json")),
            serde_json::to_vec(&hostile(id, args)).unwrap(),
        )
        .unwrap();
    }
    let bad_id = format!("2-{touch}");
    fs::write(
        pending.join("2-hostile-id.json"),
        serde_json::to_vec(&hostile(&bad_id, vec![])).unwrap(),
    )
    .unwrap();

    let out = run(
        &[
            "runner",
            "--queue",
            q,
            "--once",
            "--results",
            results.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!mark.exists(), "a task's field was executed");
    assert!(
        servers_under(tmp.path()).is_empty(),
        "a server outlived the runner"
    );

    let tasks = queue_list(&queue);
    let done = state_of(&tasks, &good);
    assert_eq!(done["state"], "done", "{done:#}");
    assert_eq!(done["task"]["deliveries"], 1);
    let dir = Path::new(done["task"]["results"].as_str().unwrap());
    assert_eq!(dir, results.join(&good));
    let records = fs::read_to_string(dir.join("results.jsonl")).unwrap();
    assert!(records.lines().count() >= 5, "{records}");
    let beside: Value = serde_json::from_slice(&fs::read(dir.join("task.json")).unwrap()).unwrap();
    assert_eq!(beside["id"], good.as_str());

    let poison = state_of(&tasks, "0-poison");
    assert_eq!(poison["state"], "failed");
    assert!(
        poison["invalid"]
            .as_str()
            .unwrap()
            .starts_with("not a task document"),
        "{poison:#}"
    );
    for (id, says) in [
        ("1-suite", "--suite"),
        ("1-config", "dir"),
        ("1-version", "--valkey-version"),
        ("1-cflags", "--cflags is not taken in a task"),
    ] {
        let refused = state_of(&tasks, id);
        assert_eq!(refused["state"], "failed", "{refused:#}");
        // Refused when read (a flag no task may carry) or when validated.
        let why = refused["task"]["error"]
            .as_str()
            .or(refused["invalid"].as_str())
            .unwrap_or_else(|| panic!("{id}: no reason: {refused:#}"));
        assert!(why.contains(says), "{id}: {why}");
    }
    let bad = state_of(&tasks, "2-hostile-id");
    assert_eq!(bad["state"], "failed");
    assert!(
        bad["invalid"].as_str().unwrap().starts_with("id "),
        "{bad:#}"
    );
    // Nothing but the good task's run directory was written under results.
    let written: Vec<_> = fs::read_dir(&results).unwrap().flatten().collect();
    assert_eq!(written.len(), 1, "{written:?}");
}

#[test]
fn a_runner_killed_mid_task_has_its_task_run_again_exactly_once_by_another() {
    let _heavy = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let (queue, results) = (tmp.path().join("queue"), tmp.path().join("results"));
    let (q, r) = (queue.to_str().unwrap(), results.to_str().unwrap());
    let port = ports(8).to_string();
    let id = queue_bench(&queue, &["--suite", "mem", "--quick", "--base-port", &port]);

    // Mid-task: it holds the task and its servers are up.
    let mut first = runner_mid_task(
        tmp.path(),
        &queue,
        &id,
        &["--once", "--results", r, "--lease-seconds", "2"],
    );
    signal(&first, libc::SIGKILL);
    wait_with_limit(&mut first, Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(15), || servers_under(tmp.path())
            .is_empty()),
        "servers outlived their SIGKILLed runner: {:?}",
        servers_under(tmp.path())
    );
    // Its lock died with it: the next runner takes the task back.
    let second = run(
        &["runner", "--queue", q, "--once", "--results", r],
        Some(tmp.path()),
    );
    let log = stderr(&second);
    assert!(second.status.success(), "{log}");
    assert!(log.contains(&format!("{id}: back to pending")), "{log}");
    assert_eq!(
        log.matches(&format!("{id}: bench")).count(),
        1,
        "run once: {log}"
    );

    let tasks = queue_list(&queue);
    let task = state_of(&tasks, &id);
    assert_eq!(task["state"], "done", "{task:#}");
    assert_eq!(task["task"]["deliveries"], 2);
    // The killed delivery's directory is kept apart; the second ran to its end.
    let again = results.join(format!("{id}.2"));
    assert_eq!(task["task"]["results"].as_str(), again.to_str());
    assert!(
        fs::read_to_string(again.join("results.jsonl"))
            .unwrap()
            .lines()
            .count()
            >= 5
    );
    assert!(!results.join(&id).join("task.json").exists());
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn an_interrupted_runner_puts_its_task_back_and_stops_its_servers() {
    let _heavy = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp.path().join("queue");
    let r = tmp.path().join("results");
    let port = ports(8).to_string();
    let id = queue_bench(&queue, &["--suite", "mem", "--quick", "--base-port", &port]);
    let results = r.to_str().unwrap();
    let mut runner = runner_mid_task(tmp.path(), &queue, &id, &["--results", results]);
    signal(&runner, libc::SIGTERM);
    let status = wait_with_limit(&mut runner, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(servers_under(tmp.path()).is_empty());
    let tasks = queue_list(&queue);
    let task = state_of(&tasks, &id);
    assert_eq!(task["state"], "pending", "{task:#}");
    assert_eq!(
        task["task"]["deliveries"], 0,
        "an interrupted delivery does not count"
    );
    // The runner left the queue: no runner directory remains.
    assert_eq!(fs::read_dir(queue.join("running")).unwrap().count(), 0);
}

/// Queues `KIND ARGS` and returns the ids it made.
pub fn queue_add(queue: impl AsRef<OsStr>, kind: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "queue",
        "--queue",
        queue.as_ref().to_str().unwrap(),
        "--json",
        "add",
        kind,
    ];
    all.extend_from_slice(args);
    let out = run(&all, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    added["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_campaign_a_compare_and_a_flame_graph_run_as_tasks_and_hostile_ones_do_not() {
    let _heavy = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let (queue, results) = (tmp.path().join("queue"), tmp.path().join("results"));
    let q = queue.to_str().unwrap();

    // Lists make one task per combination, each validated before any is queued.
    let refused = run(
        &[
            "queue",
            "--queue",
            q,
            "add",
            "bench",
            "--quick",
            "--pipelines",
            "1,16",
            "--clients",
            "0..2",
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--clients"),
        "{}",
        stderr(&refused)
    );
    let out = run(
        &[
            "queue",
            "--queue",
            q,
            "add",
            "bench",
            "--quick",
            "--commands",
            "PING,GET",
            "--pipelines",
            "1..16x4",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("queued 6 tasks (2 --commands × 3 --pipelines)"),
        "{said}"
    );
    for t in queue_list(&queue) {
        assert!(t["task"]["kind"] == "bench", "{t}");
        run(
            &["queue", "--queue", q, "remove", t["id"].as_str().unwrap()],
            None,
        );
    }
    assert!(queue_list(&queue).is_empty());
    // Checked when queued, too.
    let config = run(
        &[
            "queue",
            "--queue",
            q,
            "add",
            "flamegraph",
            "--command",
            "CONFIG SET protected-mode no",
        ],
        None,
    );
    assert_eq!(config.status.code(), Some(2), "{}", stderr(&config));
    assert!(
        stderr(&config).contains("CONFIG is not a data command"),
        "{}",
        stderr(&config)
    );
    assert!(queue_list(&queue).is_empty());

    let port = |n| ports(n).to_string();
    let campaign = queue_add(
        &queue,
        "bench",
        &[
            "--quick",
            "--commands",
            "PING",
            "--pipelines",
            "1,16",
            "--base-port",
            &port(8),
        ],
    );
    assert_eq!(campaign.len(), 2);
    let compare = queue_add(
        &queue,
        "compare",
        &[
            "--baseline",
            "8.1.1",
            "--candidate",
            "8.1.1",
            "--mode",
            "instructions",
            "--quick",
            "--cases",
            "GET/32B/P16",
            "--base-port",
            &port(8),
        ],
    );
    let flame = queue_add(
        &queue,
        "flamegraph",
        &[
            "--command",
            "GET",
            "--keyspace",
            "1000",
            "--warmup",
            "0.2",
            "--duration",
            "1",
            "--base-port",
            &port(8),
        ],
    );
    // Hostile compare and flamegraph documents: a path, shell metacharacters.
    let mark = tmp.path().join("pwned");
    let touch = format!("$(touch {}); `touch {0}`", mark.display());
    let pending = queue.join("pending");
    for (id, kind, args) in [
        (
            "1-candidate",
            "compare",
            vec!["--baseline", "8.1.1", "--candidate", touch.as_str()],
        ),
        (
            "1-path",
            "compare",
            vec!["--baseline", "8.1.1", "--candidate", "/tmp"],
        ),
        (
            "1-workload",
            "flamegraph",
            vec!["--workload", mark.to_str().unwrap()],
        ),
        ("1-diff", "flamegraph", vec!["--diff", touch.as_str()]),
        // Loads that would administer the server: open it to the network, make it a
        // replica of a host that is not ours, stop it.
        (
            "1-config",
            "flamegraph",
            vec![
                "--command",
                "CONFIG SET bind 0.0.0.0 protected-mode no",
                "--duration",
                "604800",
            ],
        ),
        (
            "1-replicaof",
            "flamegraph",
            vec!["--command", "REPLICAOF 127.0.0.99 6379"],
        ),
        (
            "1-shutdown",
            "flamegraph",
            vec!["--command", "shutdown NOSAVE"],
        ),
    ] {
        let doc = serde_json::json!({
            "version": 1, "id": id, "kind": kind, "args": args, "created": touch,
        });
        fs::write(
            pending.join(format!("{id}.json")),
            serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
    }

    let out = run(
        &[
            "runner",
            "--queue",
            q,
            "--once",
            "--results",
            results.to_str().unwrap(),
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!mark.exists(), "a task's field was executed");
    assert!(
        servers_under(tmp.path()).is_empty(),
        "a server outlived the runner"
    );

    let tasks = queue_list(&queue);
    for (id, pipeline) in campaign.iter().zip(["P1", "P16"]) {
        let t = state_of(&tasks, id);
        assert_eq!(t["state"], "done", "{t:#}");
        let records = fs::read_to_string(results.join(id).join("results.jsonl")).unwrap();
        let names: Vec<String> = records
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["case"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert!(!names.is_empty());
        assert!(
            names
                .iter()
                .all(|n| n.starts_with(&format!("PING/{pipeline}/"))),
            "{id}: {names:?}"
        );
    }
    let c = state_of(&tasks, &compare[0]);
    assert_eq!(c["state"], "done", "{c:#}");
    assert_eq!(c["task"]["verdict"], "no regression", "{c:#}");
    let dir = results.join(&compare[0]);
    for file in [
        "compare.md",
        "baseline/results.jsonl",
        "candidate/results.jsonl",
        "task.json",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    let f = state_of(&tasks, &flame[0]);
    assert_eq!(f["state"], "done", "{f:#}");
    let svg = fs::read_to_string(results.join(&flame[0]).join("flamegraph.svg")).unwrap();
    assert!(svg.contains("<svg"), "not an SVG");
    assert!(results.join(&flame[0]).join("task.json").is_file());

    for (id, says) in [
        ("1-candidate", "not a revision a task may name"),
        ("1-path", "a path"),
        ("1-workload", "a workload file is a path"),
        ("1-diff", "not a revision a task may name"),
        ("1-config", "CONFIG is not a data command"),
        ("1-replicaof", "REPLICAOF is not a data command"),
        ("1-shutdown", "SHUTDOWN is not a data command"),
    ] {
        let t = state_of(&tasks, id);
        assert_eq!(t["state"], "failed", "{t:#}");
        let why = t["task"]["error"].as_str().unwrap_or_default();
        assert!(why.contains(says), "{id}: {why}");
    }
}
