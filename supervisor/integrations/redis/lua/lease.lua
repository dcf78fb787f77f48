-- Lease turns of one shared rate limit: give back what this replica did not use, then take up
-- to `want` units more, GCRA on the shared theoretical arrival time `tat` (policies.rate_limit
-- explains the algorithm; here it runs once per replica and tick, for a batch of units).
--   KEYS[2] the limit (hash: tat (ms), cfg, and "h:<replica id>" -> until when it is hungry),
--   KEYS[3] replicas (sorted set: replica id -> expiry, ms)
--   ARGV[5] T, milliseconds per unit; ARGV[6] burst (units); ARGV[7] units given back (< 0: used
--   beyond the lease, charged now); ARGV[8] units wanted; ARGV[9] horizon (ms): grant only units
--   due by now + horizon; ARGV[10] the limit's settings, to notice replicas that disagree;
--   ARGV[11] replica id; ARGV[12] 1 when this replica turned calls away for want of turns since
--   its last lease ("hungry"), else 0; ARGV[13] milliseconds since its last lease; ARGV[14] the
--   largest call it turned away (units): a fair share never falls below one whole call, or
--   two replicas splitting the last unit in halves would never admit it; ARGV[15] the replicas
--   it last knew to be live (after an outage the heartbeats have expired: the first replica
--   back must not count itself alone and take the whole bucket); ARGV[16] 1 while the replica
--   is recovering from a fallback (its first intervals back), else 0; ARGV[17] the replicas
--   the fleet is expected to run (RedisShared's expected_replicas; 0: not set).
--
-- Recovering: while Redis could not be asked, every replica admitted its share of the rate
-- locally, so the bucket is as empty as it was when they lost it (a saturated bucket), and
-- the replicas come back one by one, after their own backoff. A recovering replica finds the
-- bucket empty (tat at least now + burst*T) and is granted units at the limit's pace: no
-- second burst on top of what the fallbacks admitted, and no replica held back for it.

-- Unit u of the batch (0 < u <= granted) is due at base + u*T: the batch continues the shared
-- schedule where the previous lease of any replica ended, and the bucket's burst lets the first
-- units be due at once.
--
-- Fairness: a hungry replica may take its share (among the hungry replicas) of what accrued
-- since its last lease, plus 20 % (so together they always ask for more than accrues, and
-- nothing is left unused), and its share (among the live replicas) of what the bucket holds. Without this cap the replica that happens to tick first after another takes
-- everything up to the horizon, and shares follow the phase of the replicas' ticks.
local T = tonumber(ARGV[5])
local burst = tonumber(ARGV[6])
local id = ARGV[11]
local hungry_field = 'h:' .. id
local stored = redis.call('HMGET', KEYS[2], 'tat', 'cfg', 'absent')
local tat = tonumber(stored[1] or '0') or 0  -- not a number: as if absent
if tat < now then
  tat = now
end
-- Expected replicas that are not live (cut off from Redis, or not started yet) admit their
-- share, rate / expected, locally: the schedule runs on as if they used it, so the live ones
-- together get rate * live / expected, and the fleet no more than the limit. Charged once for
-- the time since the last lease of any replica (at most two horizons: the bucket idle meanwhile
-- was full anyway).
local expected = tonumber(ARGV[17])
if expected > 0 then
  local live = redis.call('ZCOUNT', KEYS[3], '(' .. rf_str(now), '+inf')
  if live < expected then
    local since = math.min(math.max(0, now - tonumber(stored[3] or rf_str(now))), 2 * tonumber(ARGV[9]))
    tat = tat + since * (expected - live) / expected
  end
end
-- Another limit's schedule: limits are stored by their position in the dependency's list, so
-- after a reconfigure this one may find the state of the limit that was there before (an
-- hourly limit's tat an hour ahead would block a new 100/s one for that hour). Under its own
-- settings a schedule never runs more than a horizon and a full bucket ahead: cap it there (the
-- bucket starts empty, as it does after an outage, never fuller than it was). Replicas whose
-- settings agree never reach the cap.
if stored[2] and stored[2] ~= ARGV[10] then
  local cap = now + tonumber(ARGV[9]) + burst * T
  if tat > cap then
    tat = cap
  end
end
-- Given back: the schedule moves back by those units, never below now (a bucket is never
-- fuller than its burst). Charged (negative): it moves forward.
tat = tat - tonumber(ARGV[7]) * T
if tat < now then
  tat = now
end
if ARGV[16] == '1' and tat < now + burst * T then
  tat = now + burst * T
end
local room = (now + tonumber(ARGV[9]) - tat) / T + burst
local granted = tonumber(ARGV[8])
if ARGV[12] == '1' then
  local others = 0
  local fields = redis.call('HGETALL', KEYS[2])
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 2) == 'h:' and name ~= hungry_field then
      if (tonumber(fields[i + 1]) or 0) > now then
        others = others + 1
      else
        redis.call('HDEL', KEYS[2], name)
      end
    end
  end
  local live = redis.call('ZCOUNT', KEYS[3], '(' .. rf_str(now), '+inf')
  live = math.max(live, tonumber(ARGV[15]))
  local free = math.max(0, burst - (tat - now) / T)
  local fair = 1.2 * tonumber(ARGV[13]) / T / (others + 1) + free / math.max(live, 1)
  fair = math.max(fair, tonumber(ARGV[14]))
  if granted > fair then
    granted = fair
  end
  redis.call('HSET', KEYS[2], hungry_field, rf_str(now + 2 * tonumber(ARGV[9])))
else
  redis.call('HDEL', KEYS[2], hungry_field)
end
if granted > room then
  granted = room
end
-- Less than the call this replica turned away is no use to it, and held until the next tick
-- it would keep another replica from having the whole of it: two replicas would pass the last
-- unit of a slow limit back and forth in halves forever.
if granted < 0 or granted < tonumber(ARGV[14]) then
  granted = 0
end
local base = tat - burst * T
tat = tat + granted * T
redis.call('HSET', KEYS[2], 'tat', rf_str(tat), 'cfg', ARGV[10], 'absent', rf_str(now))
-- Once tat has passed the bucket is full again, and the key says nothing a missing key does not
-- (the hungry marks last at most two horizons).
redis.call('PEXPIRE', KEYS[2], math.ceil(math.max(tat - now, 4 * tonumber(ARGV[9]))) + 1000)
local differ = 0
if stored[2] and stored[2] ~= ARGV[10] then
  differ = 1
end
return {clock, rf_str(now), rf_str(granted), rf_str(base - now), differ}
