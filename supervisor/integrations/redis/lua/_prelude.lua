-- ringfence shared state (supervisor.integrations.redis): the prelude of every script.
--
-- Calling convention, the same for every script:
--   KEYS[1]  the namespace's meta hash (field "format")
--   ARGV[1]  clock mode: "server" (Redis's TIME), "client" (ARGV[2]), "auto" (TIME when the
--            server lets scripts call it, else ARGV[2])
--   ARGV[2]  the caller's own time, milliseconds since the epoch
--   ARGV[3]  the key format the caller speaks
--   ARGV[4]  the caller's deadline on the script's clock (ms; 0: none). A script that runs
--            after it does nothing: the caller gave up waiting and dropped the connection,
--            but a server that was stopped (SIGSTOP, a long fork) still runs what it had
--            read; a lease granted then would go to nobody and take turns from everyone.
-- A script's own arguments start at ARGV[5].
-- Times are milliseconds since the epoch, as floats. Numbers that may be fractional leave as
-- strings ("%.17g"): Redis converts a Lua number in a reply to an integer, dropping the rest.
-- Errors start with a RINGFENCE_ code the client recognises. The prelude ends by setting `now`
-- and `clock` for the script, or by answering RINGFENCE_NOTIME or RINGFENCE_LATE.

-- Redis < 7 replicates a script verbatim unless told otherwise, and then refuses writes after
-- a non-deterministic command such as TIME. Redis 7 always replicates effects (a no-op here).
if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local rf_format = redis.call('HGET', KEYS[1], 'format')
if rf_format and rf_format ~= ARGV[3] then
  return redis.error_reply('RINGFENCE_FORMAT this namespace holds ringfence key format '
    .. rf_format .. ', and this replica speaks format ' .. ARGV[3])
end

-- The namespace's key prefix ("ringfence:{ns}:"), from the meta key's name. The clock keys
-- below are read only on the replicas' clocks, and live in the namespace's slot like the rest.
local rf_base = string.sub(KEYS[1], 1, -5)

-- Redis's own time when scripts may not call TIME: a key's expiry set at the caller's time
-- plus a day, read back (PTTL counts on the server's clock, to the millisecond). nil when the
-- caller's clock is more than a day behind (the key expired at once).
local function rf_reference(client)
  local probe = rf_base .. 'clock'
  local at = math.floor(client) + 86400000
  redis.call('SET', probe, '1')
  redis.call('PEXPIREAT', probe, at)
  local left = redis.call('PTTL', probe)
  if left < 0 then
    return nil
  end
  return at - left
end

-- Now, which clock said so ("server" or "client"; nil when TIME is refused in "server" mode),
-- and Redis's time (nil: unknown). On the replicas' clocks a replica's time is clamped to the
-- fleet's median offset from Redis's time, +- the tolerance (both kept by heartbeat.lua): a
-- replica whose clock is off cannot move the shared schedules, or the heartbeats' expiry,
-- further than that for everyone else.
local function rf_now()
  local mode = ARGV[1]
  local client = tonumber(ARGV[2])
  if mode ~= 'client' then
    local ok, t = pcall(redis.call, 'TIME')
    if ok and type(t) == 'table' and t[2] then
      local server = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
      return server, 'server', server
    end
    if mode == 'server' then
      return nil, 'refused', nil
    end
  end
  local reference = rf_reference(client)
  if reference then
    local fleet = redis.call('HMGET', rf_base .. 'clocks', 'fleet median', 'fleet tolerance')
    local median, tolerance = tonumber(fleet[1]), tonumber(fleet[2])
    if median and tolerance then
      local low, high = reference + median - tolerance, reference + median + tolerance
      if client < low then
        return low, 'client', reference
      elseif client > high then
        return high, 'client', reference
      end
    end
  end
  return client, 'client', reference
end

-- The caller's deadline has passed: its answer would go to nobody.
local function rf_late(now)
  local deadline = tonumber(ARGV[4])
  return deadline > 0 and now > deadline
end

local function rf_late_reply()
  return redis.error_reply('RINGFENCE_LATE the caller stopped waiting; nothing was done')
end

local function rf_notime()
  return redis.error_reply('RINGFENCE_NOTIME this server refuses TIME to scripts;'
    .. ' use RedisShared(clock="auto") or clock="client"')
end

local function rf_str(x)
  return string.format('%.17g', x)
end

-- Is replica `id` alive at `now` (its heartbeat not expired)?
local function rf_alive(replicas, id, now)
  local expiry = redis.call('ZSCORE', replicas, id)
  return expiry and tonumber(expiry) > now
end

-- Every script runs at `now`, on `clock`; none runs without a time, or past its deadline.
local now, clock, rf_server_ms = rf_now()
if not now then
  return rf_notime()
end
if rf_late(now) then
  return rf_late_reply()
end

