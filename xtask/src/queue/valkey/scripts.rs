//! The Valkey queue's transitions, each one Lua script (atomic on the server). Keys come
//! in `KEYS`, every value from outside in `ARGV`: nothing is spliced into a script.

/// Queues a task unless its id is taken (then its state).
pub const ADD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGET', KEYS[1], 'state') or 'there' end
local entry = redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'state', 'pending', 'deliveries', 0, 'entry', entry)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return false
";

/// A pending task fails as cancelled, its entry deleted (a runner that already read it
/// finds it failed and drops it).
pub const CANCEL: &str = r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'pending' then return state end
local entry = redis.call('HGET', KEYS[1], 'entry')
if entry then redis.call('XDEL', KEYS[2], entry) end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', 'cancelled', 'finished_ms', ARGV[1])
redis.call('HDEL', KEYS[1], 'entry')
return 'ok'
";

/// A failed task is queued again: a new entry, its deliveries and outcome cleared.
pub const RETRY: &str = r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'failed' then return state end
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'pending', 'deliveries', 0, 'entry', entry)
redis.call('HDEL', KEYS[1], 'error', 'results', 'verdict', 'summary', 'finished_ms', 'runner', 'heartbeat_ms', 'step', 'done', 'total', 'last', 'status_ms', 'figures', 'warnings', 'unit', 'seconds', 'seconds_total', 'hosts')
return 'ok'
";

/// A task that is not running is deleted with its entry.
pub const REMOVE: &str = r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'running' then return 'running ' .. (redis.call('HGET', KEYS[1], 'runner') or '') end
local entry = redis.call('HGET', KEYS[1], 'entry')
if entry then redis.call('XDEL', KEYS[2], entry) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 'ok'
";

/// A delivered entry becomes this runner's running task, if its task is still pending
/// with this entry; past its deliveries, or with a document over `ARGV[6]` bytes (never
/// read), it is dead-lettered instead.
pub const CLAIM: &str = r"
local function drop()
  redis.call('XACK', KEYS[2], 'runners', ARGV[1])
  redis.call('XDEL', KEYS[2], ARGV[1])
end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'pending' or redis.call('HGET', KEYS[1], 'entry') ~= ARGV[1] then
  drop()
  return {'skip'}
end
local d = tonumber(redis.call('HGET', KEYS[1], 'deliveries')) or 0
local why = nil
if redis.call('HSTRLEN', KEYS[1], 'doc') > tonumber(ARGV[6]) then
  why = 'not a task document: over ' .. ARGV[6] .. ' bytes'
elseif d >= tonumber(ARGV[3]) then
  why = 'delivered ' .. d .. ' times, and its runner died each time before it ended'
end
if why then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'error', why, 'finished_ms', ARGV[4])
  redis.call('HDEL', KEYS[1], 'entry', 'runner')
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'id', ARGV[5], 'deliveries', d, 'reason', why)
  drop()
  return {'dead', why}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'runner', ARGV[2], 'deliveries', d + 1, 'heartbeat_ms', ARGV[4])
redis.call('HDEL', KEYS[1], 'step', 'done', 'total', 'last', 'status_ms', 'figures', 'warnings', 'unit', 'seconds', 'seconds_total', 'hosts')
return {'run', redis.call('HGET', KEYS[1], 'doc'), tostring(d + 1)}
";

/// An entry that names no task (written by hand): dead-lettered with why.
pub const POISON: &str = r"
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'entry', ARGV[1], 'reason', ARGV[2])
redis.call('XACK', KEYS[1], 'runners', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
";

/// The heartbeat: the runner's key renewed (its value the entry it holds, or empty) and,
/// while it holds a task, the entry's idle time reset (XCLAIM JUSTID counts no delivery).
/// 0 when the task is no longer its own.
pub const RENEW: &str = r"
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
if ARGV[2] == '' then return 1 end
if redis.call('HGET', KEYS[1], 'runner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'running'
   or redis.call('HGET', KEYS[1], 'entry') ~= ARGV[2] then return 0 end
local held = redis.call('XPENDING', KEYS[2], 'runners', ARGV[2], ARGV[2], 1, ARGV[1])
if #held == 0 then return 0 end
redis.call('XCLAIM', KEYS[2], 'runners', ARGV[1], 0, ARGV[2], 'JUSTID')
redis.call('HSET', KEYS[1], 'heartbeat_ms', ARGV[4])
return 1
";

/// The held task's live status.
pub const REPORT: &str = r"
if redis.call('HGET', KEYS[1], 'runner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'step', ARGV[2], 'done', ARGV[3], 'total', ARGV[4], 'last', ARGV[5], 'status_ms', ARGV[6], 'figures', ARGV[7], 'warnings', ARGV[8], 'unit', ARGV[9], 'seconds', ARGV[10], 'seconds_total', ARGV[11], 'hosts', ARGV[12])
return 1
";

/// Files the held task: acknowledged and its entry deleted, its outcome recorded (or,
/// requeued, a fresh entry and the delivery not counted; given back after a lost hold, a
/// fresh entry and the delivery counted). 0 when it was not this runner's any more.
pub const FINISH: &str = r"
if redis.call('HGET', KEYS[1], 'runner') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'state') ~= 'running'
   or redis.call('HGET', KEYS[1], 'entry') ~= ARGV[1] then return 0 end
redis.call('XACK', KEYS[2], 'runners', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'heartbeat_ms', 'step', 'done', 'total', 'last', 'status_ms', 'figures', 'warnings', 'unit', 'seconds', 'seconds_total', 'hosts')
if ARGV[3] == 'pending' or ARGV[3] == 'given_back' then
  local d = tonumber(redis.call('HGET', KEYS[1], 'deliveries')) or 1
  if ARGV[3] == 'pending' then d = math.max(d - 1, 0) end
  local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[5])
  redis.call('HSET', KEYS[1], 'state', 'pending', 'entry', entry, 'deliveries', d)
  redis.call('HDEL', KEYS[1], 'runner', 'results')
  return 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'finished_ms', ARGV[4])
redis.call('HDEL', KEYS[1], 'entry')
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
";

/// An entry XAUTOCLAIM took from an idle consumer: back to pending (a fresh entry; the
/// next claim counts the delivery), unless its runner's key still lives and says it holds
/// this entry (handed back), or its task is gone or finished (dropped). A runner whose
/// claim ran but whose reply was lost holds nothing by its key: the task is requeued.
pub const RECLAIM: &str = r"
local state = redis.call('HGET', KEYS[1], 'state')
if (state ~= 'pending' and state ~= 'running') or redis.call('HGET', KEYS[1], 'entry') ~= ARGV[1] then
  redis.call('XACK', KEYS[2], 'runners', ARGV[1])
  redis.call('XDEL', KEYS[2], ARGV[1])
  return 'drop'
end
local owner = redis.call('HGET', KEYS[1], 'runner')
if state == 'running' and owner and redis.call('GET', ARGV[3] .. owner) == ARGV[1] then
  redis.call('XCLAIM', KEYS[2], 'runners', owner, 0, ARGV[1], 'JUSTID')
  return 'alive'
end
redis.call('XACK', KEYS[2], 'runners', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'pending', 'entry', entry)
redis.call('HDEL', KEYS[1], 'runner', 'heartbeat_ms', 'step', 'done', 'total', 'last', 'status_ms', 'figures', 'warnings', 'unit', 'seconds', 'seconds_total', 'hosts', 'results')
return 'requeued'
";

/// Cuts what a stream read returns to size: each entry's first `ARGV[n]` field names and
/// values (64), each at most `ARGV[n+1]` bytes (256; an id is at most 100). Shared by the
/// two reads below; a hand-written entry with a huge field costs the runner nothing.
const CUT_ENTRIES: &str = r"
local function cut(entries, most, longest)
  for i, e in ipairs(entries) do
    if type(e) == 'table' and type(e[2]) == 'table' then
      local f = {}
      for j = 1, math.min(#e[2], most) do
        local v = e[2][j]
        if #v > longest then v = string.sub(v, 1, longest) end
        f[j] = v
      end
      entries[i] = {e[1], f}
    end
  end
  return entries
end
";

/// XREADGROUP of one new entry for consumer `ARGV[1]`, cut to size (`CUT_ENTRIES`, with
/// `ARGV[2]` and `ARGV[3]`); nil when nothing is new.
pub fn read() -> String {
    format!(
        "{CUT_ENTRIES}{}",
        r"
local read = redis.call('XREADGROUP', 'GROUP', 'runners', ARGV[1], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if not read then return false end
for _, s in ipairs(read) do cut(s[2], tonumber(ARGV[2]), tonumber(ARGV[3])) end
return read
"
    )
}

/// XAUTOCLAIM for consumer `ARGV[1]` of entries idle `ARGV[2]` ms from cursor `ARGV[3]`,
/// 50 at a time, cut to size (`ARGV[4]`, `ARGV[5]`).
pub fn autoclaim() -> String {
    format!(
        "{CUT_ENTRIES}{}",
        r"
local r = redis.call('XAUTOCLAIM', KEYS[1], 'runners', ARGV[1], ARGV[2], ARGV[3], 'COUNT', 50)
cut(r[2], tonumber(ARGV[4]), tonumber(ARGV[5]))
return r
"
    )
}

/// A page of the queued ids, ranks `ARGV[1]`..`ARGV[2]`, each with its task's fields as
/// name, value pairs: the named ones that are set (`ARGV[5]` of them from `ARGV[6]`; a
/// pending task has 4 of the 20 `list` names, and a nil costs the client a parse), or
/// every field when none is named (the first 64). A `doc` is cut at `ARGV[3]` bytes (one byte over the task limit, so an
/// oversized one still fails as such), any other field at `ARGV[4]`. An id longer than any
/// of ours, or whose task hash is gone, leaves the ids (`{NAME}:ids` stays trimmed) and
/// is answered as false. Paged from the top by the caller, so removing a member never
/// moves one not yet read.
pub const PAGE: &str = r"
local doc_cap, cap, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local fields = {}
for j = 1, n do fields[j] = ARGV[5 + j] end
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3) .. 'task:'
local out = {}
for i, id in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])) do
  local key = prefix .. id
  if #id > 100 or redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[1], id)
    out[i] = false
  else
    local row = {}
    if n == 0 then
      local all = redis.call('HGETALL', key)
      for j = 1, math.min(#all, 128) do row[j] = all[j] end
    else
      local values = redis.call('HMGET', key, unpack(fields))
      for j = 1, n do
        if values[j] then
          row[#row + 1] = fields[j]
          row[#row + 1] = values[j]
        end
      end
    end
    for j = 2, #row, 2 do
      local v = row[j]
      local c = cap
      if row[j - 1] == 'doc' then c = doc_cap end
      if v and #v > c then row[j] = string.sub(v, 1, c) end
    end
    out[i] = {id, row}
  end
end
return out
";
