-- Heartbeat: this replica is alive for ttl more milliseconds; here is its summary (kept for
-- cluster_status()'s detail) and its clock. Returns the live count and the fleet's clock
-- figures, and the live replicas' summaries only when asked: what each replica receives does
-- not grow with the fleet (expired replicas are dropped on the way).
--   KEYS[2] replicas (sorted set: replica id -> expiry, ms)
--   KEYS[3] summaries (hash: replica id -> JSON)
--   KEYS[4] clocks (hash: replica id -> its clock's offset from Redis's, ms; "fleet median"
--           of the live replicas' offsets and "fleet tolerance", which the prelude clamps to)
--   ARGV[5] replica id, ARGV[6] ttl (ms), ARGV[7] summary (JSON), ARGV[8] 1: return the
--   summaries, else 0; ARGV[9] the clocks' tolerance (ms)
-- Reply: {clock, now, live count, offset, median, spread (the largest offset from the
--         median), id1, summary1, id2, summary2, ...}; the three offsets are false when
--         Redis's time is unknown.
local id = ARGV[5]
local ttl = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'format', ARGV[3])
redis.call('PEXPIRE', KEYS[1], 86400000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', rf_str(now))
for i = 1, #expired do
  redis.call('HDEL', KEYS[3], expired[i])
  redis.call('HDEL', KEYS[4], expired[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', rf_str(now))
redis.call('ZADD', KEYS[2], now + ttl, id)
redis.call('PEXPIRE', KEYS[2], math.ceil(ttl))
redis.call('HSET', KEYS[3], id, ARGV[7])
redis.call('PEXPIRE', KEYS[3], math.ceil(ttl))

local offset, median, spread = false, false, false
if rf_server_ms then
  local own = tonumber(ARGV[2]) - rf_server_ms
  redis.call('HSET', KEYS[4], id, rf_str(own))
  local offsets = {}
  local fields = redis.call('HGETALL', KEYS[4])
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 6) ~= 'fleet ' then
      offsets[#offsets + 1] = tonumber(fields[i + 1])
    end
  end
  table.sort(offsets)
  local middle = (#offsets + 1) / 2
  local m = (offsets[math.floor(middle)] + offsets[math.ceil(middle)]) / 2
  local s = math.max(m - offsets[1], offsets[#offsets] - m)
  redis.call('HSET', KEYS[4], 'fleet median', rf_str(m), 'fleet tolerance', ARGV[9])
  redis.call('PEXPIRE', KEYS[4], math.ceil(ttl))
  offset, median, spread = rf_str(own), rf_str(m), rf_str(s)
end

local reply = {clock, rf_str(now), redis.call('ZCARD', KEYS[2]), offset, median, spread}
if ARGV[8] == '1' then
  local fields = redis.call('HGETALL', KEYS[3])
  for i = 1, #fields, 2 do
    if rf_alive(KEYS[2], fields[i], now) then
      reply[#reply + 1] = fields[i]
      reply[#reply + 1] = fields[i + 1]
    else
      redis.call('HDEL', KEYS[3], fields[i])
    end
  end
end
return reply
