//! Helpers shared by the end-to-end tests: the xtask binary, the Valkey build, and a view
//! of which valkey-server processes a test started.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The release xtask binary, built once per test process (what `cargo xtask` runs).
pub fn xtask_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        #[allow(clippy::disallowed_methods)] // tests drive the binary from outside
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--release", "--package", "xtask"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building xtask failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        target.join("release").join("xtask")
    })
}

/// `xtask build --json` of the default pinned version (cached after the first build).
pub fn build_json() -> &'static Value {
    static BUILD: OnceLock<Value> = OnceLock::new();
    BUILD.get_or_init(|| {
        let out = xtask(&["build", "--json"], None).output().unwrap();
        assert!(
            out.status.success(),
            "xtask build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("build --json prints JSON")
    })
}

pub fn server_path() -> PathBuf {
    PathBuf::from(build_json()["server"].as_str().unwrap())
}

/// The default build, as its cache entry describes it (`build.json` beside `bin/`).
pub fn binaries() -> xtask::valkey::Binaries {
    let entry = server_path()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    serde_json::from_slice(&std::fs::read(entry.join("build.json")).unwrap()).unwrap()
}

/// An xtask command. With `tmp`, servers' directories go there (VALKEY_BENCH_SCRATCH, and
/// TMPDIR for everything else), which is how [`servers_under`] recognizes this test's
/// servers.
pub fn xtask(args: &[&str], tmp: Option<&Path>) -> Command {
    #[allow(clippy::disallowed_methods)] // tests drive the binary from outside
    let mut cmd = Command::new(xtask_bin());
    cmd.args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    cmd.env_remove("VALKEY_SRC");
    if let Some(tmp) = tmp {
        cmd.env("TMPDIR", tmp).env("VALKEY_BENCH_SCRATCH", tmp);
    }
    cmd
}

pub fn run(args: &[&str], tmp: Option<&Path>) -> Output {
    xtask(args, tmp).output().expect("running xtask")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Pids of live valkey-server processes whose working directory is under `dir`.
pub fn servers_under(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cwd) = fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let state = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        if cwd.starts_with(&dir) && comm.trim() == "valkey-server" && !zombie {
            pids.push(pid);
        }
    }
    pids
}

pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid as i32, 0) } == 0;
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    exists && !zombie
}

/// Waits until `check` holds, up to `limit`.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    check()
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits for `child`, killing it after `limit` (then the test fails).
pub fn wait_with_limit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("xtask did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A small suite file: `fields` replaces the matching lines of a compact base suite.
pub fn suite_file(dir: &Path, overrides: &[(&str, &str)]) -> PathBuf {
    let mut fields = vec![
        ("suite", "\"perf\""),
        ("commands", "[\"SET\", \"GET\", \"RPOP\"]"),
        ("value_sizes", "[64]"),
        ("pipelines", "[1, 8]"),
        ("clients", "[10]"),
        ("keyspaces", "[1000]"),
        ("repetitions", "2"),
        ("warmup_seconds", "0.05"),
        ("measure_seconds", "0.2"),
    ];
    for (key, value) in overrides {
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some(field) => field.1 = value,
            None => fields.push((key, value)),
        }
    }
    let text: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let path = dir.join("suite.toml");
    fs::write(&path, text).unwrap();
    path
}

/// A running `xtask start`, stopped with SIGTERM when dropped, so a failing test does not
/// leave its servers behind.
pub struct Started {
    pub child: Child,
}

impl Started {
    /// SIGTERM, then wait (killing after `limit`).
    pub fn stop(&mut self, limit: Duration) -> std::process::ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        signal(&self.child, libc::SIGTERM);
        wait_with_limit(&mut self.child, limit)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// Runs `xtask start --count N --base-port P --json` and returns it with the JSON line it
/// printed once its servers were ready.
pub fn start_instances(count: usize, base_port: u16, tmp: &Path) -> (Started, Value) {
    start_instances_with(count, base_port, tmp, &[])
}

/// [`start_instances`] with more flags (`--server-config ...`).
pub fn start_instances_with(
    count: usize,
    base_port: u16,
    tmp: &Path,
    extra: &[&str],
) -> (Started, Value) {
    let (count, base_port) = (count.to_string(), base_port.to_string());
    let mut args = vec!["--count", &count, "--base-port", &base_port];
    args.extend_from_slice(extra);
    start_with(&args, tmp)
}

/// Runs `xtask start ARGS --json` and returns it with the JSON line it printed once its
/// servers were ready.
pub fn start_with(args: &[&str], tmp: &Path) -> (Started, Value) {
    let mut all = vec!["start"];
    all.extend_from_slice(args);
    all.push("--json");
    let mut child = xtask(&all, Some(tmp))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (Started { child }, started)
}

/// Runs `xtask bench ARGS` on ports of its own with its results in `tmp/run`; returns the
/// output and that directory.
pub fn bench_in(tmp: &Path, args: &[&str]) -> (Output, PathBuf) {
    let out_dir = tmp.join("run");
    let base = ports(8).to_string();
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--base-port", &base, "--out", out_dir.to_str().unwrap()]);
    (run(&all, Some(tmp)), out_dir)
}

/// Held by tests that put real load on the machine (suites, presets, open loop, selfbench),
/// so they do not run at once: on 2 cores, concurrent load would starve an open-loop
/// sender and turn a behaviour test into a timing lottery.
pub fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A test that cannot run on this machine (`why`). That fails the test, unless the person
/// running it said this kind of test may be skipped here: `VALKEY_BENCH_SKIP` lists kinds
/// (`perf`, `paranoid`, comma-separated). So a skip is always someone's decision, printed,
/// and never CI's silence: CI installs every tool and sets nothing.
/// Returns (for the caller to `return`) only when the skip was allowed.
pub fn cannot_run(kind: &str, why: &str) {
    let allowed = std::env::var("VALKEY_BENCH_SKIP").unwrap_or_default();
    if allowed.split(',').any(|k| k.trim() == kind) {
        eprintln!("SKIPPED ({kind}, allowed by VALKEY_BENCH_SKIP): {why}");
        println!("SKIPPED ({kind}, allowed by VALKEY_BENCH_SKIP): {why}");
        return;
    }
    panic!(
        "this test cannot run here: {why}\nfix the machine (see README: Tests), or allow the \
         skip explicitly with VALKEY_BENCH_SKIP={kind}"
    );
}

/// The report a run wrote into `dir`: the page, the Markdown and a PNG + SVG per chart,
/// with a chart whose name starts with each of `expected`. Returns the chart names.
pub fn assert_report(dir: &std::path::Path, expected: &[&str]) -> Vec<String> {
    let html = fs::read_to_string(dir.join("report.html")).expect("report.html");
    let markdown = fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(html.starts_with("<!DOCTYPE html>") && !html.contains("<script"));
    let mut names: Vec<String> = fs::read_dir(dir.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".png").map(str::to_string))
        .collect();
    names.sort();
    for name in &names {
        let png = fs::read(dir.join(format!("charts/{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
            "{name}.png"
        );
        let svg = fs::read_to_string(dir.join(format!("charts/{name}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{name}.svg");
        // Named, not linked: report.md is pasted into pull requests.
        assert!(
            markdown.contains(&format!("charts/{name}.png).*")),
            "{name} not in report.md"
        );
        assert!(
            html.contains(&format!("<figure id=\"{name}\">")),
            "{name} not in report.html"
        );
    }
    assert!(!markdown.contains("!["), "an image link in report.md");
    for prefix in expected {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "no {prefix}* chart in {names:?}"
        );
    }
    names
}

/// A source tree whose build fails with `message` in its compiler error.
pub fn broken_tree(dir: &std::path::Path, message: &str) -> std::path::PathBuf {
    let tree = dir.join("broken");
    fs::create_dir_all(tree.join("src")).unwrap();
    fs::write(tree.join("src/server.c"), format!("#error {message}\n")).unwrap();
    fs::write(
        tree.join("Makefile"),
        ".make-prerequisites all:\n\tcc -c src/server.c -o src/server.o\n",
    )
    .unwrap();
    tree
}

/// Every record of a results file, as the suite's record type.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Vec<T> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether `perf` can record here; the reason when it cannot.
pub fn perf_unusable() -> Option<String> {
    #[allow(clippy::disallowed_methods)] // a probe of the machine, not of xtask
    let out = std::process::Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .output();
    match out {
        Err(e) => Some(format!("perf cannot run: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "perf record fails here: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Ok(_) => None,
    }
}

/// The first of `count` ports that no other test of this process is handed: tests run in
/// parallel, and two of them starting servers from one base port would race for it.
/// Blocks start at 21000, below Linux's ephemeral range (32768 and up), and leave 16
/// ports of slack for ports something else holds (instances skip those).
pub fn ports(count: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(21_000);
    let base = NEXT.fetch_add(count + 16, Ordering::Relaxed);
    assert!(base < 32_000, "the test port range is used up");
    base
}

/// Runs `program` in `dir` with a fixed git identity and dates (so commits made from the
/// same files have the same id every run) and returns its trimmed stdout; panics with its
/// stderr when it fails.
pub fn sh(dir: &Path, program: &str, args: &[&str]) -> String {
    #[allow(clippy::disallowed_methods)] // test fixture setup, not a server
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The pinned version's source tree, extracted from its cached orig tarball into `tree`
/// (created): a real Valkey tree a test may patch or commit.
pub fn pinned_tree(tree: &Path) -> PathBuf {
    build_json(); // the pinned tarball is fetched and cached by now
    let manifest = xtask::valkey::Manifest::embedded();
    let pinned = manifest.get(&manifest.default).unwrap();
    let tarball =
        xtask::valkey::fetch::orig_tarball(pinned, &manifest, &xtask::project::cache_dir())
            .unwrap()
            .tarball;
    fs::create_dir_all(tree).unwrap();
    sh(
        tree,
        "tar",
        &["-xf", tarball.to_str().unwrap(), "--strip-components=1"],
    );
    tree.to_path_buf()
}

/// A stand-in source tree whose make is instant: `recipe` (make recipe lines, each
/// starting with a tab) runs first, then `all` writes version-printing binaries
/// (`Valkey server v=0.0.0-{tag}`). `salt` goes into `src/server.c`, so a new salt is a
/// new cache key. For tests of the build machinery, not of Valkey.
pub fn stand_in_tree(tree: &Path, tag: &str, salt: &str, recipe: &str) -> PathBuf {
    fs::create_dir_all(tree.join("src")).unwrap();
    fs::write(tree.join("src/server.c"), format!("/* {salt} */\n")).unwrap();
    let script = format!("#!/bin/sh\\necho \\\"Valkey server v=0.0.0-{tag} sha=0\\\"\\n");
    fs::write(
        tree.join("Makefile"),
        format!(
            ".make-prerequisites:\n\t@true\nall:\n{recipe}\
             \tfor b in server cli benchmark; do printf '{script}' > src/valkey-$$b; chmod +x src/valkey-$$b; done\n"
        ),
    )
    .unwrap();
    tree.to_path_buf()
}

/// The pinned tree with `block` (C statements) planted before every command's `proc()` in
/// `call()`, extracted under `dir/name`. Its content hash is stable, so each plant builds
/// once per machine.
pub fn planted_tree(dir: &Path, name: &str, block: &str) -> PathBuf {
    let tree = pinned_tree(&dir.join(name));
    let server_c = tree.join("src/server.c");
    let text = fs::read_to_string(&server_c).unwrap();
    let call = "    c->cmd->proc(c);\n";
    assert_eq!(text.matches(call).count(), 1, "call() changed shape");
    fs::write(&server_c, text.replace(call, &format!("{block}{call}"))).unwrap();
    tree
}

/// A busy loop before every command, as long as `VB_SLOWDOWN_ITERS` (read once from the
/// server's environment) says: the same patch as scripts/detector-bench.sh. One iteration
/// is about 5 instructions and 2 ns.
pub fn slowed_tree(dir: &Path) -> PathBuf {
    planted_tree(
        dir,
        "valkey-slow",
        "    {\n        static long vb_slowdown_iters = -1;\n\
        static volatile unsigned long vb_slowdown_sink;\n\
        if (vb_slowdown_iters < 0) {\n\
            const char *e = getenv(\"VB_SLOWDOWN_ITERS\");\n\
            vb_slowdown_iters = e ? atol(e) : 0;\n\
        }\n\
        for (long vb_i = 0; vb_i < vb_slowdown_iters; vb_i++) vb_slowdown_sink += (unsigned long)vb_i;\n\
    }\n",
    )
}

/// `VB_SYSCALLS` (read once from the server's environment; 1 when unset) `getppid` system
/// calls before every command: a few hundred nanoseconds in the kernel each, and a handful
/// of user-space instructions. The same patch as scripts/detector-bench.sh.
pub fn syscall_tree(dir: &Path) -> PathBuf {
    planted_tree(
        dir,
        "valkey-syscall",
        "    {\n        static long vb_syscalls = -1;\n\
        if (vb_syscalls < 0) {\n\
            const char *e = getenv(\"VB_SYSCALLS\");\n\
            vb_syscalls = e ? atol(e) : 1;\n\
        }\n\
        for (long vb_i = 0; vb_i < vb_syscalls; vb_i++) (void)getppid();\n\
    }\n",
    )
}
