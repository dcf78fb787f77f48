-- A replica was told to come back later (a 429's Retry-After): pause the dependency on every
-- replica, unless a longer pause is already set.
--   KEYS[2] pause (string "origin seq", with TTL)
--   ARGV[5] origin: the replica id and a nonce of its process ("pod-a 1f2e3d4c": a replica
--   restarted under the same id keeps to its previous life's pause), ARGV[6] its pause number,
--   ARGV[7] the pause (ms, >= 1)
-- Reply: 1 when set, 0 when a longer pause stood.
local ms = math.ceil(tonumber(ARGV[7]))
if redis.call('PTTL', KEYS[2]) >= ms then
  return 0
end
redis.call('SET', KEYS[2], ARGV[5] .. ' ' .. ARGV[6], 'PX', ms)
return 1
