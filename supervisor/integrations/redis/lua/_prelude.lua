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

-- Now, and which clock said so ("server" or "client"); nil when TIME is refused in "server" mode.
local function rf_now()
  local mode = ARGV[1]
  if mode ~= 'client' then
    local ok, t = pcall(redis.call, 'TIME')
    if ok and type(t) == 'table' and t[2] then
      return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000, 'server'
    end
    if mode == 'server' then
      return nil, 'refused'
    end
  end
  return tonumber(ARGV[2]), 'client'
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
local now, clock = rf_now()
if not now then
  return rf_notime()
end
if rf_late(now) then
  return rf_late_reply()
end

