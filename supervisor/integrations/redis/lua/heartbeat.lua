-- Heartbeat: this replica is alive for ttl more milliseconds; here is its summary. Returns the
-- live replicas' summaries (expired ones are dropped on the way).
--   KEYS[2] replicas (sorted set: replica id -> expiry, ms)
--   KEYS[3] summaries (hash: replica id -> JSON)
--   ARGV[5] replica id, ARGV[6] ttl (ms), ARGV[7] summary (JSON)
-- Reply: {clock, now, live count, id1, summary1, id2, summary2, ...}
local ttl = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'format', ARGV[3])
redis.call('PEXPIRE', KEYS[1], 86400000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[5])
redis.call('PEXPIRE', KEYS[2], math.ceil(ttl))
redis.call('HSET', KEYS[3], ARGV[5], ARGV[7])
redis.call('PEXPIRE', KEYS[3], math.ceil(ttl))
local reply = {clock, rf_str(now), redis.call('ZCARD', KEYS[2])}
local fields = redis.call('HGETALL', KEYS[3])
for i = 1, #fields, 2 do
  if rf_alive(KEYS[2], fields[i], now) then
    reply[#reply + 1] = fields[i]
    reply[#reply + 1] = fields[i + 1]
  else
    redis.call('HDEL', KEYS[3], fields[i])
  end
end
return reply
