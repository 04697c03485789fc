"""Retention for the files a host keeps for the farm: per-job logs and attempts' staging dirs.

Redis keys expire by themselves; files on each worker's disk do not. Idle workers (and the sweep,
on the scheduler's host) call ``clean_host_files`` now and then:
- a job's full log (``log_dir/<job>.log``) goes once the job is gone from Redis, or at the latest
  after the longest retention;
- an attempt's staging dir (``output_dir/.partial/<job>.<token>``) goes once its run is over — or,
  if that attempt won (the job hash says it ended with that token) but its owner died between
  recording the end and the rename, it is published now.
Published outputs (``output_dir/<job>/``) are the team's renders and are never removed here.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from .. import keys
from ..config import FarmConfig
from ..files import store
from . import journal

log = logging.getLogger("farm.housekeeping")

BATCH = 500  # files looked at per pass
LOG_GRACE = 3600.0  # seconds a log may outlive its job (a job ending right now still writes it)
STAGING_GRACE = 60.0  # seconds before an ownerless staging dir counts as abandoned


def clean_host_files(connection: Redis, config: FarmConfig, now: float | None = None) -> int:
    """Remove this host's stale farm files; returns how many were removed. Never raises."""
    now = time.time() if now is None else now
    removed = 0
    try:
        removed += _clean_logs(connection, config, now)
        removed += _clean_staging(connection, config, now)
    except (RedisError, OSError) as exc:
        log.warning("housekeeping: %s", exc)
    return removed


def _oldest_first(directory: Path, pattern: str) -> list[tuple[float, Path]]:
    found = []
    with contextlib.suppress(OSError):
        for path in directory.glob(pattern):
            with contextlib.suppress(OSError):
                found.append((path.stat().st_mtime, path))
    found.sort()
    return found[:BATCH]


def _clean_logs(connection: Redis, config: FarmConfig, now: float) -> int:
    keep_for = max(config.retention.finished, config.retention.failed, config.retention.canceled)
    candidates = [(m, p) for m, p in _oldest_first(config.log_dir, "*.log") if now - m > LOG_GRACE]
    if not candidates:
        return 0
    with connection.pipeline(transaction=False) as pipe:
        for _, path in candidates:
            pipe.exists(keys.job(path.stem))
        exists = pipe.execute()
    removed = 0
    for (mtime, path), alive in zip(candidates, exists, strict=True):
        if not alive or now - mtime > keep_for:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _clean_staging(connection: Redis, config: FarmConfig, now: float) -> int:
    partial = config.output_dir / store.PARTIAL
    candidates = [(m, p) for m, p in _oldest_first(partial, "*.*") if p.is_dir() and now - m > STAGING_GRACE]
    removed = 0
    for _, path in candidates:
        job_id, _, token = path.name.rpartition(".")
        if not job_id or (journal.journal_dir(config) / f"{path.name}.json").exists():
            continue  # an ending waiting in the journal still needs these files
        with connection.pipeline(transaction=False) as pipe:
            pipe.get(keys.owner(job_id))
            pipe.hmget(keys.job(job_id), "status", keys.F_ENDED_BY, keys.F_RESULT)
            owner, (status, ended_by, result) = pipe.execute()
        if owner is not None and owner.decode("utf-8", "replace") == token:
            continue  # still rendering
        won = status == b"finished" and ended_by is not None and ended_by.decode("utf-8", "replace") == token
        if won and store.publish_winner(connection, config, job_id, token):
            log.warning("housekeeping: published %s, whose run ended before its files were placed", path.name)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed
