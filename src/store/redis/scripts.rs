//! The Lua scripts every write runs as, so a record, its index and its
//! change-feed entry change together or not at all, and a check ("is this
//! id free?") cannot race the write it guards. Kept together because their
//! KEYS/ARGV layouts are a contract with the callers in `mod.rs`.
//!
//! Redis does not roll a script back when a command in it fails, so each
//! script first checks what can fail: the id checks, then (Redis 7's
//! `redis.acl_check_cmd`) that this user may run every write it is about to
//! make, and then appends to the change feed (`XADD … MAXLEN ~ n`) before
//! writing anything else: a refused or out-of-memory XADD leaves the store
//! as it was. The feed entry is `h <hash hex>` plus, for a replace, `at
//! <write time in Unix ms>`.

/// Adds a record, its id index and its id-set entry unless the hash or the id
/// is taken; appends the hash to the feed (a gateway may hold it as
/// "unknown") and, when given, the audit entry to the audit trail. Every
/// write's permission is checked before anything is written, so a refused
/// one changes nothing. KEYS: record, id index, id set, feed, optionally
/// the audit stream. ARGV: hash, id, feed length bound, field/value pairs,
/// then (with the audit stream) the audit entry's JSON.
pub(super) const INSERT_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
local last = #ARGV
local checks = {{'XADD', KEYS[4], '*', 'h', ARGV[1]}, {'HSET', KEYS[1], 'id', ARGV[2]},
    {'SET', KEYS[2], ARGV[1]}, {'SADD', KEYS[3], ARGV[2]}}
if KEYS[5] then
  last = last - 1
  table.insert(checks, {'XADD', KEYS[5], '*', 'entry', 'x'})
end
for _, c in ipairs(checks) do
  if redis.acl_check_cmd and not redis.acl_check_cmd(unpack(c)) then
    return redis.error_reply('NOPERM this user may not run ' .. c[1] .. ' on ' .. c[2])
  end
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'h', ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4, last))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
if KEYS[5] then redis.call('XADD', KEYS[5], '*', 'entry', ARGV[#ARGV]) end
return 0
";

/// Rewrites a record if the id index still points at it, and appends it to
/// the feed with the write time (and, when given, the audit entry to the
/// audit trail); permissions are checked before anything is written.
/// KEYS: id index, record, feed, optionally the audit stream. ARGV: hash,
/// feed length bound, write time (Unix ms), n, n field/value pairs, the
/// optional fields to delete, then (with the audit stream) the audit
/// entry's JSON.
pub(super) const REPLACE_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
local last = #ARGV
local checks = {{'XADD', KEYS[3], '*', 'h', ARGV[1]}, {'HSET', KEYS[2], 'id', 'x'},
    {'HDEL', KEYS[2], 'id'}}
if KEYS[4] then
  last = last - 1
  table.insert(checks, {'XADD', KEYS[4], '*', 'entry', 'x'})
end
for _, c in ipairs(checks) do
  if redis.acl_check_cmd and not redis.acl_check_cmd(unpack(c)) then
    return redis.error_reply('NOPERM this user may not run ' .. c[1] .. ' on ' .. c[2])
  end
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'h', ARGV[1], 'at', ARGV[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 5, 4 + 2 * n))
if last > 4 + 2 * n then redis.call('HDEL', KEYS[2], unpack(ARGV, 5 + 2 * n, last)) end
if KEYS[4] then redis.call('XADD', KEYS[4], '*', 'entry', ARGV[#ARGV]) end
return 1
";

/// Adds a whole batch of usage deltas in one round trip; the last-use stamp
/// only ever moves forward, whichever gateway flushes last.
/// KEYS: usage hashes. ARGV per key: last_used_at, last_ip, total, n days,
/// then n day/count pairs.
pub(super) const USAGE_LUA: &str = r"
local a = 1
for i = 1, #KEYS do
  local k = KEYS[i]
  local ts, ip, total, nd = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  for _ = 1, nd do
    redis.call('HINCRBY', k, 'd:' .. ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('HINCRBY', k, 'total', total)
  local cur = tonumber(redis.call('HGET', k, 'last_used_at'))
  if cur == nil or cur <= tonumber(ts) then
    redis.call('HSET', k, 'last_used_at', ts, 'last_ip', ip)
  end
end
return #KEYS
";
