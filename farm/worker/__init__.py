"""Workers: taking jobs and running them, on any box.

- ``worker``: ``FarmWorker`` (RQ's forking Worker) — its lifecycle and the cap-aware dispatch loop;
- ``monitor``: the worker's side of a running horse (timeouts, cancels, leases, ending the run);
- ``horse``: the work horse itself — running the job, recording its end, process mechanics;
- ``rendering``: the job function every farm job calls, the render context, publishing outputs;
- ``lease``: a run's self-fencing lease; ``journal``: endings kept while Redis is away;
- ``pool``: ``farm worker --workers N`` or ``MIN:MAX``; ``scaling``: pool sizes and when to grow
  (``lua/scale.lua``); ``housekeeping``: retention of this host's files.
"""
