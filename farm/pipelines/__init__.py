"""Pipelines: jobs that wait for others (``after=``) and use their outputs (``job:<id>/<name>``).

``refs`` finds and rewrites output references in params (pure); ``deps`` checks a submit's
dependencies against Redis and writes a waiting job as RQ's *deferred* job. What a job's end does
to the jobs waiting on it is ``farm/lua/after.lua``, run inside the step that records the end.
"""
