-- lease.lua: renew a run's lease, only while the run still owns its job (see farm/lease.py).
-- KEYS[1] farm:owner:<job>, KEYS[2] farm:leases; ARGV[1] token, ARGV[2] lease seconds, ARGV[3] job id.
-- Returns 1 when renewed, 0 when the run no longer owns the job (ended or taken over).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
return 1
