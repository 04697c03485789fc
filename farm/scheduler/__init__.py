"""``farm scheduler``: delayed retries (rq-scheduler's schedule, moved by ``loop``) and the sweep
(``sweep``: lease takeovers, orphaned slots, retention, dead workers)."""
