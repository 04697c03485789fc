"""The render cache: identical renders (same renderer, normalized params, input files and tool
version) done once. ``key`` builds the key and memoizes input digests by inode and mtime;
``entries`` keeps what a key maps to in Redis (the job whose outputs it reuses), the lock that
makes identical jobs running at once wait for the first, and the bounds (age, total size).
The work horse uses them (``farm/worker/caching.py``); a finished miss records its entry in
the same step that records the end (``endings.finish``).
"""
