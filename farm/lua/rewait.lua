-- rewait.lua: after_rewait (after.lua): ARGV[1] was retried; the jobs its failure canceled wait
-- for it again. Queued in the retry's MULTI. Returns how many went back to waiting.
return after_rewait(ARGV[1])
