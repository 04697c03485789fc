-- heartbeat.lua: record a worker's heartbeat in farm:heartbeats with the Redis server's clock,
-- so the sweep (on any host) judges liveness without trusting the hosts' clocks to agree.
-- KEYS[1] farm:heartbeats; ARGV[1] worker name. Returns the server time used.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
return tostring(now)
