-- dispatch.lua: atomically pick the best job a worker may start now and take its cap slot.
--
-- Order of preference: priority (high, medium, low), then place in line. A queued job whose
-- renderer is at its cap is moved ("held") from its RQ queue into farm:held:<renderer>, scored
-- by (priority rank, arrival order), so it keeps its place and never blocks the jobs behind it.
-- When that renderer has a free slot again, its best held job competes with the queue heads;
-- held jobs of a priority come before the queue head of the same priority (they were ahead).
--
-- Nothing starts while the total in use >= the effective total cap, or while a renderer's slots
-- in use >= its effective cap: both are counted from farm:slots inside this script, so no
-- interleaving of workers can exceed a cap.
--
-- Place in line: a job gets its line number (farm_line, from farm:seq) as it leaves its queue,
-- held or started. A run put back in line (runs.requeue) goes into the held set with that same
-- number, so it keeps its place: ahead of every job that reached the queue head after it.
-- A started run gets a lease (farm:leases, server clock + ARGV[7] seconds; see farm/lease.py).
--
-- ARGV: 1 worker name, 2 dispatch token, 3 local minute of day, 4 started_at (RQ's UTC
--       format), 5 default total cap, 6 max jobs to hold in one call, 7 lease seconds,
--       8 retention of failed jobs (seconds).
-- Times in farm:slots come from the server's clock (TIME). The call is idempotent per token: if
-- a reply was lost and the client sends it again, the job already taken with that token is
-- returned again instead of a second one being taken.
-- Returns {"ok", job_id, queue, field1, value1, ...} (the job hash), or {"", reason} where
-- reason is "empty" (nothing queued), "blocked" (queued jobs exist but none may start) or
-- "busy" (the hold budget ran out, or a corrupt job was failed; call again).
--
-- Bad data never stops dispatch: every value read here is checked before any write. A caps value
-- that is not a number counts as the default total, or 0 for a renderer (never more than the
-- cap). A job whose renderer name or attempt count cannot be read is failed here, atomically
-- (invalid_input, "corrupt job record: <field>", ARGV[8] seconds of retention), and never takes
-- a slot; the worker checks the rest of the record (records.read_job) before it runs anything.

local worker, token = ARGV[1], ARGV[2]
local minute = tonumber(ARGV[3])
local started_at = ARGV[4]
local hold_budget = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
local failed_ttl = tonumber(ARGV[8]) or 604800
local clock = redis.call('TIME')
local now = clock[1] .. '.' .. string.format('%06d', tonumber(clock[2]))
local now_num = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local DISPATCHED = K.DISPATCHED .. token

local function reply(id, queue_name)
    local out = {'ok', id, queue_name}
    local fields = redis.call('HGETALL', K.JOB .. id)
    for i = 1, #fields do out[#out + 1] = fields[i] end
    return out
end

local again = redis.call('GET', DISPATCHED)
if again then
    if redis.call('GET', K.OWNER .. again) == token then
        return reply(again, redis.call('HGET', K.JOB .. again, F.ORIGIN) or C.DEFAULT_PRIO)
    end
    return {'', 'empty'}
end

local BIG = C.BAND
local PRIOS = C.PRIOS
local IS_PRIO = {}
for _, p in ipairs(PRIOS) do IS_PRIO[p] = true end

local function valid_renderer(r)
    return type(r) == 'string' and #r <= 64 and string.match(r, '^[%w_%.%-]+$') ~= nil
end

local function whole(v) -- a stored integer (or nothing), as HINCRBY needs it
    if not v then return true end
    local n = tonumber(v)
    return n ~= nil and n == math.floor(n) and n >= 0 and n < 1e15 and string.match(v, '^%d+$') ~= nil
end

local function fail_corrupt(id, field, prio)
    local jkey = K.JOB .. id
    redis.call('HSET', jkey, F.STATUS, 'failed', F.ENDED, started_at, F.ERROR_KIND, C.INVALID_INPUT,
        F.ERROR, C.CORRUPT .. field)
    redis.call('HDEL', jkey, F.CANCEL, F.RETRY_AT)
    redis.call('ZADD', K.FAILED .. prio, math.ceil(now_num) + failed_ttl, id)
    redis.call('EXPIRE', jkey, failed_ttl)
    redis.call('EXPIRE', K.LOG .. id, failed_ttl)
    redis.call('XADD', K.EVENTS, 'MAXLEN', '~', C.EVENTS_MAXLEN, '*', 'e', 'end', 'job', id, 's', 'failed')
    after_ended(id) -- after.lua: the jobs waiting on it are canceled
end

if not whole(redis.call('GET', K.SEQ)) then redis.call('DEL', K.SEQ) end
local SLOTS, CAPS, PAUSED = K.SLOTS, K.CAPS, K.PAUSED
local HELD_SET, WAKE = K.HELD_SET, K.WAKE

-- caps and the window in force
local caps = {}
local flat = redis.call('HGETALL', CAPS)
for i = 1, #flat, 2 do caps[flat[i]] = flat[i + 1] end
local mult = 1.0
if caps[C.CAPS_WINDOWS] then
    for s, e, m in string.gmatch(caps[C.CAPS_WINDOWS], '(%d+)-(%d+)-([%d%.]+)') do
        s, e, m = tonumber(s), tonumber(e), tonumber(m)
        if s and e and m and m > 0 and m <= 100 then
            local inside
            if s <= e then inside = minute >= s and minute < e else inside = minute >= s or minute < e end
            if inside then mult = m; break end
        end
    end
end
local function number(value, default)
    local n = tonumber(value)
    if n == nil or n ~= n or n < 0 or n > 1e9 then return default end
    return n
end
local function scaled(value) return math.floor(value * mult + 1e-9) end
local total_cap = scaled(number(caps[C.CAPS_TOTAL], number(ARGV[5], 0)))

-- slots in use, per renderer and in total
local used, used_total = {}, 0
local slot_values = redis.call('HVALS', SLOTS)
for _, v in ipairs(slot_values) do
    local r = string.match(v, '^([^' .. C.SLOT_SEP .. ']*)')
    used[r] = (used[r] or 0) + 1
    used_total = used_total + 1
end

local function has_free_slot(r)
    local c = caps[C.CAPS_RENDERER .. r]
    if c == nil then return true end
    return (used[r] or 0) < scaled(number(c, 0))
end

local paused = {}
for _, p in ipairs(redis.call('SMEMBERS', PAUSED)) do paused[p] = true end

local function anything_waiting()
    for _, p in ipairs(PRIOS) do
        if not paused[p] and redis.call('LLEN', K.QUEUE .. p) > 0 then return true end
    end
    return redis.call('SCARD', HELD_SET) > 0
end

if used_total >= total_cap then
    if anything_waiting() then return {'', 'blocked'} end
    return {'', 'empty'}
end

local best_score, best_id, best_renderer, best_source = nil, nil, nil, nil
local function consider(score, id, renderer, source)
    if best_score == nil or score < best_score then
        best_score, best_id, best_renderer, best_source = score, id, renderer, source
    end
end

-- queue heads: hold jobs whose renderer is full until an eligible head shows up
local held_now = 0
for rank, p in ipairs(PRIOS) do
    if not paused[p] then
        local qkey = K.QUEUE .. p
        while true do
            local id = redis.call('LINDEX', qkey, 0)
            if not id then break end
            local f = redis.call('HMGET', K.JOB .. id, F.STATUS, F.RENDERER)
            local status, r = f[1], f[2]
            if not r and redis.call('EXISTS', K.JOB .. id) == 1 then
                consider(rank * BIG + BIG - 1, id, '', p) -- not a farm job: the worker refuses it
                break
            elseif status ~= 'queued' then
                redis.call('LPOP', qkey) -- stale id: job gone or no longer queued
            elseif not valid_renderer(r) then
                redis.call('LPOP', qkey)
                fail_corrupt(id, F.RENDERER, p)
            elseif has_free_slot(r) then
                consider(rank * BIG + BIG - 1, id, r, p)
                break
            else
                if held_now >= hold_budget then return {'', 'busy'} end
                redis.call('LPOP', qkey)
                local seq = redis.call('INCR', K.SEQ)
                redis.call('HSET', K.JOB .. id, F.LINE, seq)
                redis.call('ZADD', K.HELD .. r, rank * BIG + seq, id)
                redis.call('SADD', HELD_SET, r)
                held_now = held_now + 1
            end
        end
        if best_score ~= nil then break end -- lower queues cannot beat this head
    end
end

-- held jobs of renderers that have a free slot again
for _, r in ipairs(redis.call('SMEMBERS', HELD_SET)) do
    local hkey = K.HELD .. r
    if not valid_renderer(r) or redis.call('ZCARD', hkey) == 0 then
        redis.call('SREM', HELD_SET, r)
    elseif has_free_slot(r) then
        for rank, p in ipairs(PRIOS) do
            if not paused[p] then
                local lo, hi = rank * BIG, (rank + 1) * BIG - 1
                while true do
                    local top = redis.call('ZRANGEBYSCORE', hkey, lo, hi, 'WITHSCORES', 'LIMIT', 0, 1)
                    if #top == 0 then break end
                    if redis.call('HGET', K.JOB .. top[1], F.STATUS) == 'queued' then
                        consider(tonumber(top[2]), top[1], r, 'held')
                        break
                    end
                    redis.call('ZREM', hkey, top[1]) -- stale
                end
            end
        end
    end
end

if best_id == nil then
    if anything_waiting() then return {'', 'blocked'} end
    return {'', 'empty'}
end

local jkey = K.JOB .. best_id
local best_prio = best_source
if best_source == 'held' then best_prio = PRIOS[math.floor(best_score / BIG)] or C.DEFAULT_PRIO end
if best_renderer ~= '' and not whole(redis.call('HGET', jkey, F.ATTEMPTS)) then
    if best_source == 'held' then
        redis.call('ZREM', K.HELD .. best_renderer, best_id)
    else
        redis.call('LPOP', K.QUEUE .. best_source)
    end
    fail_corrupt(best_id, F.ATTEMPTS, best_prio)
    return {'', 'busy'}
end
if best_source == 'held' then
    redis.call('ZREM', K.HELD .. best_renderer, best_id)
else
    redis.call('LPOP', K.QUEUE .. best_source)
    if best_renderer ~= '' then redis.call('HSET', jkey, F.LINE, redis.call('INCR', K.SEQ)) end
end

local queue_name = redis.call('HGET', jkey, F.ORIGIN)
if not IS_PRIO[queue_name or ''] then queue_name = best_prio end
if best_renderer ~= '' then
    redis.call('HSET', SLOTS, best_id, best_renderer .. C.SLOT_SEP .. worker .. C.SLOT_SEP .. now .. C.SLOT_SEP .. queue_name)
    redis.call('SET', K.OWNER .. best_id, token)
    redis.call('ZADD', K.LEASES, now_num + lease, best_id)
    redis.call('SET', DISPATCHED, best_id, 'EX', 60)
    redis.call('HSET', jkey, F.STATUS, 'started', F.WORKER, worker, F.STARTED, started_at,
        F.HEARTBEAT, started_at, F.ENDED, '', F.PROGRESS, '0', F.STAGE, 'starting',
        F.TOKEN, token)
    redis.call('HINCRBY', jkey, F.ATTEMPTS, 1)
    redis.call('XADD', K.EVENTS, 'MAXLEN', '~', C.EVENTS_MAXLEN, '*', 'e', 'start', 'job', best_id,
        'r', best_renderer, 'p', queue_name, 'w', worker)
    redis.call('HDEL', jkey, F.RETRY_AT, F.CANCEL)
    used_total = used_total + 1
end

-- chain wake-ups: if more could start, wake one more idle worker
if used_total < total_cap and anything_waiting() then
    redis.call('LPUSH', WAKE, '1')
    redis.call('LTRIM', WAKE, 0, 0)
end

return reply(best_id, queue_name)
