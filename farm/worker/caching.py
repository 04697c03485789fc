"""The render cache in the work horse: before ``render``, look the key up, wait for an identical
job rendering it now, or take it and render.

A hit puts the earlier job's outputs in this attempt's staging dir (hard links from the store on
its box, downloads through farm serve elsewhere) and returns that job's result with
``cached_from``; the run then ends like any other (its outputs published as its own). While an
identical job runs, this one waits (polling, with its lease renewed, its timeout and cancel in
force) and then finds the entry, or takes over if that job failed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from redis import Redis

from .. import keys
from ..cache import entries
from ..cache.key import cache_key, digest
from ..config import FarmConfig
from ..errors import FarmError
from ..files import jobs, store, transfer
from ..models import ErrorKind
from ..records import info_from_hash
from ..render import RendererEnv, RenderError
from .exchange import Place

WAIT_POLL = 0.5  # seconds between looks while an identical job renders
KEEP_FROM_RESULT = ("cache_key", "outputs", "output_dir", "files", "sizes", "cached_from")


def key_for(connection: Redis, backend: Any, renderer: str, parsed: Any, env: RendererEnv) -> str:
    inputs = [digest(connection, path) for path in backend.cache_inputs(parsed, env)]
    params = json.loads(parsed.model_dump_json(exclude_unset=True))
    return cache_key(renderer, backend.tool_version(), params, inputs)


def reuse_or_lock(
    connection: Redis,
    config: FarmConfig,
    place: Place,
    key: str,
    ctx: Any,
    job_id: str,
    timeout: float,
) -> dict[str, Any] | None:
    """The result of a hit (its files already in ``ctx.staging_dir``), or None: render it."""
    waited_for = ""
    while True:
        entry = entries.lookup(connection, key)
        if entry is not None:
            result = _reuse(connection, config, place, entry, ctx.staging_dir)
            if result is not None:
                ctx.log(f"render cache: reusing the outputs of job {entry.job_id}")
                return {**result, "cache_key": key, "cached_from": entry.job_id}
            ctx.log(f"render cache: the outputs of job {entry.job_id} are gone; rendering")
        holder = entries.take_lock(connection, key, job_id, timeout)
        if holder is None:
            return None
        if holder != waited_for:
            waited_for = holder
            ctx.log(f"render cache: job {holder} is rendering the same thing; waiting for it")
            ctx.progress(stage=f"waiting for {holder[:8]} (same render)")
        if ctx.cancelled():
            raise RenderError(ErrorKind.CANCELED, "canceled while waiting for an identical render")
        if ctx.deadline is not None and time.monotonic() + WAIT_POLL > ctx.deadline:
            raise RenderError(ErrorKind.TIMEOUT, f"timed out waiting for job {holder} (same render)")
        time.sleep(WAIT_POLL)


def _reuse(
    connection: Redis, config: FarmConfig, place: Place, entry: entries.Entry, staging: Path
) -> dict[str, Any] | None:
    """The earlier job's files into ``staging`` and its result; None (entry dropped) if they are gone."""
    source = info_from_hash(entry.job_id, connection.hgetall(keys.job(entry.job_id)))
    result = {k: v for k, v in (source.result or {}).items() if k not in KEEP_FROM_RESULT}
    names = [str(f.get("name")) for f in entry.files]
    folder = Path(str((source.result or {}).get("output_dir") or ""))
    try:
        staging.mkdir(parents=True, exist_ok=True)
        if place.local and folder.is_absolute() and folder.resolve().is_relative_to(config.output_dir):
            for name in names:
                _link(store.inside(folder, name), store.inside(staging, name))
        else:
            by_name = {o.name: o for o in jobs.outputs(connection, config, source)}
            for name in names:
                item = by_name.get(name)
                if item is None or not item.url:
                    raise transfer.TransferError(f"no signed URL for {name}")
                transfer.download(item.url, store.inside(staging, name), item.sha256)
    except (OSError, FarmError):
        entries.drop(connection, [entry.key])
        shutil.rmtree(staging, ignore_errors=True)
        return None
    return {**result, "outputs": names}


def _link(origin: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(origin, target)
    except OSError:
        shutil.copyfile(origin, target)
