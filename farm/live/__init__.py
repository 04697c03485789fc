"""Reading the farm as it is now, in a fixed number of Redis round trips whatever the history.

- ``state``: one pipelined read of caps, slots, queues, workers and counters, and ``stats()``;
- ``placement``: place in line, wait reason and ETA; ``listing``: paginated job listings;
- ``snapshot``: the TUI's immutable snapshot; ``roster``: who is working, and the worker
  pools' process counts.
"""
