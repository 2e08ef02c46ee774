//! The commands a load may send: data commands only.
//!
//! A workload's templates come from flags, workload files and queued tasks, which others
//! may write; a template is sent to a server we started, as the default user. So a
//! template's command must be on this list: reads and writes of keys, and PING, ECHO and
//! PUBLISH. Everything that administers the server (CONFIG, REPLICAOF, CLUSTER, DEBUG,
//! MODULE, SHUTDOWN, ACL, CLIENT, MONITOR, FLUSHALL, SAVE, ...), moves data elsewhere
//! (MIGRATE), runs code that could call those (EVAL, FCALL, SCRIPT, FUNCTION), or changes
//! what a connection is (MULTI, SELECT, HELLO, AUTH, SUBSCRIBE) is refused when the
//! workload is checked, before anything starts. An allowlist, so a command Valkey adds
//! later is refused until someone adds it here.

/// Data commands, by family.
#[rustfmt::skip]
pub const DATA_COMMANDS: &[&str] = &[
    // connection
    "PING", "ECHO", "PUBLISH", "SPUBLISH",
    // keys
    "DEL", "UNLINK", "EXISTS", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "EXPIRETIME",
    "PEXPIRETIME", "TTL", "PTTL", "PERSIST", "TYPE", "TOUCH", "COPY",
    // strings
    "GET", "SET", "SETNX", "SETEX", "PSETEX", "GETSET", "GETDEL", "GETEX", "GETRANGE",
    "SETRANGE", "MGET", "MSET", "MSETNX", "APPEND", "STRLEN", "INCR", "INCRBY",
    "INCRBYFLOAT", "DECR", "DECRBY", "LCS",
    // bitmaps, HyperLogLog
    "SETBIT", "GETBIT", "BITCOUNT", "BITPOS", "BITFIELD", "BITFIELD_RO", "PFADD", "PFCOUNT",
    // lists
    "LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "LPOP", "RPOP", "LLEN", "LRANGE", "LINDEX", "LSET",
    "LREM", "LTRIM", "LINSERT", "LPOS", "LMOVE", "LMPOP", "RPOPLPUSH", "BLPOP", "BRPOP",
    "BLMOVE", "BLMPOP", "BRPOPLPUSH",
    // hashes
    "HSET", "HSETNX", "HMSET", "HGET", "HMGET", "HGETALL", "HDEL", "HLEN", "HEXISTS",
    "HINCRBY", "HINCRBYFLOAT", "HKEYS", "HVALS", "HSTRLEN", "HRANDFIELD", "HSCAN",
    // sets
    "SADD", "SREM", "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SPOP", "SRANDMEMBER",
    "SINTER", "SINTERCARD", "SUNION", "SDIFF", "SMOVE", "SSCAN",
    // sorted sets
    "ZADD", "ZREM", "ZSCORE", "ZMSCORE", "ZINCRBY", "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZRANGE",
    "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZRANK", "ZREVRANK",
    "ZPOPMIN", "ZPOPMAX", "BZPOPMIN", "BZPOPMAX", "ZMPOP", "BZMPOP", "ZRANDMEMBER", "ZSCAN",
    "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE",
    // streams
    "XADD", "XLEN", "XRANGE", "XREVRANGE", "XREAD", "XDEL", "XTRIM",
    // geo
    "GEOADD", "GEODIST", "GEOPOS", "GEOHASH", "GEOSEARCH",
];

/// `Ok` when `name` (upper case) is a data command; else why not, naming it.
pub fn check(name: &str) -> Result<(), String> {
    if DATA_COMMANDS.contains(&name) {
        return Ok(());
    }
    Err(format!(
        "{name} is not a data command a load may send; a load sends reads and writes of keys \
         (GET, SET, HSET, ZADD, XADD, ... the list is in bench-core/src/workload/allowed.rs), \
         never commands that administer the server, run scripts or change the connection \
         (CONFIG, REPLICAOF, SHUTDOWN, EVAL, MULTI, ...)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn administrative_and_scripting_commands_are_refused() {
        for name in [
            "CONFIG",
            "REPLICAOF",
            "SLAVEOF",
            "CLUSTER",
            "DEBUG",
            "MODULE",
            "SHUTDOWN",
            "ACL",
            "MIGRATE",
            "FAILOVER",
            "SCRIPT",
            "EVAL",
            "EVALSHA",
            "FCALL",
            "FUNCTION",
            "MONITOR",
            "CLIENT",
            "FLUSHALL",
            "FLUSHDB",
            "SAVE",
            "BGSAVE",
            "BGREWRITEAOF",
            "SYNC",
            "PSYNC",
            "MULTI",
            "SELECT",
            "SWAPDB",
            "HELLO",
            "AUTH",
            "SUBSCRIBE",
            "KEYS",
            "WAIT",
        ] {
            let why = check(name).unwrap_err();
            assert!(why.starts_with(name), "{why}");
        }
    }

    #[test]
    fn the_built_in_templates_are_data_commands() {
        for (_, template) in super::super::presets::BUILTIN {
            let name = template.split_whitespace().next().unwrap();
            assert_eq!(check(name), Ok(()), "{template}");
        }
        let mut sorted = DATA_COMMANDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), DATA_COMMANDS.len(), "a command listed twice");
    }
}
