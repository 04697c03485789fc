-- ended.lua: after_ended (after.lua) for an end written by a MULTI of its own (a cancel before the
-- job ran, a corrupt job failed): queued in that MULTI, so it sees the end and runs with it.
-- ARGV[1] the job id. Returns how many dependents were released or canceled.
return after_ended(ARGV[1])
