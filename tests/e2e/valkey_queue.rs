//! The lab's Valkey queue (`--queue valkey://HOST:PORT/NAME`) on a real valkey-server of
//! our own build, started here with an append-only file: two runners share it and run
//! each task once while the queue server is killed and started again; a runner killed
//! mid-task has its task taken back after its lease and run again once; a task past its
//! deliveries is dead-lettered; hostile entries fail with why and execute nothing.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bench_core::client::{Client, Value as Reply};
use serde_json::Value;

use crate::queue::{queue_add, state_of};
use crate::util::{
    heavy, ports, run, server_path, servers_under, signal, stderr, wait_until, wait_with_limit,
    xtask,
};

/// The queue server: a valkey-server of our build, persisting every write
/// (`appendfsync always`) in a directory of the test's, so it can be killed and started
/// again with its data. Killed when dropped.
struct QueueServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl QueueServer {
    fn start(dir: &Path, port: u16) -> QueueServer {
        let mut server = QueueServer {
            child: Self::spawn(dir, port),
            port,
            dir: dir.to_path_buf(),
        };
        server.wait_ready();
        server
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        #[allow(clippy::disallowed_methods)] // the user's queue server, not one of ours
        Command::new(server_path())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_ready(&mut self) {
        let addr = self.addr();
        assert!(
            wait_until(Duration::from_secs(20), || {
                Client::connect(addr, None, Duration::from_secs(1))
                    .and_then(|mut c| c.call(&["PING"]))
                    .is_ok()
            }),
            "the queue server on {addr} never answered"
        );
    }

    /// SIGKILL (no shutdown save: only what the append-only file has), then the same
    /// server on the same port and data after `down`.
    fn restart(&mut self, down: Duration) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::thread::sleep(down);
        self.child = Self::spawn(&self.dir, self.port);
        self.wait_ready();
    }

    fn client(&self) -> Client {
        Client::connect(self.addr(), None, Duration::from_secs(5)).unwrap()
    }
}

impl Drop for QueueServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `queue list --json`'s tasks, or `None` while the queue server is down.
fn try_list(url: &str) -> Option<Vec<Value>> {
    let out = run(&["queue", "--queue", url, "list", "--json"], None);
    if !out.status.success() {
        return None;
    }
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(listed["tasks"].as_array().unwrap().clone())
}

fn list(url: &str) -> Vec<Value> {
    try_list(url).expect("queue list")
}

/// `runner --queue URL ARGS`, its stderr in `log`.
fn runner(tmp: &Path, url: &str, log: &Path, args: &[&str]) -> Child {
    let mut all = vec!["runner", "--queue", url, "--poll-seconds", "0.2"];
    all.extend_from_slice(args);
    xtask(&all, Some(tmp))
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// What a writer of the queue server could add by hand: a stream entry naming `id` and a
/// pending task hash holding `doc` for it.
fn queue_by_hand(client: &mut Client, id: &str, doc: &str) {
    let Reply::Bulk(Some(entry)) = client
        .call(&["XADD", "{lab}:stream", "*", "id", id])
        .unwrap()
    else {
        panic!("XADD gives an id")
    };
    let entry = String::from_utf8(entry).unwrap();
    let hash = format!("{{lab}}:task:{id}");
    client
        .call(&[
            "HSET",
            &hash,
            "doc",
            doc,
            "state",
            "pending",
            "deliveries",
            "0",
            "entry",
            &entry,
        ])
        .unwrap();
}

/// Every string in a reply, in order.
fn texts(reply: &Reply) -> Vec<String> {
    match reply {
        Reply::Bulk(Some(b)) => vec![String::from_utf8_lossy(b).into_owned()],
        Reply::Simple(s) => vec![s.clone()],
        Reply::Array(Some(items)) => items.iter().flat_map(texts).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn two_runners_share_a_valkey_queue_through_a_restart_of_its_server_and_run_each_task_once() {
    let _heavy = heavy();
    let (tmp, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut server = QueueServer::start(data.path(), ports(1));
    let url = format!("valkey://127.0.0.1:{}/lab", server.port);

    // A URL that is not a queue is refused, the part named, exit 2.
    for (bad, says) in [
        (
            format!("valkey://127.0.0.1:{}/a/b", server.port),
            "queue name",
        ),
        (
            "redis://127.0.0.1:6379/lab".to_string(),
            "redis:// is not a queue",
        ),
        ("valkey://127.0.0.1:0/lab".to_string(), "port \"0\""),
        (
            "valkey://u:secret@127.0.0.1:1/lab".to_string(),
            "credentials",
        ),
    ] {
        let out = run(&["queue", "--queue", &bad, "list"], None);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{bad}: {}", stderr(&out));
    }

    let results = tmp.path().join("results");
    let r = results.to_str().unwrap();
    let port = ports(16).to_string();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.extend(queue_add(
            &url,
            "bench",
            &["--suite", "mem", "--quick", "--base-port", &port],
        ));
    }
    let listed = list(&url);
    assert_eq!(listed.len(), 4);
    assert!(
        listed.iter().all(|t| t["state"] == "pending"),
        "{listed:#?}"
    );

    let logs = [tmp.path().join("a.log"), tmp.path().join("b.log")];
    let mut runners: Vec<Child> = logs
        .iter()
        .map(|log| runner(tmp.path(), &url, log, &["--once", "--results", r]))
        .collect();

    // Once a task is done and another is running, with its live status published, the
    // queue server dies and comes back.
    let mut status_seen = None;
    assert!(
        wait_until(Duration::from_secs(240), || {
            let Some(tasks) = try_list(&url) else {
                return false;
            };
            for t in tasks.iter().filter(|t| t["state"] == "running") {
                if t["status"]["total"].as_u64().unwrap_or(0) > 0 {
                    status_seen = Some(t["status"].clone());
                }
            }
            tasks.iter().any(|t| t["state"] == "done")
                && tasks.iter().any(|t| t["state"] == "running")
                && status_seen.is_some()
        }),
        "never one task done and one running with its status: {:#?}",
        try_list(&url)
    );
    let status = status_seen.unwrap();
    assert!(
        status["step"].as_str().unwrap().starts_with("case "),
        "{status:#}"
    );
    server.restart(Duration::from_secs(2));

    for (runner, log) in runners.iter_mut().zip(&logs) {
        let exit = wait_with_limit(runner, Duration::from_secs(400));
        let text = fs::read_to_string(log).unwrap();
        assert!(exit.success(), "{exit:?}: {text}");
    }
    let both: String = logs
        .iter()
        .map(|l| fs::read_to_string(l).unwrap())
        .collect();
    assert!(both.contains("unreachable"), "{both}");
    assert!(both.contains("reachable again"), "{both}");
    let tasks = list(&url);
    for id in &ids {
        let task = state_of(&tasks, id);
        assert_eq!(task["state"], "done", "{task:#}");
        // Run once: one delivery, one start in the logs, one results directory.
        assert_eq!(task["task"]["deliveries"], 1, "{task:#}");
        assert_eq!(both.matches(&format!("{id}: bench")).count(), 1, "{both}");
        assert!(!results.join(format!("{id}.2")).exists());
        let dir = results.join(id);
        assert!(dir.join("task.json").is_file());
        assert!(
            fs::read_to_string(dir.join("results.jsonl"))
                .unwrap()
                .lines()
                .count()
                >= 5
        );
        // What every client of the queue reads: its results' place and summary.
        assert_eq!(task["task"]["results"].as_str(), dir.to_str());
        // Its summary, readable from the queue (`show`; `list` leaves summaries out),
        // reproduces the task, not the runner.
        let out = run(&["queue", "--queue", &url, "--json", "show", id], None);
        assert!(out.status.success(), "{}", stderr(&out));
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        let summary = shown["summary"].as_str().unwrap_or("");
        assert!(
            summary.contains("reproduce: `cargo xtask bench --suite mem --quick --base-port"),
            "{shown:#}"
        );
    }
    // Both runners took work, and left the consumer group.
    assert!(
        logs.iter()
            .all(|l| fs::read_to_string(l).unwrap().contains(": bench ")),
        "{both}"
    );
    let mut client = server.client();
    let consumers = client
        .call(&["XINFO", "CONSUMERS", "{lab}:stream", "runners"])
        .unwrap();
    assert_eq!(consumers, Reply::Array(Some(vec![])), "{consumers:?}");
    assert!(servers_under(tmp.path()).is_empty());
}

#[test]
fn a_dead_runners_task_is_taken_back_after_its_lease_dead_lettered_past_its_deliveries_and_hostile_entries_run_nothing()
 {
    let _heavy = heavy();
    let (tmp, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = QueueServer::start(data.path(), ports(1));
    let url = format!("valkey://127.0.0.1:{}/lab", server.port);
    let results = tmp.path().join("results");
    let r = results.to_str().unwrap();
    let port = ports(8).to_string();
    let mem = ["--suite", "mem", "--quick", "--base-port", &port];
    let lease = ["--lease-seconds", "3", "--results", r];

    // Killed mid-task: its servers die with it, its entry goes idle, and after the lease
    // the next runner takes the task back and runs it once.
    let kill_mid_task = |id: &str, log: &str| {
        let mut first = runner(tmp.path(), &url, &tmp.path().join(log), &lease);
        assert!(
            wait_until(Duration::from_secs(60), || {
                state_of(&list(&url), id)["state"] == "running"
                    && !servers_under(tmp.path()).is_empty()
            }),
            "the runner never started {id}"
        );
        signal(&first, libc::SIGKILL);
        wait_with_limit(&mut first, Duration::from_secs(10));
        assert!(
            wait_until(Duration::from_secs(15), || servers_under(tmp.path())
                .is_empty()),
            "servers outlived their SIGKILLed runner"
        );
    };
    let once = |extra: &[&str]| {
        let mut all = vec!["runner", "--queue", &url, "--once", "--poll-seconds", "0.2"];
        all.extend_from_slice(&lease);
        all.extend_from_slice(extra);
        let out = run(&all, Some(tmp.path()));
        let log = stderr(&out);
        assert!(out.status.success(), "{log}");
        log
    };

    let first = queue_add(&url, "bench", &mem).remove(0);
    kill_mid_task(&first, "killed-1.log");
    let log = once(&[]);
    assert!(log.contains(&format!("{first}: back to pending")), "{log}");
    assert_eq!(log.matches(&format!("{first}: bench")).count(), 1, "{log}");
    let task = state_of(&list(&url), &first).clone();
    assert_eq!(task["state"], "done", "{task:#}");
    assert_eq!(task["task"]["deliveries"], 2, "{task:#}");

    // Past its deliveries: failed, with why, and in the dead-letter stream.
    let second = queue_add(&url, "bench", &mem).remove(0);
    kill_mid_task(&second, "killed-2.log");

    // What a hostile writer of the queue server could add: an entry naming no task id,
    // and a task whose flags carry shell metacharacters.
    let marker = tmp.path().join("executed");
    let m = marker.to_str().unwrap();
    let mut client = server.client();
    client
        .call(&["XADD", "{lab}:stream", "*", "id", &format!("$(touch {m})")])
        .unwrap();
    let doc = serde_json::json!({
        "version": 1,
        "id": "hostile-1",
        "kind": "bench",
        "args": ["--commands", format!("GET;touch {m}")],
        "created": format!("`touch {m}`"),
    })
    .to_string();
    queue_by_hand(&mut client, "hostile-1", &doc);
    client
        .call(&["ZADD", "{lab}:ids", "1", "hostile-1"])
        .unwrap();
    // Sizes no task of ours has, read by nobody: an entry whose id field is 2 MiB, a task
    // whose document is, a failed task whose error is, an id member of 1000 bytes and one
    // whose task is gone.
    let huge = "a".repeat(2 << 20);
    client
        .call(&["XADD", "{lab}:stream", "*", "id", &huge])
        .unwrap();
    queue_by_hand(&mut client, "huge-1", &huge);
    let big = serde_json::json!({
        "version": 1, "id": "big-1", "kind": "bench", "args": [], "created": "2026-12-06T00:00:00Z",
    })
    .to_string();
    client
        .call(&[
            "HSET",
            "{lab}:task:big-1",
            "doc",
            &big,
            "state",
            "failed",
            "error",
            &huge,
        ])
        .unwrap();
    for id in ["huge-1", "big-1", "gone-1", &"b".repeat(1000)] {
        client.call(&["ZADD", "{lab}:ids", "2", id]).unwrap();
    }

    let log = once(&["--max-deliveries", "1"]);
    assert!(log.contains(&format!("{second}: back to pending")), "{log}");
    assert!(!log.contains(&format!("{second}: bench")), "{log}");
    let tasks = list(&url);
    let task = state_of(&tasks, &second);
    assert_eq!(task["state"], "failed", "{task:#}");
    assert!(
        task["task"]["error"]
            .as_str()
            .unwrap()
            .contains("delivered 1 times"),
        "{task:#}"
    );
    let hostile = state_of(&tasks, "hostile-1");
    assert_eq!(hostile["state"], "failed", "{hostile:#}");
    assert!(
        hostile["task"]["error"]
            .as_str()
            .unwrap()
            .contains("--commands"),
        "{hostile:#}"
    );
    let dead = texts(&client.call(&["XRANGE", "{lab}:dead", "-", "+"]).unwrap()).join(" ");
    assert!(dead.contains(&second), "{dead}");
    assert!(dead.contains("delivered 1 times"), "{dead}");
    assert!(
        dead.contains("1-100 letters"),
        "the entry naming no id: {dead}"
    );
    assert!(!marker.exists(), "a hostile entry executed something");
    assert!(servers_under(tmp.path()).is_empty());
    // The 2 MiB id was read as its first 256 bytes: no task id, dead-lettered.
    assert!(
        dead.contains(&"a".repeat(256)),
        "the huge entry: {dead:.300}"
    );
    assert!(!dead.contains(&"a".repeat(257)), "read whole: {dead:.300}");
    // The 2 MiB document never reached the runner: failed, on the server, by its size.
    let huge_task = state_of(&tasks, "huge-1");
    assert_eq!(huge_task["state"], "failed", "{huge_task:.300}");
    assert!(
        dead.contains("not a task document: over 1048576 bytes"),
        "{dead:.300}"
    );
    // A field is listed cut at 64 KiB.
    let error = state_of(&tasks, "big-1")["task"]["error"]
        .as_str()
        .unwrap()
        .len();
    assert_eq!(error, 64 * 1024);
    // Listing trimmed the ids that name no task of ours.
    for id in ["gone-1".to_string(), "b".repeat(1000)] {
        let score = client.call(&["ZSCORE", "{lab}:ids", &id]).unwrap();
        assert_eq!(score, Reply::Bulk(None), "{id:.20} still in the ids");
    }
}

/// A queue server frozen (SIGSTOP) for 3 s under a 4 s lease: the runner cannot renew its
/// hold, so its watchdog fences the task (servers killed) — and then the runner files the
/// task back and goes on, instead of stopping the whole process (it exited 130 before);
/// the task is run again and done once.
#[test]
fn a_runner_fenced_by_a_frozen_queue_gives_its_task_back_and_goes_on() {
    let _heavy = heavy();
    let (tmp, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = QueueServer::start(data.path(), ports(1));
    let url = format!("valkey://127.0.0.1:{}/fence", server.port);
    let results = tmp.path().join("results");
    let port = ports(8).to_string();
    let id = queue_add(&url, "bench", &["--quick", "--base-port", &port]).remove(0);
    let log = tmp.path().join("runner.log");
    let mut runner = runner(
        tmp.path(),
        &url,
        &log,
        &[
            "--once",
            "--lease-seconds",
            "4",
            "--results",
            results.to_str().unwrap(),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(120), || {
            try_list(&url).is_some_and(|tasks| {
                tasks
                    .iter()
                    .any(|t| t["state"] == "running" && t["status"]["total"].as_u64() > Some(0))
            })
        }),
        "the task never ran: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    signal(&server.child, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    signal(&server.child, libc::SIGCONT);
    let exit = wait_with_limit(&mut runner, Duration::from_secs(400));
    let text = fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{exit:?}: {text}");
    assert!(text.contains("stopping task"), "{text}");
    assert!(text.contains("back to the queue"), "{text}");
    let tasks = list(&url);
    let task = state_of(&tasks, &id);
    assert_eq!(task["state"], "done", "{task:#}");
    // Given back, its fenced delivery counted (a task that starves its own heartbeat ends
    // dead-lettered, not run forever); the second run wrote beside the first's partial
    // results.
    assert_eq!(task["task"]["deliveries"], 2, "{task:#}");
    let second = results.join(format!("{id}.2"));
    assert_eq!(
        task["task"]["results"].as_str(),
        second.to_str(),
        "{task:#}"
    );
    assert!(results.join(&id).is_dir() && second.join("results.jsonl").is_file());
    assert!(servers_under(tmp.path()).is_empty());
}
