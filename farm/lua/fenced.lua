-- fenced.lua: apply a list of writes only if the job's run is still owned by the given token.
--
-- The run that took a slot (dispatch.lua) wrote its token to farm:owner:<job>. Whoever ends the
-- run (the horse, the worker, the sweep, a cancel) sends its outcome's writes here; they are
-- applied, and the owner key deleted, only while the token still matches, so a run ends once.
-- KEYS[1] farm:owner:<job>, KEYS[2] rq:job:<job>; ARGV[1] token ("" = whichever run holds it);
-- ARGV[2] JSON list of commands, each a list of strings; ARGV[3] "end" when these writes end the
-- run: the job hash (if it still exists) then records the ending token in farm_ended_by, so a
-- caller whose reply was lost can tell that its own claim won, and the jobs waiting on it
-- (after=) are released or canceled in the same step (after.lua). Returns 1 if applied, 0 if not.

local owner = redis.call('GET', KEYS[1])
if not owner then return 0 end
if ARGV[1] ~= '' and owner ~= ARGV[1] then return 0 end
for _, command in ipairs(cjson.decode(ARGV[2])) do
    redis.call(unpack(command))
end
if ARGV[3] == 'end' and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[2], F.ENDED_BY, owner)
    after_ended(string.sub(KEYS[2], #K.JOB + 1)) -- after.lua: release or cancel the jobs waiting on it
end
return 1
