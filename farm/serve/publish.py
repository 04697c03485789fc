"""Publishing a run's outputs that a worker on another box sent to the store: its staging dir
becomes the job's output dir in one rename, only for the run whose end was recorded (status
``finished``, ``farm_ended_by`` == its token), and the job's result is rewritten to name the files
where they now are. Called by ``app.py`` (a run's commit) and ``housekeeping.py`` (a winner whose
worker died before committing). Also where a job's published outputs are, for downloads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import WatchError

from .. import keys
from ..config import FarmConfig
from ..errors import InvalidJobError
from ..files import store
from ..records import read_job, safe_json
from ..transitions import rq_result

log = logging.getLogger("farm.serve")

_PUBLISHING = threading.Lock()  # one publish at a time: the app's threads and housekeeping's


@dataclass(frozen=True)
class Outcome:
    status: int  # the HTTP status the commit answers with
    message: str
    output_dir: str = ""
    outputs: list[str] = field(default_factory=list)


def published_dir(config: FarmConfig, job_id: str, result: dict[str, Any] | None) -> Path:
    """Where a job's outputs are published on this host: the result's ``output_dir`` when it is
    this job's dir right under ``output_dir`` (``<job_id>`` or ``<job_id>.<token>``), else
    ``<output_dir>/<job_id>``. Never another job's dir, never the staging area."""
    root = config.output_dir
    recorded = (result or {}).get("output_dir")
    if isinstance(recorded, str) and recorded:
        path = Path(recorded)
        if (
            path.is_absolute()
            and path.parent == root
            and (path.name == job_id or path.name.startswith(job_id + "."))
            and path.resolve() == root.resolve() / path.name
        ):
            return path
    return root / job_id


def plain_name(name: object) -> str:
    """``store.file_name``, also refusing names with no parts at all (``"."``) as bad input."""
    try:
        return store.file_name(name)
    except IndexError:  # store.file_name indexes the first part of a name that has none
        raise InvalidJobError(f"file name must be a plain relative path: {name!r}") from None


def output_names(result: dict[str, Any]) -> list[str]:
    """The names (relative paths) of a result's outputs: from ``files``, else from ``outputs``
    relative to ``output_dir``. Anything that is not a plain relative name is left out."""
    names: list[str] = []
    files = result.get("files")
    if isinstance(files, list) and files:
        raw = [item.get("name") for item in files if isinstance(item, dict)]
    else:
        base = Path(str(result.get("output_dir") or "/"))
        outputs = result.get("outputs")
        raw = [
            Path(item).relative_to(base).as_posix()
            for item in outputs or []
            if isinstance(item, str) and Path(item).is_relative_to(base)
        ]
    for name in raw:
        try:
            names.append(plain_name(name))
        except InvalidJobError:
            log.warning("publish: an output name that cannot be published: %r", name)
    return names


def _sizes(result: dict[str, Any]) -> dict[str, int]:
    files = result.get("files")
    if not isinstance(files, list):
        return {}
    return {
        str(item["name"]): int(item["size"])
        for item in files
        if isinstance(item, dict) and isinstance(item.get("size"), int) and "name" in item
    }


def _mismatched(staging: Path, names: list[str], sizes: dict[str, int]) -> list[str]:
    bad = []
    for name in names:
        try:
            path = store.inside(staging, name)
            info = path.lstat()
        except (InvalidJobError, OSError):
            bad.append(name)
            continue
        if not path.is_file() or path.is_symlink() or sizes.get(name, info.st_size) != info.st_size:
            bad.append(name)
    return bad


def publish_run(connection: Redis, config: FarmConfig, job_id: str, run_token: str) -> Outcome:
    """Publish run ``run_token``'s staged outputs of ``job_id`` if that run is the job's winner."""
    with _PUBLISHING:
        return _publish(connection, config, job_id, run_token)


def _publish(connection: Redis, config: FarmConfig, job_id: str, run_token: str) -> Outcome:
    staging = store.staging_dir(config, job_id, run_token)
    key = keys.job(job_id)
    status, ended_by, blob = connection.hmget(key, keys.RQ_STATUS, keys.F_ENDED_BY, keys.F_RESULT)
    if status != b"finished" or ended_by != run_token.encode():
        if connection.get(keys.owner(job_id)) == run_token.encode():
            return Outcome(409, f"job {job_id}: run {run_token[:8]} has not recorded its end yet")
        shutil.rmtree(staging, ignore_errors=True)
        return Outcome(409, f"job {job_id}: run {run_token[:8]} is not the run whose end was recorded")
    result = read_job(job_id, {keys.F_RESULT.encode(): blob} if blob else {}).result or {}
    names = output_names(result)
    if not staging.is_dir():
        current = published_dir(config, job_id, result)
        if names and current.is_dir() and str(current) == result.get("output_dir"):
            return Outcome(200, "already published", str(current), list(result.get("outputs") or []))
        if not names:
            return Outcome(200, "no outputs to publish")
        return Outcome(409, f"job {job_id}: no outputs were sent for run {run_token[:8]}")
    if not names:
        shutil.rmtree(staging, ignore_errors=True)
        return Outcome(200, "no outputs to publish")
    bad = _mismatched(staging, names, _sizes(result))
    if bad:
        shutil.rmtree(staging, ignore_errors=True)
        return Outcome(409, f"job {job_id}: outputs missing or of the wrong size: {', '.join(bad[:5])}")
    target = _target(config, job_id, run_token, result)
    try:
        os.replace(staging, target)
    except OSError as exc:
        return Outcome(409, f"job {job_id}: cannot publish to {target.name}: {exc.strerror}")
    outputs = [str(target / name) for name in names]
    _rewrite_result(connection, job_id, run_token, str(target), outputs)
    log.info("published %d output(s) of job %s (run %s) in %s", len(names), job_id, run_token[:8], target)
    return Outcome(200, "published", str(target), outputs)


def _target(config: FarmConfig, job_id: str, run_token: str, result: dict[str, Any]) -> Path:
    """The recorded output dir when it is a free dir of this job on this host (a run of this
    host, or one whose box lays out the store alike), else the store's choice. Never replaced."""
    recorded = published_dir(config, job_id, result)
    if str(recorded) == result.get("output_dir") and not recorded.exists():
        return recorded
    return store.publish_target(config, job_id, run_token)


def _rewrite_result(
    connection: Redis, job_id: str, run_token: str, output_dir: str, outputs: list[str]
) -> bool:
    """Point the job's result at the published files (every other field kept), in its hash and in
    RQ's result record, unless the job changed hands meanwhile (WATCH/MULTI on the job's hash)."""
    key = keys.job(job_id)
    with connection.pipeline() as pipe:
        for _ in range(20):
            try:
                pipe.watch(key)
                status, ended_by, blob = pipe.hmget(key, keys.RQ_STATUS, keys.F_ENDED_BY, keys.F_RESULT)
                if status != b"finished" or ended_by != run_token.encode():
                    pipe.unwatch()
                    return False
                try:
                    result = safe_json(blob) if blob else {}
                except ValueError:
                    result = {}
                if not isinstance(result, dict):
                    result = {}
                result.update(output_dir=output_dir, outputs=outputs)
                ttl = pipe.ttl(key)
                pipe.multi()
                pipe.hset(key, keys.F_RESULT, json.dumps(result))
                rq_result(pipe, job_id, ttl if ttl > 0 else -1, value=result)  # Job.return_value() too
                pipe.execute()
                return True
            except WatchError:
                continue
    log.warning("publish: job %s changed too often to record where its outputs are", job_id)
    return False
