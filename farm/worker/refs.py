"""A job's ``job:<id>/<name>`` references, made into files its renderer can open.

Before the renderer sees the params, each referenced output of an earlier job is put in a
directory of the attempt's own (``<data_dir>/refs/<job>.<token>/<id>/<name>``): hard-linked
from the store when this box shares its disk (copied across file systems), downloaded through
``farm serve`` (signed URL, checksum verified) when it does not. The reference is rewritten to
that file's relative path and the directory goes first in the input roots, so the renderer's
usual confinement applies to it like to any input. The directory goes with the attempt.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from redis import Redis

from .. import keys
from ..config import FarmConfig
from ..errors import FarmError
from ..files import jobs, store, transfer
from ..models import ErrorKind, JobStatus, OutputFile
from ..pipelines import refs
from ..records import info_from_hash
from ..render import RenderError
from .exchange import Place

REFS = "refs"


def refs_dir(config: FarmConfig, job_id: str, token: str) -> Path:
    return config.data_dir / REFS / f"{job_id}.{token}"


def materialize(
    connection: Redis, config: FarmConfig, place: Place, job_id: str, token: str, params: dict[str, Any]
) -> tuple[dict[str, Any], Path | None]:
    """The params with references rewritten, and the directory holding the files (None: none)."""
    found = refs.find(params)
    if not found:
        return params, None
    root = refs_dir(config, job_id, token)
    shutil.rmtree(root, ignore_errors=True)
    by_job: dict[str, dict[str, OutputFile]] = {}
    try:
        for ref in dict.fromkeys(found):
            if ref.job not in by_job:
                by_job[ref.job] = _outputs(connection, config, ref.job)
            item = by_job[ref.job].get(ref.name)
            if item is None:
                raise RenderError(
                    ErrorKind.NOT_FOUND, f"{ref.text()}: job {ref.job} has no output named {ref.name!r}"
                )
            _fetch(connection, config, place, ref, item, store.inside(root / ref.job, ref.name))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return refs.rewrite(params, lambda r: f"{r.job}/{r.name}"), root


def forget(config: FarmConfig, job_id: str, token: str) -> None:
    shutil.rmtree(refs_dir(config, job_id, token), ignore_errors=True)


def _outputs(connection: Redis, config: FarmConfig, dependency: str) -> dict[str, OutputFile]:
    raw = connection.hgetall(keys.job(dependency))
    if not raw:
        raise RenderError(ErrorKind.NOT_FOUND, f"job {dependency} (referenced in params) no longer exists")
    info = info_from_hash(dependency, raw)
    if info.status is not JobStatus.FINISHED:
        raise RenderError(ErrorKind.NOT_FOUND, f"job {dependency} is {info.status.value}, not finished")
    try:
        return {item.name: item for item in jobs.outputs(connection, config, info)}
    except FarmError as exc:
        raise RenderError(ErrorKind.NOT_FOUND, f"outputs of job {dependency}: {exc}") from None


def _fetch(
    connection: Redis, config: FarmConfig, place: Place, ref: refs.Ref, item: OutputFile, dest: Path
) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if place.local:
        published = _published(connection, ref.job) / ref.name
        if not published.is_file():
            raise RenderError(ErrorKind.NOT_FOUND, f"{ref.text()}: not found in the farm's store")
        try:
            os.link(published, dest)
        except OSError:
            shutil.copyfile(published, dest)
        return
    if not item.url:
        raise RenderError(ErrorKind.API_ERROR, f"{ref.text()}: this worker cannot reach the farm's store")
    try:
        transfer.download(item.url, dest, item.sha256)
    except FarmError as exc:
        raise RenderError(
            ErrorKind.API_ERROR, f"could not fetch {ref.text()} from the store: {exc}"
        ) from None


def _published(connection: Redis, dependency: str) -> Path:
    info = info_from_hash(dependency, connection.hgetall(keys.job(dependency)))
    return Path(str((info.result or {}).get("output_dir") or ""))
