-- scale.lua: how many worker processes one autoscaling pool should start now (farm worker
-- --workers MIN:MAX), decided and reserved in one atomic step, so that pools on several boxes
-- never all start a worker for the same waiting job.
--
-- Eligible work: queued jobs a worker could start right now. Only jobs in the unpaused RQ queues
-- (farm:held:<renderer> included, as dispatch.lua holds them) count, each against a free slot of
-- the effective caps (given by the caller, time window applied) and of the slots in use
-- (farm:slots): a job whose renderer is at its cap, anything while the total cap is in use or
-- while `rq suspend` is in force, and jobs kept anywhere else (scheduled retries, jobs waiting on
-- dependencies) never count. Read only: nothing is moved. The walk stops once it has counted as
-- many jobs as could change the answer, or looked at ARGV[6] entries, so its cost does not grow
-- with the queue.
--
-- Workers already there: alive (heartbeat in farm:heartbeats within ARGV[4] seconds, server
-- clock) and holding no slot = idle, farm-wide; and workers that other pools started but that
-- have not registered yet (their farm:pool:<name> C.POOL_STARTING). This pool's own workers are
-- named in ARGV[9]: busy (holding a slot), idle, or starting (no heartbeat yet); ARGV[10] names its
-- workers that died lately, whose heartbeats must not count as idle workers elsewhere.
--
--   target = mine_busy + eligible - idle_elsewhere - starting_elsewhere, within [min, max]
--   add    = target - mine_alive, at least 0
--
-- The reservation (this pool's starting workers, the ones it is about to start included) is
-- written here, with the record's expiry (ARGV[5] seconds) and farm:pools membership; records of
-- pools that expired are dropped from farm:pools.
--
-- ARGV: 1 pool name, 2 min, 3 max, 4 heartbeat age counted alive (s), 5 record TTL (s),
--       6 scan budget (entries), 7 effective total cap, 8 effective renderer caps (JSON object),
--       9 this pool's live worker names (JSON array), 10 its lately dead ones (JSON array).
-- Returns {add, target, eligible, busy, idle, starting (add included), idle_elsewhere,
--          starting_elsewhere}.

local pool = ARGV[1]
local min_n, max_n = tonumber(ARGV[2]), tonumber(ARGV[3])
local window, ttl, budget = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local total_cap = tonumber(ARGV[7])
local caps = cjson.decode(ARGV[8])
local mine, gone, mine_alive = {}, {}, 0
for _, n in ipairs(cjson.decode(ARGV[9])) do mine[n] = true; mine_alive = mine_alive + 1 end
for _, n in ipairs(cjson.decode(ARGV[10])) do gone[n] = true end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local SEP = C.SLOT_SEP
local CHUNK = 50

-- slots in use, per renderer and in total, and the workers holding them
local used, used_total, holding = {}, 0, {}
for _, v in ipairs(redis.call('HVALS', K.SLOTS)) do
    local r, w = string.match(v, '^([^' .. SEP .. ']*)' .. SEP .. '([^' .. SEP .. ']*)')
    if r then
        used[r] = (used[r] or 0) + 1
        holding[w] = true
    end
    used_total = used_total + 1
end

-- workers alive: this pool's, and the idle ones of every other pool or box
local mine_busy, mine_idle, idle_elsewhere = 0, 0, 0
for _, w in ipairs(redis.call('ZRANGEBYSCORE', K.HEARTBEATS, now - window, '+inf')) do
    if mine[w] then
        if holding[w] then mine_busy = mine_busy + 1 else mine_idle = mine_idle + 1 end
    elseif not holding[w] and not gone[w] then
        idle_elsewhere = idle_elsewhere + 1
    end
end
local mine_starting = mine_alive - mine_busy - mine_idle

local starting_elsewhere = 0
for _, name in ipairs(redis.call('SMEMBERS', K.POOLS)) do
    if name ~= pool then
        local s = redis.call('HGET', K.POOL .. name, C.POOL_STARTING)
        if s then
            starting_elsewhere = starting_elsewhere + (tonumber(s) or 0)
        elseif redis.call('EXISTS', K.POOL .. name) == 0 then
            redis.call('SREM', K.POOLS, name)
        end
    end
end

-- eligible work, counted no further than could change the target
local limit = math.min(total_cap - used_total, idle_elsewhere + starting_elsewhere + max_n - mine_busy)
if min_n >= max_n or redis.call('EXISTS', K.SUSPENDED) == 1 then limit = 0 end
local paused = {}
for _, p in ipairs(redis.call('SMEMBERS', K.PAUSED)) do paused[p] = true end

local left = {} -- renderer -> free slots not yet counted against
local function free(r)
    local cap = caps[r]
    if cap == nil then return 1 end
    if left[r] == nil then left[r] = tonumber(cap) - (used[r] or 0) end
    return left[r]
end

local eligible, examined, truncated = 0, 0, false
local function going() return eligible < limit and not truncated end
local function look(ids) -- false once the walk must stop
    for _, id in ipairs(ids) do
        if eligible >= limit then return false end
        if examined >= budget then truncated = true; return false end
        examined = examined + 1
        local f = redis.call('HMGET', K.JOB .. id, F.STATUS, F.RENDERER)
        if f[1] == 'queued' and type(f[2]) == 'string' and free(f[2]) > 0 then
            if left[f[2]] ~= nil then left[f[2]] = left[f[2]] - 1 end
            eligible = eligible + 1
        end
    end
    return true
end

if limit > 0 then
    -- held jobs first (they were ahead in line), of renderers with a free slot
    for _, r in ipairs(redis.call('SMEMBERS', K.HELD_SET)) do
        for rank, p in ipairs(C.PRIOS) do
            if not paused[p] then
                local lo, offset = rank * C.BAND, 0
                while going() and free(r) > 0 do
                    local ids = redis.call('ZRANGEBYSCORE', K.HELD .. r, lo, lo + C.BAND - 1, 'LIMIT', offset, CHUNK)
                    if not look(ids) or #ids < CHUNK then break end
                    offset = offset + CHUNK
                end
            end
        end
    end
    -- then the queues, from their heads
    for _, p in ipairs(C.PRIOS) do
        if not paused[p] then
            local offset = 0
            while going() do
                local ids = redis.call('LRANGE', K.QUEUE .. p, offset, offset + CHUNK - 1)
                if not look(ids) or #ids < CHUNK then break end
                offset = offset + CHUNK
            end
        end
    end
end
if truncated and eligible == 0 and idle_elsewhere + starting_elsewhere + mine_alive == 0 then
    -- past the walk there may be work that can start: one worker looks (dispatch holds the
    -- capped jobs in front aside, so the next walk sees past them)
    eligible = 1
end

local target = mine_busy + eligible - idle_elsewhere - starting_elsewhere
if target < min_n then target = min_n end
if target > max_n then target = max_n end
local add = target - mine_alive
if add < 0 then add = 0 end

local record = K.POOL .. pool
redis.call('HSET', record, C.POOL_STARTING, mine_starting + add)
redis.call('EXPIRE', record, ttl)
redis.call('SADD', K.POOLS, pool)

return {add, target, eligible, mine_busy, mine_idle, mine_starting + add, idle_elsewhere, starting_elsewhere}
