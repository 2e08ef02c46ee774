//! The one rule for server settings that come from outside (suite files, `--server-config`,
//! later task documents): which names may be set, and what a value may look like.
//!
//! Every server start checks it (`xtask::instances`), and every parser calls it first so
//! that bad input is refused, naming the field, before anything starts. The rule:
//! - a name is `[a-z0-9-]+` (Valkey's names are case-insensitive, so `BIND` would be
//!   `bind`: upper case is refused rather than folded, to keep one spelling);
//! - a name the harness owns ([`RESERVED`]: where the server listens, which paths it
//!   writes, which files or modules it loads) is refused;
//! - any other name must be on [`ALLOWED`]: settings that change what is measured (memory
//!   and eviction, encodings, persistence, threads and CPUs, the event loop, replication
//!   and cluster timing). An allowlist, so `enable-debug-command`, `tls-auth-clients`
//!   (records say what TLS required), announce addresses (`replica-announce-ip`,
//!   `cluster-announce-*`: they would send our clients elsewhere) and any setting Valkey
//!   adds later are refused until someone decides they belong here;
//! - a value becomes one argv item after `--name`. It may not contain control characters,
//!   and it may not start with `-` unless it is a negative number (`-1`): valkey-server
//!   reads any argv item that starts with `--` as a new option, so `--bind 0.0.0.0` in a
//!   value would otherwise open the server to every interface.

/// Settings the harness owns on every server: the network it listens on, the files it
/// writes or reads (a path from a suite file could overwrite or delete a file, or load
/// code), and how the process runs.
pub const RESERVED: [&str; 35] = [
    // where it listens
    "port",
    "bind",
    "bind-source-addr",
    "protected-mode",
    "unixsocket",
    "unixsocketperm",
    "unixsocketgroup",
    "tls-port",
    "tls-cluster",
    "tls-replication",
    // the topology: cluster mode and who replicates whom
    "cluster-enabled",
    "cluster-port",
    "replicaof",
    "slaveof",
    // paths it writes or reads
    "dir",
    "logfile",
    "pidfile",
    "dbfilename",
    "appendfilename",
    "appenddirname",
    "aclfile",
    "cluster-config-file",
    "include",
    "tls-cert-file",
    "tls-key-file",
    "tls-client-cert-file",
    "tls-client-key-file",
    "tls-ca-cert-file",
    "tls-ca-cert-dir",
    "tls-dh-params-file",
    // code it loads, settings clients could change later
    "loadmodule",
    "enable-module-command",
    "enable-protected-configs",
    // how the process runs
    "daemonize",
    "supervised",
];

/// The settings a suite file, a flag or a task may give, besides [`RESERVED`] ones the
/// harness sets itself.
#[rustfmt::skip]
pub const ALLOWED: &[&str] = &[
    // memory, eviction, expiry, freeing
    "maxmemory", "maxmemory-policy", "maxmemory-samples", "maxmemory-eviction-tenacity",
    "maxmemory-clients", "active-expire-effort", "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire", "lazyfree-lazy-server-del", "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush", "replica-lazy-flush", "jemalloc-bg-thread",
    "activedefrag", "active-defrag-ignore-bytes", "active-defrag-threshold-lower",
    "active-defrag-threshold-upper", "active-defrag-cycle-min", "active-defrag-cycle-max",
    "active-defrag-max-scan-fields", "active-defrag-cycle-us",
    // encodings
    "hash-max-listpack-entries", "hash-max-listpack-value", "hash-max-ziplist-entries",
    "hash-max-ziplist-value", "list-max-listpack-size", "list-max-ziplist-size",
    "list-compress-depth", "set-max-intset-entries", "set-max-listpack-entries",
    "set-max-listpack-value", "zset-max-listpack-entries", "zset-max-listpack-value",
    "zset-max-ziplist-entries", "zset-max-ziplist-value", "stream-node-max-bytes",
    "stream-node-max-entries", "hll-sparse-max-bytes",
    // persistence
    "save", "appendonly", "appendfsync", "no-appendfsync-on-rewrite",
    "auto-aof-rewrite-percentage", "auto-aof-rewrite-min-size", "aof-use-rdb-preamble",
    "aof-rewrite-incremental-fsync", "rdb-save-incremental-fsync", "rdbcompression",
    "rdbchecksum", "aof-timestamp-enabled", "stop-writes-on-bgsave-error",
    // threads and CPUs
    "io-threads", "io-threads-do-reads", "prefetch-batch-max-size", "server-cpulist",
    "bio-cpulist", "aof-rewrite-cpulist", "bgsave-cpulist",
    // the event loop and clients
    "hz", "dynamic-hz", "activerehashing", "maxclients", "timeout", "tcp-keepalive",
    "client-output-buffer-limit", "client-query-buffer-limit", "proto-max-bulk-len",
    "max-new-connections-per-cycle", "max-new-tls-connections-per-cycle",
    "latency-tracking", "latency-tracking-info-percentiles", "latency-monitor-threshold",
    "slowlog-log-slower-than", "slowlog-max-len", "tracking-table-max-keys",
    // replication
    "repl-diskless-sync", "repl-diskless-sync-delay", "repl-diskless-sync-max-replicas",
    "repl-diskless-load", "repl-backlog-size", "repl-backlog-ttl", "repl-timeout",
    "repl-ping-replica-period", "repl-disable-tcp-nodelay", "dual-channel-replication-enabled",
    "min-replicas-to-write", "min-replicas-max-lag",
    // cluster timing and behaviour
    "cluster-node-timeout", "cluster-require-full-coverage", "cluster-allow-reads-when-down",
    "cluster-allow-replica-migration", "cluster-migration-barrier",
];

/// Why a setting was refused: a sentence that says what is allowed.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !plain {
        return Err(format!(
            "{name:?} is not a config name: use lowercase letters, digits and '-'"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` is set by the harness (it decides where servers listen and which \
             files they touch); leave it out"
        ));
    }
    if !ALLOWED.contains(&name) {
        return Err(format!(
            "`{name}` is not a setting a benchmark may change; the allowed ones change what \
             is measured (memory and eviction, encodings, persistence, threads and CPUs, the \
             event loop, replication and cluster timing: the list is `ALLOWED` in \
             bench-core/src/server_config.rs)"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "the value of `{name}` has control characters; a value is one line"
        ));
    }
    let negative_number = value
        .strip_prefix('-')
        .and_then(|rest| rest.bytes().next())
        .is_some_and(|b| b.is_ascii_digit());
    if value.starts_with('-') && !negative_number {
        return Err(format!(
            "the value {value:?} of `{name}` starts with '-', which valkey-server would read \
             as another option; only negative numbers may"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str, value: &str, why: &str) {
        let err = check(name, value).expect_err(&format!("{name}={value:?} passed"));
        assert!(err.contains(why), "{name}={value:?}: {err}");
    }

    #[test]
    fn ordinary_settings_pass() {
        for (name, value) in [
            ("maxclients", "100"),
            ("save", "900 1"),
            ("save", ""),
            ("slowlog-log-slower-than", "-1"),
            ("maxmemory-policy", "allkeys-lru"),
            ("io-threads", "4"),
        ] {
            assert_eq!(check(name, value), Ok(()), "{name}={value:?}");
        }
    }

    #[test]
    fn names_are_plain_and_not_reserved_in_any_case() {
        refused("BIND", "0.0.0.0", "lowercase");
        refused("Dir", "/", "lowercase");
        refused("max clients", "1", "lowercase");
        refused("", "1", "lowercase");
        for name in [
            "bind",
            "pidfile",
            "unixsocket",
            "include",
            "dir",
            "logfile",
            "loadmodule",
        ] {
            refused(name, "x", "set by the harness");
        }
    }

    /// What an allowlist keeps out that the old denylist let through.
    #[test]
    fn settings_off_the_allowlist_are_refused_by_name() {
        for name in [
            "tls-auth-clients",
            "enable-debug-command",
            "replica-announce-ip",
            "cluster-announce-client-ipv4",
            "cluster-announce-ip",
            "cluster-announce-port",
            "rename-command",
            "requirepass",
            "some-future-setting",
        ] {
            refused(name, "x", "not a setting a benchmark may change");
        }
        let mut sorted = ALLOWED.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert!(ALLOWED.iter().all(|n| !RESERVED.contains(n)));
        assert_eq!(sorted.len(), ALLOWED.len(), "a setting listed twice");
    }

    #[test]
    fn a_value_cannot_smuggle_another_option() {
        refused("maxclients", "--bind 0.0.0.0", "starts with '-'");
        refused("maxclients", "-x", "starts with '-'");
        refused("maxclients", "100\nbind 0.0.0.0", "control characters");
        // Spaces stay inside the one argv item: no new option can start there.
        assert_eq!(
            check("maxclients", "100 --bind 0.0.0.0 --protected-mode no"),
            Ok(())
        );
    }
}
