"""The one function farm workers execute: look the renderer up by name and run it.

Every farm job stores the tag ``farm.dispatch.run`` as its function (``rq_classes.DISPATCHER``,
mapped here by ``FarmJob.func``); the worker refuses any other.
``run`` executes inside the work horse. It needs the farm's config and renderer registry, which
the worker installs with ``configure`` before it forks (the horse inherits them).
Also here: ``HorseContext``, the RenderContext the horse gives renderers (progress, log, cancel);
the horse's background loop (flushes, lease renewal); and publishing a render's outputs.

Each attempt stages in its own directory (``output_dir/.partial/<job>.<token>``). ``run`` only
checks what the render left there; the files are published as ``output_dir/<job_id>/`` (one
rename) *after* the run's end is recorded, so only the attempt whose end won is ever published.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import get_current_job

from .. import keys, transitions
from ..config import FarmConfig
from ..files import store
from ..models import ErrorKind
from ..render import Registry, RendererEnv, RenderError, format_validation_error, renderer_env
from . import caching, exchange, lease, refs

LOG_TAIL_LINES = 200
FLUSH_EVERY = 0.2  # seconds between writes of a running job's progress and log, and cancel checks
LEASE_SAFETY = 0.1  # seconds the local lease deadline keeps before the one the server computed


@dataclass
class _Installed:
    config: FarmConfig
    registry: Registry
    connection: Redis
    cell: lease.LeaseCell
    place: exchange.Place = exchange.Place(local=True)  # this box and the farm's store
    attempt: int = 1  # of the job about to be forked; set by the worker
    job_type: str | None = None
    token: str = ""  # the run's dispatch token: the horse's writes are fenced on it
    files: tuple[dict[str, Any], ...] = ()  # the job's uploaded inputs
    cache: bool = False  # the job may reuse (and feeds) the render cache


_installed: _Installed | None = None


def configure(
    config: FarmConfig, registry: Registry, connection: Redis, cell: lease.LeaseCell, place: exchange.Place
) -> None:
    """Called by the worker before it forks work horses."""
    global _installed
    _installed = _Installed(config, registry, connection, cell, place)


def set_job(
    attempt: int,
    job_type: str | None,
    token: str,
    files: tuple[dict[str, Any], ...] = (),
    cache: bool = False,
) -> None:
    """Facts about the job the worker is about to fork for (the horse reads them)."""
    if _installed is not None:
        _installed.attempt = attempt
        _installed.job_type = job_type
        _installed.token = token
        _installed.files = files
        _installed.cache = cache


def place() -> exchange.Place:
    return _installed.place if _installed is not None else exchange.Place(local=True)


class HorseContext:
    """RenderContext backed by the job's Redis hash.

    The renderer never waits on Redis: progress, stage and log lines are kept in memory and the
    horse's background thread (``horse_loop``) writes them every ``FLUSH_EVERY`` seconds in one
    pipeline, and reads the job's cancel flag. ``close`` writes the log lines still pending (the
    final progress/stage are written with the job's outcome). The staging directory is created
    on first use, so renders without files never touch the disk for it.
    """

    def __init__(
        self,
        job_id: str,
        staging: Path,
        env: RendererEnv,
        deadline: float | None,
        connection: Redis,
        attempt: int = 1,
        job_type: str | None = None,
        token: str = "",
    ) -> None:
        self.job_id = job_id
        self._staging = staging
        self.env = env
        self.deadline = deadline
        self.connection = connection
        self.attempt = attempt
        self.job_type = job_type
        self.token = token
        self._lock = threading.Lock()
        self._fields: dict[str, Any] = {}
        self._lines: list[str] = []
        self._file_lines: list[str] = []
        self._cancelled = False

    @property
    def staging_dir(self) -> Path:
        if not self._staging.exists():
            self._staging.mkdir(parents=True)
        return self._staging

    def progress(self, percent: float | None = None, stage: str | None = None) -> None:
        with self._lock:
            if percent is not None:
                self._fields[keys.F_PROGRESS] = round(max(0.0, min(100.0, float(percent))), 1)
            if stage is not None:
                self._fields[keys.F_STAGE] = stage[:200]

    def log(self, line: str) -> None:
        line = line.rstrip("\n")[:2000]
        with self._lock:
            self._lines.append(line)
            self._file_lines.append(line)

    def cancelled(self) -> bool:
        return self._cancelled

    def flush(self, with_progress: bool = True, check_cancel: bool = True) -> None:
        with self._lock:
            fields = self._fields if with_progress else {}
            if with_progress:
                self._fields = {}
            lines, self._lines = self._lines, []
            file_lines, self._file_lines = self._file_lines, []
        if file_lines:  # the full log, on this worker's disk
            self.env.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.env.log_dir / f"{self.job_id}.log", "a", encoding="utf-8") as handle:
                handle.write("\n".join(file_lines) + "\n")
        if not (fields or lines or check_cancel):
            return

        def writes(pipe: Pipeline) -> None:
            if fields:
                pipe.hset(keys.job(self.job_id), mapping=fields)
            if lines:
                pipe.rpush(keys.log(self.job_id), *lines)
                pipe.ltrim(keys.log(self.job_id), -LOG_TAIL_LINES, -1)

        with self.connection.pipeline(transaction=False) as pipe:
            if fields or lines:  # fenced: once the run has ended (or was taken over), nothing lands
                transitions.fenced(self.connection, self.job_id, self.token, writes, pipe=pipe)
            if check_cancel:
                pipe.hget(keys.job(self.job_id), keys.F_CANCEL)
            replies = pipe.execute()
        if check_cancel and replies[-1]:
            self._cancelled = True

    def close(self) -> list[str]:
        """Write the rest of the disk log; return the log lines not yet in Redis (the horse
        commits them with the run's outcome, in the same round trip)."""
        with self._lock:
            lines, self._lines = self._lines, []
        self.flush(with_progress=False, check_cancel=False)
        return lines


def log_tail_writes(job_id: str, lines: list[str]) -> Callable[[Pipeline], None]:
    def writes(pipe: Pipeline) -> None:
        if lines:
            pipe.rpush(keys.log(job_id), *lines)
            pipe.ltrim(keys.log(job_id), -LOG_TAIL_LINES, -1)

    return writes


_closing_lines: list[str] = []


def closing_lines() -> list[str]:
    """The last log lines of the render that just ended in this horse (see HorseContext.close)."""
    lines = list(_closing_lines)
    _closing_lines.clear()
    return lines


_context: HorseContext | None = None


def horse_loop(parent_pid: int, job_id: str) -> None:
    """The horse's background thread: flush the running render's progress and log, pick up cancel
    requests, renew the run's lease, and if the worker dies, take the horse's process group down."""
    assert _installed is not None
    connection, cell, token = _installed.connection, _installed.cell, _installed.token
    seconds = _installed.config.worker.lease
    next_renewal = time.monotonic() + seconds / 4
    while True:
        time.sleep(FLUSH_EVERY)
        if os.getppid() != parent_pid:
            os.killpg(0, signal.SIGKILL)
        ctx = _context
        if ctx is not None:
            with contextlib.suppress(RedisError, OSError):  # a blip must not break the render
                ctx.flush()
        now = time.monotonic()
        if now >= next_renewal and cell.state == lease.RENDERING:
            try:
                if lease.renew(connection, job_id, token, seconds):
                    cell.extend(now + seconds - LEASE_SAFETY)
                    next_renewal = now + seconds / 4
                else:
                    cell.revoke()  # ended or taken over elsewhere: the guards kill the render now
            except (RedisError, OSError):
                next_renewal = now  # try again on the next tick; the guards watch the deadline


def check_outputs(
    config: FarmConfig,
    job_id: str,
    staging: Path,
    result: dict[str, Any],
    token: str = "",
    *,
    local: bool = True,
) -> dict[str, Any]:
    """The result as it will read once published: each output's name, size and sha256 in
    ``files``, and its path under the store (``store.publish_target``; for a run on another box
    the store fills that in when it publishes). Checks the files the renderer listed are in its
    staging dir; moves nothing yet."""
    outputs = result.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(name, str) for name in outputs):
        raise RenderError(ErrorKind.UNKNOWN, "renderer returned a malformed 'outputs' list")
    if not outputs:
        return {**result, "outputs": []}
    for name in outputs:
        if not (staging / name).resolve().is_relative_to(staging.resolve()) or not (staging / name).is_file():
            raise RenderError(ErrorKind.UNKNOWN, f"renderer listed a missing output {name!r}")
    files = store.describe(staging, outputs)
    described = {**result, "files": files, "sizes": {f["name"]: f["size"] for f in files}}
    if not local:
        return {**described, "outputs": list(outputs), "output_dir": None}
    final = store.publish_target(config, job_id, token)
    return {**described, "outputs": [str(final / name) for name in outputs], "output_dir": str(final)}


def run(renderer: str, params: dict[str, Any]) -> dict[str, Any]:
    """The RQ job function of every farm job (runs in the work horse). Returns the result to
    record; its files wait in the attempt's staging dir until ``publish``."""
    if _installed is None:
        raise RuntimeError("the farm job function was called outside a farm worker")
    job = get_current_job()
    if job is None:
        raise RuntimeError("the farm job function was called outside an RQ job")
    config, registry, connection = _installed.config, _installed.registry, _installed.connection
    try:
        backend = registry.get(renderer)
    except KeyError:
        raise RenderError(ErrorKind.INVALID_INPUT, f"unknown renderer {renderer!r} on this worker") from None
    token = _installed.token
    try:
        params, referenced = refs.materialize(connection, config, _installed.place, job.id, token, params)
        return _render(backend, renderer, params, referenced, job.id, job.timeout)
    finally:
        refs.forget(config, job.id, token)
        if not _installed.place.local:
            exchange.forget_inputs(config, job.id, token)


def _render(
    backend: Any,
    renderer: str,
    params: dict[str, Any],
    referenced: Path | None,
    job_id: str,
    job_timeout: float | None,
) -> dict[str, Any]:
    assert _installed is not None
    config, connection, token = _installed.config, _installed.connection, _installed.token
    try:
        parsed = backend.validate(params)
    except ValidationError as exc:
        raise RenderError(
            ErrorKind.INVALID_INPUT, format_validation_error(f"{renderer} params", exc)
        ) from None
    staging = store.staging_dir(config, job_id, token)
    timeout = job_timeout or config.renderer_timeout(renderer)
    env = renderer_env(config)
    uploads = exchange.inputs_dir(config, _installed.place, job_id, token, _installed.files)
    if uploads is not None:  # relative paths resolve against the job's own files first
        env = dataclasses.replace(env, input_roots=(uploads, *env.input_roots))
    if referenced is not None:  # and before those, the outputs of earlier jobs it names
        env = dataclasses.replace(env, input_roots=(referenced, *env.input_roots))
    global _context
    ctx = HorseContext(
        job_id=job_id,
        staging=staging,
        env=env,
        deadline=time.monotonic() + float(timeout),
        connection=connection,
        attempt=_installed.attempt,
        job_type=_installed.job_type,
        token=token,
    )
    _context = ctx
    try:
        key = caching.key_for(connection, backend, renderer, parsed, env) if _installed.cache else None
        reused = (
            caching.reuse_or_lock(connection, config, _installed.place, key, ctx, job_id, timeout)
            if key
            else None
        )
        result = reused if reused is not None else backend.render(parsed, ctx)
        if not isinstance(result, dict):
            raise RenderError(
                ErrorKind.UNKNOWN, f"renderer {renderer!r} returned {type(result).__name__}, not a dict"
            )
        if key is not None:
            result = {**result, "cache_key": key}
        return check_outputs(config, job_id, staging, result, token, local=_installed.place.local)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _context = None
        _closing_lines.extend(ctx.close())
