-- after.lua (a library, loaded before the scripts that end jobs): what a job's end does to the
-- jobs submitted with after=[it] (RQ's "deferred" jobs, listed in rq:job:<id>:dependents).
--
-- after_ended(id) reads the job's status as just written:
--   finished            each deferred dependent whose dependencies have all finished goes to the
--                       back of its queue (status queued), and an idle worker is woken;
--   failed or canceled  each deferred dependent is canceled with "dependency <id> failed",
--                       and so are theirs, transitively (farm_dep_canceled names <id>);
--   anything else       (a retry: queued or scheduled) nothing: the dependents keep waiting.
-- It runs inside the script that records the end, so release and end are one atomic step.
-- after_rewait(id): <id> was retried: the jobs its failure canceled wait for it again.

local function after_prio(id)
    local p = redis.call('HGET', K.JOB .. id, F.ORIGIN)
    for _, q in ipairs(C.PRIOS) do
        if q == p then return p end
    end
    return C.DEFAULT_PRIO
end

local function after_waits_on(id)
    local raw = redis.call('HGET', K.JOB .. id, F.DEPENDENCY_IDS)
    if not raw then return {} end
    local ok, ids = pcall(cjson.decode, raw)
    if not ok or type(ids) ~= 'table' then return {} end
    return ids
end

local function after_all_finished(id)
    for _, dep in ipairs(after_waits_on(id)) do
        if type(dep) == 'string' then
            local s = redis.call('HGET', K.JOB .. dep, F.STATUS)
            if s and s ~= 'finished' then return false end -- gone (expired after finishing) counts as done
        end
    end
    return true
end

local function after_ended(id)
    local status = redis.call('HGET', K.JOB .. id, F.STATUS)
    if status == 'finished' then
        local released = 0
        for _, d in ipairs(redis.call('SMEMBERS', K.JOB .. id .. K.DEPENDENTS)) do
            if redis.call('HGET', K.JOB .. d, F.STATUS) == 'deferred' and after_all_finished(d) then
                local p = after_prio(d)
                redis.call('HSET', K.JOB .. d, F.STATUS, 'queued')
                redis.call('ZREM', K.DEFERRED .. p, d)
                redis.call('SADD', K.QUEUES_SET, K.QUEUE .. p)
                redis.call('RPUSH', K.QUEUE .. p, d)
                released = released + 1
            end
        end
        local ttl = redis.call('TTL', K.JOB .. id) -- the list goes when the job does
        if ttl > 0 then redis.call('EXPIRE', K.JOB .. id .. K.DEPENDENTS, ttl) end
        if released > 0 then
            redis.call('LPUSH', K.WAKE, '1')
            redis.call('LTRIM', K.WAKE, 0, 0)
        end
        return released
    end
    if status ~= 'failed' and status ~= 'canceled' and status ~= 'stopped' then return 0 end
    local ended = redis.call('HGET', K.JOB .. id, F.ENDED) or ''
    local now = tonumber(redis.call('TIME')[1])
    local todo, i, canceled = {id}, 1, 0
    while i <= #todo do
        local x = todo[i]
        i = i + 1
        local ttl_x = redis.call('TTL', K.JOB .. x) -- kept while x is: a retry of it brings them back
        if ttl_x > 0 then redis.call('EXPIRE', K.JOB .. x .. K.DEPENDENTS, ttl_x) end
        for _, d in ipairs(redis.call('SMEMBERS', K.JOB .. x .. K.DEPENDENTS)) do
            local dkey = K.JOB .. d
            if redis.call('HGET', dkey, F.STATUS) == 'deferred' then
                local p = after_prio(d)
                local ttl = tonumber(redis.call('HGET', dkey, F.FAILURE_TTL) or '')
                if not ttl or ttl <= 0 or ttl > 1e9 then ttl = C.CANCELED_TTL end
                ttl = math.floor(ttl)
                redis.call('HSET', dkey, F.STATUS, 'canceled', F.ERROR_KIND, C.CANCELED,
                    F.ERROR, 'dependency ' .. id .. ' failed', F.ENDED, ended, F.DEP_CANCELED, id,
                    F.STAGE, '')
                redis.call('ZREM', K.DEFERRED .. p, d)
                redis.call('ZADD', K.CANCELED .. p, now + ttl, d)
                redis.call('EXPIRE', dkey, ttl)
                redis.call('XADD', K.EVENTS, 'MAXLEN', '~', C.EVENTS_MAXLEN, '*', 'e', 'end', 'job', d,
                    's', 'canceled')
                todo[#todo + 1] = d
                canceled = canceled + 1
            end
        end
    end
    return canceled
end

local function after_rewait(id)
    local todo, i, back = {id}, 1, 0
    while i <= #todo do
        local x = todo[i]
        i = i + 1
        redis.call('PERSIST', K.JOB .. x .. K.DEPENDENTS)
        for _, d in ipairs(redis.call('SMEMBERS', K.JOB .. x .. K.DEPENDENTS)) do
            local dkey = K.JOB .. d
            if redis.call('HGET', dkey, F.STATUS) == 'canceled' and redis.call('HGET', dkey, F.DEP_CANCELED) == id then
                local p = after_prio(d)
                redis.call('HSET', dkey, F.STATUS, 'deferred', F.STAGE, '')
                redis.call('HDEL', dkey, F.ERROR, F.ERROR_KIND, F.DEP_CANCELED, F.ENDED)
                redis.call('PERSIST', dkey)
                redis.call('ZREM', K.CANCELED .. p, d)
                redis.call('ZADD', K.DEFERRED .. p, '+inf', d)
                todo[#todo + 1] = d
                back = back + 1
            end
        end
    end
    return back
end
