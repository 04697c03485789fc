"""Housekeeping of the farm's store on the render host, run by ``farm serve`` every minute:
- partial uploads (``uploads/.partial/<job>``) untouched for an hour go (a submit that died);
- committed uploads (``uploads/<job>``) go once their job is gone from Redis: inputs follow the
  job's retention;
- temporary files of transfers that died (``.incoming``) go after an hour;
- a run's staging dir whose run won but whose worker died before committing is published (as its
  commit would have); then ``worker.housekeeping.clean_host_files`` removes abandoned staging dirs
  and stale logs by its own rules.
Published outputs are the team's renders and are never removed here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from .. import keys
from ..config import FarmConfig
from ..files import store
from ..submit import JOB_ID_RE
from ..worker import housekeeping, journal
from . import publish
from .app import RUN_TOKEN_RE
from .streams import INCOMING

log = logging.getLogger("farm.serve")

UPLOAD_GRACE = 3600.0  # seconds a partial upload (or a transfer's temporary file) may sit untouched
BATCH = 500  # directories looked at per pass, per kind


def clean_store(connection: Redis, config: FarmConfig, now: float | None = None) -> int:
    """One pass over the store; returns how many entries were removed. Never raises."""
    now = time.time() if now is None else now
    removed = 0
    for step in (_partial_uploads, _incoming, _committed_uploads, _orphan_winners):
        try:
            removed += step(connection, config, now)
        except (RedisError, OSError) as exc:
            log.warning("store housekeeping (%s): %s", step.__name__.strip("_"), exc)
    return removed + housekeeping.clean_host_files(connection, config, now)


def _entries(directory: Path) -> list[Path]:
    found: list[Path] = []
    with contextlib.suppress(OSError), os.scandir(directory) as it:
        for entry in it:
            if entry.name != INCOMING:
                found.append(Path(entry.path))
            if len(found) >= BATCH:
                break
    return found


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                newest = max(newest, (Path(root) / name).lstat().st_mtime)
    return newest


def _partial_uploads(connection: Redis, config: FarmConfig, now: float) -> int:
    removed = 0
    for path in _entries(config.data_dir / store.UPLOADS / store.PARTIAL):
        if now - _newest_mtime(path) > UPLOAD_GRACE:
            _remove(path)
            removed += 1
    return removed


def _incoming(connection: Redis, config: FarmConfig, now: float) -> int:
    removed = 0
    for directory in (
        config.data_dir / store.UPLOADS / store.PARTIAL / INCOMING,
        config.output_dir / store.PARTIAL / INCOMING,
    ):
        for path in _entries(directory):
            with contextlib.suppress(OSError):
                if now - path.lstat().st_mtime > UPLOAD_GRACE:
                    path.unlink()
                    removed += 1
    return removed


def _committed_uploads(connection: Redis, config: FarmConfig, now: float) -> int:
    found = _entries(config.data_dir / store.UPLOADS)
    candidates = [p for p in found if p.name != store.PARTIAL and JOB_ID_RE.fullmatch(p.name)]
    if not candidates:
        return 0
    with connection.pipeline(transaction=False) as pipe:
        for path in candidates:
            pipe.exists(keys.job(path.name))
        alive = pipe.execute()
    removed = 0
    for path, exists in zip(candidates, alive, strict=True):
        if not exists:
            _remove(path)
            removed += 1
    return removed


def _orphan_winners(connection: Redis, config: FarmConfig, now: float) -> int:
    """Publish staging dirs whose run won but was never committed (its worker died after
    recording its end). Everything else about staging dirs is the worker housekeeping's."""
    published = 0
    for path in _entries(config.output_dir / store.PARTIAL):
        job_id, _, run_token = path.name.rpartition(".")
        if not (JOB_ID_RE.fullmatch(job_id) and RUN_TOKEN_RE.fullmatch(run_token)) or not path.is_dir():
            continue
        if now - path.lstat().st_mtime <= housekeeping.STAGING_GRACE:
            continue
        if (journal.journal_dir(config) / f"{path.name}.json").exists():
            continue  # a local worker's ending waiting in its journal still owns these files
        with connection.pipeline(transaction=False) as pipe:
            pipe.get(keys.owner(job_id))
            pipe.hmget(keys.job(job_id), keys.RQ_STATUS, keys.F_ENDED_BY)
            owner, (status, ended_by) = pipe.execute()
        if owner == run_token.encode() or status != b"finished" or ended_by != run_token.encode():
            continue
        outcome = publish.publish_run(connection, config, job_id, run_token)
        if outcome.status < 300:
            log.warning("store housekeeping: published %s, whose worker died before committing", path.name)
            published += 1
    return published


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
