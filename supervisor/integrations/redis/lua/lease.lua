-- Lease turns of one shared rate limit: give back what this replica did not use, then take up
-- to `want` units more, GCRA on the shared theoretical arrival time `tat` (policies.rate_limit
-- explains the algorithm; here it runs once per replica and tick, for a batch of units).
--   KEYS[2] the limit (hash: tat (ms), cfg, and "h:<replica id>" -> until when it is hungry),
--   KEYS[3] replicas (sorted set: replica id -> expiry, ms)
--   ARGV[4] T, milliseconds per unit; ARGV[5] burst (units); ARGV[6] units given back (< 0: used
--   beyond the lease, charged now); ARGV[7] units wanted; ARGV[8] horizon (ms): grant only units
--   due by now + horizon; ARGV[9] the limit's settings, to notice replicas that disagree;
--   ARGV[10] replica id; ARGV[11] 1 when this replica turned calls away for want of turns since
--   its last lease ("hungry"), else 0; ARGV[12] milliseconds since its last lease; ARGV[13] the
--   largest call it turned away (units): a fair share never falls below one whole call, or
--   two replicas splitting the last unit in halves would never admit it
-- Reply: {clock, now, granted, base - now (ms), settings differ (0/1)}
--
-- Unit u of the batch (0 < u <= granted) is due at base + u*T: the batch continues the shared
-- schedule where the previous lease of any replica ended, and the bucket's burst lets the first
-- units be due at once.
--
-- Fairness: a hungry replica may take its share (among the hungry replicas) of what accrued
-- since its last lease, plus 20 % (so together they always ask for more than accrues, and
-- nothing is left unused), and its share (among the live replicas) of what the bucket holds. Without this cap the replica that happens to tick first after another takes
-- everything up to the horizon, and shares follow the phase of the replicas' ticks.
local now, clock = rf_now()
if not now then
  return rf_notime()
end
local T = tonumber(ARGV[4])
local burst = tonumber(ARGV[5])
local id = ARGV[10]
local hungry_field = 'h:' .. id
local stored = redis.call('HMGET', KEYS[2], 'tat', 'cfg')
local tat = tonumber(stored[1] or '0')
if tat < now then
  tat = now
end
-- Given back: the schedule moves back by those units, never below now (a bucket is never
-- fuller than its burst). Charged (negative): it moves forward.
tat = tat - tonumber(ARGV[6]) * T
if tat < now then
  tat = now
end
local room = (now + tonumber(ARGV[8]) - tat) / T + burst
local granted = tonumber(ARGV[7])
if ARGV[11] == '1' then
  local others = 0
  local fields = redis.call('HGETALL', KEYS[2])
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 2) == 'h:' and name ~= hungry_field then
      if tonumber(fields[i + 1]) > now then
        others = others + 1
      else
        redis.call('HDEL', KEYS[2], name)
      end
    end
  end
  local live = redis.call('ZCOUNT', KEYS[3], '(' .. rf_str(now), '+inf')
  local free = math.max(0, burst - (tat - now) / T)
  local fair = 1.2 * tonumber(ARGV[12]) / T / (others + 1) + free / math.max(live, 1)
  fair = math.max(fair, tonumber(ARGV[13]))
  if granted > fair then
    granted = fair
  end
  redis.call('HSET', KEYS[2], hungry_field, rf_str(now + 2 * tonumber(ARGV[8])))
else
  redis.call('HDEL', KEYS[2], hungry_field)
end
if granted > room then
  granted = room
end
if granted < 0 then
  granted = 0
end
local base = tat - burst * T
tat = tat + granted * T
redis.call('HSET', KEYS[2], 'tat', rf_str(tat), 'cfg', ARGV[9])
-- Once tat has passed the bucket is full again, and the key says nothing a missing key does not
-- (the hungry marks last at most two horizons).
redis.call('PEXPIRE', KEYS[2], math.ceil(math.max(tat - now, 4 * tonumber(ARGV[8]))) + 1000)
local differ = 0
if stored[2] and stored[2] ~= ARGV[9] then
  differ = 1
end
return {clock, rf_str(now), rf_str(granted), rf_str(base - now), differ}
