-- An operator's cluster-wide isolate or reset of one dependency.
--   KEYS[2] control (hash: seq, op, reason, origin, at), KEYS[3] open, KEYS[4] state (epoch),
--   KEYS[5] health
--   ARGV[5] replica id, ARGV[6] op ("isolate" or "reset"), ARGV[7] reason
-- Reply: the command's sequence number. Replicas apply each new number once; one that starts
-- while an isolation stands applies it too. A reset also lifts the shared open verdict and
-- starts a fresh window (new epoch), so old failures do not open the breakers again.
local stored = redis.call('HGET', KEYS[2], 'seq')
if stored and not string.match(stored, '^%d+$') then
  redis.call('HDEL', KEYS[2], 'seq')  -- not a sequence number (HINCRBY would refuse it)
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('HSET', KEYS[2], 'op', ARGV[6], 'reason', ARGV[7], 'origin', ARGV[5], 'at', rf_str(now))
redis.call('PEXPIRE', KEYS[2], 7 * 86400000)
if ARGV[6] == 'reset' then
  redis.call('DEL', KEYS[3], KEYS[5])
  redis.call('HINCRBY', KEYS[4], 'epoch', 1)
  redis.call('PEXPIRE', KEYS[4], 86400000)
end
return seq
