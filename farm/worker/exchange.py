"""Exchanging files with the farm's store, from a worker: a job's inputs in, a run's outputs out.

A worker whose data dir holds the store's id (``farm serve`` publishes it) shares the store's
disk: it reads a job's uploaded inputs in place and publishes outputs with a rename, as on a
single box. A worker on another box downloads the inputs (checksummed) into a private dir for
the attempt, and sends its outputs to the store's staging dir for its run, fenced there on the
run; after its end is recorded they are published — only if that run is the winner. So where a
job runs never decides whether it succeeds, and every box's outputs land in one place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis

from ..config import FarmConfig
from ..errors import FarmError
from ..files import store, transfer
from ..files.token import NoTokenError, read_token
from ..models import ErrorKind
from ..render import RenderError

log = logging.getLogger("farm.worker")

FETCHED = "fetched"  # <data_dir>/fetched/<job>.<token>: a remote attempt's copy of its inputs
COMMIT_RETRY_FOR = 10.0  # seconds a remote horse keeps asking the store to publish its outputs


@dataclass(frozen=True)
class Place:
    """Where this worker stands relative to the farm's store."""

    local: bool  # shares the store's disk (or no farm serve runs: a single box)
    base: str | None = None  # farm serve's URL
    token: str | None = None  # the farm token (remote workers need it)


def locate(config: FarmConfig, connection: Redis) -> Place:
    info = transfer.serve_info(connection)
    published = info.get("store_id")
    if not published or not info.get("url"):
        return Place(local=True)
    if store.store_id(config) == published:
        return Place(local=True, base=info["url"])
    try:
        token = read_token(config)
    except NoTokenError as exc:
        log.error("this worker is on another box than the farm's store and has no farm token: %s", exc)
        token = None
    return Place(local=False, base=info["url"], token=token)


def _remote(place: Place) -> tuple[str, str]:
    if not place.base or not place.token:
        raise RenderError(
            ErrorKind.UNKNOWN,
            "this worker cannot reach the farm's store: it needs farm serve's URL and the farm token",
        )
    return place.base, place.token


def fetched_dir(config: FarmConfig, job_id: str, token: str) -> Path:
    return config.data_dir / FETCHED / f"{job_id}.{token}"


def inputs_dir(
    config: FarmConfig, place: Place, job_id: str, token: str, files: tuple[dict[str, Any], ...]
) -> Path | None:
    """The directory holding the job's uploaded inputs on this box (None: the job has none)."""
    if not files:
        return None
    if place.local:
        committed = store.uploads_dir(config, job_id)
        partial = store.uploads_partial(config, job_id)
        if not committed.exists() and partial.exists():
            with contextlib.suppress(OSError):  # its submitter died before committing: the job exists
                os.replace(partial, committed)
        if not committed.is_dir():
            raise RenderError(ErrorKind.NOT_FOUND, "the job's uploaded files are not in the farm's store")
        return committed
    base, farm_token = _remote(place)
    dest = fetched_dir(config, job_id, token)
    try:
        transfer.fetch_inputs(base, farm_token, job_id, files, dest)
    except FarmError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise RenderError(
            ErrorKind.API_ERROR, f"could not fetch the job's files from the store: {exc}"
        ) from None
    return dest


def forget_inputs(config: FarmConfig, job_id: str, token: str) -> None:
    shutil.rmtree(fetched_dir(config, job_id, token), ignore_errors=True)


def send(config: FarmConfig, place: Place, job_id: str, token: str, result: dict[str, Any]) -> None:
    """A remote run's outputs to the store's staging for the run (before its end is recorded)."""
    files = result.get("files") or []
    if place.local or not files:
        return
    base, farm_token = _remote(place)
    try:
        with transfer.client() as http:
            transfer.send_outputs(
                http, base, farm_token, job_id, token, store.staging_dir(config, job_id, token), files
            )
    except FarmError as exc:
        raise RenderError(
            ErrorKind.API_ERROR, f"could not send the outputs to the farm's store: {exc}"
        ) from None


def publish(config: FarmConfig, place: Place, job_id: str, token: str, result: dict[str, Any]) -> None:
    """After the run's end was recorded with ``token``: publish its outputs (rename here, or ask
    the store). A store that cannot be reached now publishes them by itself later."""
    staging = store.staging_dir(config, job_id, token)
    if place.local:
        store.publish(config, staging, result)
        return
    shutil.rmtree(staging, ignore_errors=True)  # the store holds its own copy
    if not result.get("files"):
        return
    base, farm_token = _remote(place)
    give_up = time.monotonic() + COMMIT_RETRY_FOR
    with transfer.client() as http:
        while True:
            try:
                transfer.commit_outputs(http, base, farm_token, job_id, token)
                return
            except FarmError as exc:
                if time.monotonic() >= give_up:
                    log.error("outputs of %s: %s; farm serve publishes them when it can", job_id, exc)
                    return
                time.sleep(0.5)


def discard(config: FarmConfig, place: Place, job_id: str, token: str) -> None:
    """A run that lost: its files go, here and in the store."""
    store.discard(config, job_id, token)
    if not place.local and place.base and place.token:
        with transfer.client() as http:
            transfer.discard_outputs(http, place.base, place.token, job_id, token)
