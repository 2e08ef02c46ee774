//! The lab's terminal UI in a real terminal: `xtask tui` inside tmux, driven with
//! send-keys and read with capture-pane. A campaign is made in the Create form, a task
//! cancelled in the Queue tab, a running task watched live in the Status tab, finished
//! ones read in Results; on `q` and on a panic the terminal comes back as it was (no
//! alternate screen, canonical mode and echo on).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::queue::{queue_add, queue_list, state_of};
use crate::util::{
    build_json, cannot_run, heavy, ports, run, stderr, wait_until, xtask, xtask_bin,
};

/// A tmux server of the test's own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
    tmp: PathBuf,
}

impl Tmux {
    /// A 150×45 session running `command` under `sh -c`, then `stty -a` into
    /// `tmp/stty.txt` (what the terminal was left as), the pane kept when it ends.
    fn start(tmp: &Path, env: &[(&str, &str)], command: &str) -> Option<Tmux> {
        #[allow(clippy::disallowed_methods)] // is the terminal there?
        let present = Command::new("tmux").arg("-V").output().is_ok();
        if !present {
            cannot_run("tmux", "tmux is not installed (apt-get install tmux)");
            return None;
        }
        let socket = format!("vb-tui-{}-{}", std::process::id(), ports(1));
        let conf = tmp.join("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\nset -g status off\n").unwrap();
        let mut vars = String::new();
        for (k, v) in env {
            vars.push_str(&format!("{k}={v} "));
        }
        let stty = tmp.join("stty.txt");
        let script = format!("env {vars}{command}; stty -a > {}", stty.display());
        let tmux = Tmux {
            socket,
            tmp: tmp.to_path_buf(),
        };
        let out = tmux.tmux(&[
            "-f",
            conf.to_str().unwrap(),
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            "150",
            "-y",
            "45",
            &script,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        Some(tmux)
    }

    fn tmux(&self, args: &[&str]) -> Output {
        #[allow(clippy::disallowed_methods)] // the terminal the user would have
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "tui"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            let out = self.tmux(&["send-keys", "-t", "tui", key]);
            assert!(out.status.success(), "{key}: {}", stderr(&out));
            // One key per frame: the TUI reads a key, then draws.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", "tui", "-l", text]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    }

    fn wait_for(&self, text: &str) -> String {
        let mut last = String::new();
        let seen = wait_until(Duration::from_secs(30), || {
            last = self.screen();
            last.contains(text)
        });
        assert!(seen, "never saw {text:?} on the screen:\n{last}");
        last
    }

    /// `#{pane_dead} #{alternate_on} #{pane_dead_status}` once the TUI's shell ended.
    fn ended(&self) -> (String, String) {
        let mut state = String::new();
        let dead = wait_until(Duration::from_secs(20), || {
            let out = self.tmux(&[
                "display-message",
                "-p",
                "-t",
                "tui",
                "#{pane_dead} #{alternate_on}",
            ]);
            state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            state.starts_with('1')
        });
        assert!(dead, "the pane never ended: {state}\n{}", self.screen());
        let stty = std::fs::read_to_string(self.tmp.join("stty.txt")).unwrap_or_default();
        (state, stty)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The terminal as the shell had it: not raw (canonical mode, echo), main screen.
fn assert_restored(state: &str, stty: &str, screen: &str) {
    assert!(
        state.ends_with(" 0"),
        "still on the alternate screen: {state}\n{screen}"
    );
    let flags: Vec<&str> = stty.split_whitespace().collect();
    assert!(
        flags.contains(&"icanon") && flags.contains(&"echo"),
        "the terminal was left raw:\n{stty}"
    );
}

#[test]
fn the_tui_makes_a_campaign_cancels_a_task_shows_one_running_and_restores_the_terminal() {
    let _heavy = heavy();
    // Valkey built before the runner below needs it (a cold cache builds it first).
    build_json();
    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp.path().join("queue");
    let results = tmp.path().join("results");
    let (q, r) = (queue.to_str().unwrap(), results.to_str().unwrap());
    let t = tmp.path().to_str().unwrap();
    let command = format!("{} tui --queue {q}", xtask_bin().display());
    let Some(tui) = Tmux::start(
        tmp.path(),
        &[("VALKEY_BENCH_SCRATCH", t), ("TMPDIR", t)],
        &command,
    ) else {
        return;
    };
    tui.wait_for("1 Status");
    tui.wait_for("No task is running; 0 pending.");

    // Create: 2 commands × 2 pipelines, quick; the count shows before anything is queued.
    tui.keys(&["4"]);
    tui.wait_for(" Create ");
    tui.keys(&["Down", "Down", "Down"]);
    tui.type_text("PING,SET");
    tui.keys(&["Down", "Down"]);
    tui.type_text("1,16");
    // clients, io-threads, keyspaces, then quick.
    tui.keys(&["Down", "Down", "Down", "Down", "Right"]);
    tui.wait_for("[ queue 4 tasks: 2 --commands × 2 --pipelines ]");
    tui.wait_for("queue add bench --commands PING,SET --pipelines 1,16 --quick");
    assert!(queue_list(&queue).is_empty(), "queued before the yes");
    // A list the suite refuses is named, and nothing can be queued.
    tui.keys(&["Up", "Up", "Up", "Up"]);
    tui.type_text(",0");
    tui.wait_for("[ nothing to queue yet ]");
    tui.wait_for("--pipelines");
    tui.keys(&["BSpace", "BSpace"]);
    tui.wait_for("[ queue 4 tasks");
    for _ in 0..9 {
        tui.keys(&["Down"]);
    }
    tui.keys(&["Enter"]);
    tui.wait_for("Confirm");
    tui.keys(&["y"]);
    tui.wait_for("queued 4 tasks (2 --commands × 2 --pipelines)");
    let tasks = queue_list(&queue);
    assert_eq!(tasks.len(), 4, "{tasks:#?}");
    assert!(
        tasks
            .iter()
            .all(|t| t["task"]["args"].as_array().unwrap().len() == 5),
        "{tasks:#?}"
    );

    // Queue: cancel the first, after a y.
    // Escape alone first: ESC and a key read together are Alt and that key.
    tui.keys(&["Escape"]);
    tui.wait_for("No task is running");
    tui.keys(&["2"]);
    tui.wait_for("Queue: 4 task(s)");
    tui.keys(&["c"]);
    tui.wait_for("Confirm");
    tui.keys(&["y"]);
    let first = tasks[0]["id"].as_str().unwrap();
    tui.wait_for(&format!("{first}: cancelled"));
    assert_eq!(state_of(&queue_list(&queue), first)["state"], "failed");
    // The others are not ours to keep: removed from the CLI, a mem task queued instead.
    for t in &tasks[1..] {
        let out = run(
            &["queue", "--queue", q, "remove", t["id"].as_str().unwrap()],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let port = ports(8).to_string();
    let mem = queue_add(
        &queue,
        "bench",
        &["--suite", "mem", "--quick", "--base-port", &port],
    )
    .remove(0);

    // Status: the runner's task live: its step, its records of how many, a chart.
    tui.keys(&["1"]);
    let mut runner = xtask(
        &["runner", "--queue", q, "--once", "--results", r],
        Some(tmp.path()),
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    tui.wait_for(&mem);
    let live = tui.wait_for(" of 10 cases");
    assert!(live.contains("step: case "), "{live}");
    assert!(live.contains(" s ago"), "a heartbeat was read: {live}");
    assert!(!live.contains("heartbeat never"), "{live}");
    std::fs::write(tmp.path().join("status-screen.txt"), &live).unwrap();
    println!("the Status tab, mid-task:\n{live}");
    assert!(runner.wait().unwrap().success());

    // Results: the finished task, its summary read from its directory.
    tui.keys(&["3"]);
    let done = tui.wait_for("Results: 1 done");
    assert!(done.contains(&mem), "{done}");
    // The summary: a line only summary.md has.
    tui.wait_for("- suite: mem");

    tui.keys(&["q"]);
    let (state, stty) = tui.ended();
    assert_restored(&state, &stty, &tui.screen());
}

#[test]
fn a_panic_in_the_tui_restores_the_terminal_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("queue");
    let command = format!("{} tui --queue {}", xtask_bin().display(), q.display());
    let Some(tui) = Tmux::start(tmp.path(), &[("VALKEY_BENCH_TUI_PANIC", "1")], &command) else {
        return;
    };
    let (state, stty) = tui.ended();
    let screen = tui.screen();
    assert_restored(&state, &stty, &screen);
    assert!(
        screen.contains("VALKEY_BENCH_TUI_PANIC is set"),
        "the panic message is on the restored screen:\n{screen}"
    );
}

#[test]
fn sigterm_stops_the_tui_and_restores_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("queue");
    let command = format!("{} tui --queue {}", xtask_bin().display(), q.display());
    let Some(tui) = Tmux::start(tmp.path(), &[], &command) else {
        return;
    };
    tui.wait_for("1 Status");
    // The pane runs `sh -c "...; stty -a > ..."`: the TUI is that shell's child.
    let out = tui.tmux(&["display-message", "-p", "-t", "tui", "#{pane_pid}"]);
    let shell: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let children =
        std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
    let pid: i32 = children
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no TUI under the pane's shell {shell}"))
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the TUI this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (state, stty) = tui.ended();
    assert_restored(&state, &stty, &tui.screen());
}
