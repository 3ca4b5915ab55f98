//! The Lua scripts every write runs as, so a record, its index and its
//! announcement change together or not at all, and a check ("is this id
//! free?") cannot race the write it guards. Kept together because their
//! KEYS/ARGV layouts are a contract with the callers in `mod.rs`.

/// Adds a record, its id index and its id-set entry unless the hash or the id
/// is taken; announces the hash (a gateway may hold it as "unknown").
/// KEYS: record, id index, id set, optionally the audit stream. ARGV: hash,
/// id, channel, field/value pairs, then (with the audit stream) the audit
/// entry's JSON, appended in the same script.
pub(super) const INSERT_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
local last = #ARGV
if KEYS[4] then last = last - 1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4, last))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
if KEYS[4] then redis.call('XADD', KEYS[4], '*', 'entry', ARGV[#ARGV]) end
return 0
";

/// Rewrites a record if the id index still points at it, then announces it
/// with the write time. KEYS: id index, record, optionally the audit stream.
/// ARGV: hash, channel, write time (Unix ms), n, n field/value pairs, the
/// optional fields to delete, then (with the audit stream) the audit entry's
/// JSON, appended in the same script.
pub(super) const REPLACE_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
local last = #ARGV
if KEYS[3] then last = last - 1 end
redis.call('HSET', KEYS[2], unpack(ARGV, 5, 4 + 2 * n))
if last > 4 + 2 * n then redis.call('HDEL', KEYS[2], unpack(ARGV, 5 + 2 * n, last)) end
redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. ARGV[3])
if KEYS[3] then redis.call('XADD', KEYS[3], '*', 'entry', ARGV[#ARGV]) end
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
