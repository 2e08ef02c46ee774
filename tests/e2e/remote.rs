//! Servers on other hosts, over real ssh to real sshds in network namespaces
//! (`testnet.rs`): a perf run with its server on another host (and a second run, placed
//! by its suite file, that copies nothing), a cluster spread over three hosts, host keys unknown or changed
//! refused before anything starts, `kill -9` of xtask leaving no server on any host, and a
//! link constraint that shows in the figures (so the traffic really crosses the link).

use std::fs;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::testnet::TestNet;
use crate::util::*;

/// A run directory's records.
pub fn records(dir: &std::path::Path) -> Vec<Value> {
    fs::read_to_string(dir.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `bench` of one GET case measured for 30 s with its servers on `servers`, running.
fn long_run(net: &TestNet, tmp: &std::path::Path, extra: &[&str], servers: &str) -> Child {
    let suite = suite_file(
        tmp,
        &[
            ("commands", "[\"GET\"]"),
            ("pipelines", "[1]"),
            ("measure_seconds", "30"),
        ],
    );
    let base = ports(8).to_string();
    let out = tmp.join("run");
    let mut args = vec![
        "bench",
        "--suite-file",
        suite.to_str().unwrap(),
        "--hosts",
        net.hosts_file.to_str().unwrap(),
        "--server-hosts",
        servers,
        "--base-port",
        &base,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    xtask(&args, Some(tmp))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_perf_run_with_its_server_on_another_host_names_it_and_leaves_nothing_there() {
    let _machine = heavy();
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[("commands", "[\"GET\"]"), ("pipelines", "[1]")],
    );
    let hosts = net.hosts_file.to_str().unwrap();
    let args = [
        "--suite-file",
        suite.to_str().unwrap(),
        "--hosts",
        hosts,
        "--server-hosts",
        "h1",
    ];
    let (out, dir) = bench_in(tmp.path(), &args);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}\nsshd: {}", net.sshd_log("h1"));
    assert!(
        said.contains("host h1: copying valkey-bench-agent"),
        "{said}"
    );
    assert!(said.contains("host h1: copying valkey-server"), "{said}");
    let recs = records(&dir);
    assert_eq!(recs.len(), 2, "{said}");
    for r in &recs {
        let hosts = r["server_hosts"]
            .as_array()
            .expect("server_hosts in the record");
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0]["name"], "h1");
        assert_eq!(hosts[0]["address"], net.hosts[0].addr.to_string());
        assert!(
            hosts[0]["servers"][0]
                .as_str()
                .unwrap()
                .starts_with("primary :")
        );
        assert!(hosts[0]["rtt_us"].as_f64().unwrap() > 0.0);
        assert!(r["metrics"]["ops_per_sec"].as_f64().unwrap() > 0.0);
    }
    assert!(net.ours().is_empty(), "outlived the run: {:?}", net.ours());
    // The second run, its hosts from the suite file (beside the hosts file), finds
    // everything there: nothing is copied.
    let beside = suite_file(
        net.dir.path(),
        &[
            ("commands", "[\"GET\"]"),
            ("pipelines", "[1]"),
            ("hosts", "{ file = \"hosts.toml\", servers = [\"h1\"] }"),
        ],
    );
    let again = tempfile::tempdir().unwrap();
    let (out, dir) = bench_in(again.path(), &["--suite-file", beside.to_str().unwrap()]);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("copying"), "{said}");
    assert!(said.contains("is there already (0 bytes copied)"), "{said}");
    assert_eq!(records(&dir)[0]["server_hosts"][0]["name"], "h1");
    assert!(net.servers().is_empty(), "a server outlived the run");
}

#[test]
fn unknown_and_changed_host_keys_are_refused_with_exit_2_and_nothing_started() {
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let hosts = net.hosts_file.to_str().unwrap();
    let args = ["--quick", "--hosts", hosts, "--server-hosts", "h1"];
    // Unknown: the host is not in known_hosts.
    fs::write(&net.known_hosts, "").unwrap();
    let (out, _) = bench_in(tmp.path(), &args);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("host \"h1\"") && said.contains("not in"),
        "{said}"
    );
    let fingerprint = fs::read_to_string(net.dir.path().join("h1-hostkey.pub")).unwrap();
    assert!(
        said.contains("SHA256:"),
        "the message names the fingerprint: {said}"
    );
    assert!(!fingerprint.is_empty());
    assert!(
        !net.hosts[0].work_dir.exists(),
        "something was made on the host"
    );
    // Changed: known_hosts has another key for the address.
    let other = net.dir.path().join("other");
    crate::testnet::keygen(&other);
    let other_key = fs::read_to_string(net.dir.path().join("other.pub")).unwrap();
    let other_key: Vec<&str> = other_key.split_whitespace().take(2).collect();
    fs::write(
        &net.known_hosts,
        format!("{} {}\n", net.hosts[0].addr, other_key.join(" ")),
    )
    .unwrap();
    let (out, _) = bench_in(tmp.path(), &args);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("CHANGED") && said.contains("SHA256:"),
        "{said}"
    );
    assert!(
        !net.hosts[0].work_dir.exists(),
        "something was made on the host"
    );
    assert!(net.servers().is_empty());
}

#[test]
fn kill_9_of_xtask_mid_run_leaves_no_server_on_any_host() {
    let _machine = heavy();
    let net = TestNet::new(2);
    let tmp = tempfile::tempdir().unwrap();
    let mut child = long_run(&net, tmp.path(), &["--topology", "replicas:1"], "h1,h2");
    assert!(
        wait_until(Duration::from_secs(120), || net.servers().len() == 2),
        "the two servers never ran"
    );
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    assert!(
        wait_until(Duration::from_secs(10), || net.ours().is_empty()),
        "servers or agents outlived a SIGKILLed xtask: {:?}",
        net.ours()
    );
}

#[test]
fn a_second_host_refused_stops_the_agent_on_the_first() {
    let net = TestNet::new(2);
    // h2's key is unknown; h1 is reached first and its agent started.
    fs::write(
        &net.known_hosts,
        format!("{} {}\n", net.hosts[0].addr, net.hosts[0].host_key),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (out, _) = bench_in(
        tmp.path(),
        &[
            "--quick",
            "--topology",
            "replicas:1",
            "--hosts",
            net.hosts_file.to_str().unwrap(),
            "--server-hosts",
            "h1,h2",
        ],
    );
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("host \"h2\"") && said.contains("not in"),
        "{said}"
    );
    assert!(
        said.contains("host h1: copying valkey-bench-agent"),
        "h1 was reached: {said}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || net.ours().is_empty()),
        "left running: {:?}",
        net.ours()
    );
    assert!(!net.hosts[1].work_dir.exists(), "something was made on h2");
}

#[test]
fn a_dropped_network_stops_the_servers_within_the_lease() {
    let _machine = heavy();
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let mut child = long_run(&net, tmp.path(), &[], "h1");
    assert!(
        wait_until(Duration::from_secs(120), || net.servers().len() == 1),
        "the server never ran"
    );
    // Nothing is closed: the agent hears nothing more, and its lease (5 s) runs out.
    net.cut(0);
    assert!(
        wait_until(Duration::from_secs(20), || net.ours().is_empty()),
        "left running after the network dropped: {:?}",
        net.ours()
    );
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
}

#[test]
fn a_cluster_spreads_over_three_hosts_with_no_replica_beside_its_primary() {
    let _machine = heavy();
    let net = TestNet::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"SET\"]"),
            ("pipelines", "[1]"),
            ("repetitions", "1"),
        ],
    );
    let (out, dir) = bench_in(
        tmp.path(),
        &[
            "--suite-file",
            suite.to_str().unwrap(),
            "--topology",
            "cluster:3x1",
            "--hosts",
            net.hosts_file.to_str().unwrap(),
            "--server-hosts",
            "h1,h2,h3",
        ],
    );
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    let recs = records(&dir);
    assert_eq!(recs.len(), 1, "{said}");
    let hosts = recs[0]["server_hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["h1", "h2", "h3"]);
    for h in hosts {
        let servers: Vec<&str> = h["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(servers.len(), 2, "{h}");
        assert!(
            servers[0].starts_with("primary") && servers[1].starts_with("replica"),
            "{h}"
        );
    }
    assert!(net.servers().is_empty());
}

#[test]
fn a_constrained_link_shows_in_the_figures() {
    let _machine = heavy();
    let net = TestNet::new(2);
    // An 8 Mbit/s cap on h2's replies: GET of 1 KiB values can make at most ~1,000 ops/s.
    net.shape(1, "8mbit");
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"GET\"]"),
            ("value_sizes", "[1024]"),
            ("pipelines", "[1]"),
            ("repetitions", "1"),
            ("measure_seconds", "3"),
        ],
    );
    let ops = |host: &str| {
        let run = tmp.path().join(host);
        fs::create_dir_all(&run).unwrap();
        let (out, dir) = bench_in(
            &run,
            &[
                "--suite-file",
                suite.to_str().unwrap(),
                "--hosts",
                net.hosts_file.to_str().unwrap(),
                "--server-hosts",
                host,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let r = &records(&dir)[0];
        (
            r["metrics"]["ops_per_sec"].as_f64().unwrap(),
            r["metrics"]["p50_us"].as_f64().unwrap(),
        )
    };
    let (free, free_p50) = ops("h1");
    let (capped, capped_p50) = ops("h2");
    eprintln!(
        "free link: {free:.0} ops/s, p50 {free_p50} µs; 8 Mbit/s: {capped:.0} ops/s, p50 {capped_p50} µs"
    );
    assert!(
        capped < 1_300.0,
        "8 Mbit/s carried {capped} GETs of 1 KiB per second"
    );
    assert!(
        free > 5.0 * capped,
        "unconstrained {free} ops/s against {capped}"
    );
    assert!(
        capped_p50 > 3.0 * free_p50,
        "p50 {capped_p50} µs capped, {free_p50} µs free"
    );
    assert!(net.servers().is_empty());
}

#[test]
fn a_host_can_build_its_own_valkey_from_the_source_built_here() {
    let _machine = heavy();
    let net = TestNet::new(1);
    // h1 builds its own (as it would where our binaries cannot run: other libraries).
    let mut file = fs::read_to_string(&net.hosts_file).unwrap();
    file.push_str("build = \"host\"\n");
    fs::write(&net.hosts_file, file).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"GET\"]"),
            ("pipelines", "[1]"),
            ("repetitions", "1"),
        ],
    );
    let args = [
        "--suite-file",
        suite.to_str().unwrap(),
        "--hosts",
        net.hosts_file.to_str().unwrap(),
        "--server-hosts",
        "h1",
    ];
    let (out, dir) = bench_in(tmp.path(), &args);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("copying valkey-src.tar.gz"), "{said}");
    assert!(!said.contains("copying valkey-server"), "{said}");
    assert!(said.contains("host h1: built there ("), "{said}");
    let recs = records(&dir);
    assert_eq!(recs.len(), 1, "{said}");
    let build = recs[0]["server_hosts"][0]["build"].as_str().unwrap();
    assert!(build.starts_with("built on the host ("), "{build}");
    assert!(recs[0]["metrics"]["requests"].as_u64().unwrap() > 0);
    assert!(net.servers().is_empty(), "a server outlived the run");
    // The next run finds it built there.
    let again = tempfile::tempdir().unwrap();
    let (out, _) = bench_in(again.path(), &args);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("host h1: built there before ("), "{said}");
    assert!(!said.contains("copying"), "{said}");
    assert!(
        wait_until(Duration::from_secs(5), || net.ours().is_empty()),
        "{:?}",
        net.ours()
    );
}

#[test]
fn a_host_runs_the_agent_its_entry_names_and_one_built_for_another_architecture_is_refused() {
    let _machine = heavy();
    let net = TestNet::new(1);
    let tmp = tempfile::tempdir().unwrap();
    let original = fs::read_to_string(&net.hosts_file).unwrap();
    let hosts = net.hosts_file.to_str().unwrap();
    let with_agent = |agent: &std::path::Path| {
        fs::write(
            &net.hosts_file,
            format!("{original}agent = \"{}\"\n", agent.display()),
        )
        .unwrap();
    };
    let quick = ["--quick", "--hosts", hosts, "--server-hosts", "h1"];
    // Not a program: refused when the hosts file is read, before anything starts.
    let script = tmp.path().join("agent.sh");
    fs::write(&script, "#!/bin/sh\nexec true\n").unwrap();
    with_agent(&script);
    let (out, _) = bench_in(tmp.path(), &quick);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("agent") && said.contains("not an ELF"),
        "{said}"
    );
    assert!(!net.hosts[0].work_dir.exists(), "something was made on h1");
    // Built for another architecture (this program with its ELF machine set to aarch64's,
    // or x86_64's on an aarch64 machine): refused once the host says what it is.
    let mut elf = fs::read(xtask_bin()).unwrap();
    let other = if std::env::consts::ARCH == "aarch64" {
        (62u16, "x86_64")
    } else {
        (183, "aarch64")
    };
    elf[18..20].copy_from_slice(&other.0.to_le_bytes());
    let foreign = tmp.path().join("xtask-foreign");
    fs::write(&foreign, &elf).unwrap();
    with_agent(&foreign);
    let (out, _) = bench_in(tmp.path(), &quick);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("host \"h1\"") && said.contains(&format!("is built for {}", other.1)),
        "{said}"
    );
    assert!(!net.hosts[0].work_dir.exists(), "something was made on h1");
    // This program under another name and content (bytes after its end change nothing
    // it runs): shipped under its own key and run as the agent.
    let mut copy = fs::read(xtask_bin()).unwrap();
    copy.extend_from_slice(b"another build of the same commit");
    let named = tmp.path().join("xtask-for-h1");
    fs::write(&named, &copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&named, fs::Permissions::from_mode(0o755)).unwrap();
    with_agent(&named);
    let suite = suite_file(
        tmp.path(),
        &[
            ("commands", "[\"GET\"]"),
            ("pipelines", "[1]"),
            ("measure_seconds", "1"),
        ],
    );
    let (out, dir) = bench_in(
        tmp.path(),
        &[
            "--suite-file",
            suite.to_str().unwrap(),
            "--hosts",
            hosts,
            "--server-hosts",
            "h1",
        ],
    );
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(records(&dir)[0]["server_hosts"][0]["name"], "h1");
    let digest = crate::testnet::must("sha256sum", &[named.to_str().unwrap()]);
    let key = &digest[..16];
    let shipped = net.hosts[0]
        .work_dir
        .join("bin")
        .join(key)
        .join("valkey-bench-agent");
    assert!(
        shipped.exists(),
        "the named agent is under its own key there: {said}"
    );
    let ours = crate::testnet::must("sha256sum", &[xtask_bin().to_str().unwrap()]);
    assert!(
        !net.hosts[0].work_dir.join("bin").join(&ours[..16]).exists(),
        "this program was not copied as well"
    );
    assert!(net.ours().is_empty(), "outlived the run: {:?}", net.ours());
}
