-- One dependency's tick: report this replica's window, decide the shared open verdict from
-- the live replicas' aggregate, and read the verdicts (open, pause, cluster-wide control).
--   KEYS[2] replicas (sorted set), KEYS[3] health (hash: replica id -> "calls failures epoch"),
--   KEYS[4] open (string, with TTL), KEYS[5] pause (string, with TTL), KEYS[6] control (hash),
--   KEYS[7] state (hash: epoch)
--   ARGV[5] replica id, ARGV[6] calls and ARGV[7] failures in this replica's window, ARGV[8] the
--   epoch they were counted in (-1: none yet), ARGV[9] failure ratio at or above which the
--   replicas open (0: no shared verdict for this dependency), ARGV[10] minimum calls across the
--   live replicas, ARGV[11] minimum replicas that saw failures (when that many are live),
--   ARGV[12] open for (ms), ARGV[13] window (ms)
-- Reply: {clock, now, epoch, calls, failures, reporting, failing, open|false, open ttl,
--         pause|false, pause ttl, control seq|false, op|false, reason|false, origin|false}
--
-- The epoch starts a fresh window: each shared open (and each cluster-wide reset) bumps it,
-- and counts from an older epoch are not summed, so the failures that opened the breakers do
-- not open them again the moment the verdict expires: the replicas need new evidence.
local id = ARGV[5]
local epoch = tonumber(redis.call('HGET', KEYS[7], 'epoch') or '0')
if epoch == nil or epoch ~= math.floor(epoch) then
  -- not a number this script wrote (HINCRBY would refuse it): as if absent
  redis.call('HDEL', KEYS[7], 'epoch')
  epoch = 0
end
local window = tonumber(ARGV[13])
if tonumber(ARGV[8]) == epoch then
  redis.call('HSET', KEYS[3], id, ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. epoch)
else
  redis.call('HDEL', KEYS[3], id)
end
-- The live replicas, read once (one call, not one per replica reporting).
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. rf_str(now), '+inf')
local alive = {}
for i = 1, #ids do
  alive[ids[i]] = true
end
local calls, failures, reporting, failing = 0, 0, 0, 0
local fields = redis.call('HGETALL', KEYS[3])
for i = 1, #fields, 2 do
  local c, f, e = string.match(fields[i + 1], '^(%S+) (%S+) (%S+)$')
  c, f = tonumber(c), tonumber(f)  -- nil unless numbers: dropped like an expired report
  if c and f and tonumber(e) == epoch and alive[fields[i]] then
    calls = calls + c
    failures = failures + f
    reporting = reporting + 1
    if f > 0 then
      failing = failing + 1
    end
  else
    redis.call('HDEL', KEYS[3], fields[i])
  end
end
redis.call('PEXPIRE', KEYS[3], math.ceil(window))

local open = redis.call('GET', KEYS[4])
local open_ttl = -2
if open then
  open_ttl = redis.call('PTTL', KEYS[4])
else
  local ratio = tonumber(ARGV[9])
  local need = math.min(tonumber(ARGV[11]), math.max(#ids, 1))
  if ratio > 0 and calls >= tonumber(ARGV[10]) and calls > 0 and failures >= ratio * calls
      and failing >= need then
    epoch = redis.call('HINCRBY', KEYS[7], 'epoch', 1)
    open = epoch .. ' ' .. rf_str(now) .. ' ' .. id .. ' ' .. calls .. ' ' .. failures
    open_ttl = math.max(1, math.ceil(tonumber(ARGV[12])))
    redis.call('SET', KEYS[4], open, 'PX', open_ttl)
    redis.call('DEL', KEYS[3])
  end
end
redis.call('PEXPIRE', KEYS[7], 86400000)

local pause = redis.call('GET', KEYS[5])
local pause_ttl = -2
if pause then
  pause_ttl = redis.call('PTTL', KEYS[5])
end
local control = redis.call('HMGET', KEYS[6], 'seq', 'op', 'reason', 'origin')
return {clock, rf_str(now), epoch, calls, failures, reporting, failing, open or false, open_ttl,
  pause or false, pause_ttl, control[1], control[2], control[3], control[4]}
