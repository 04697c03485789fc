"""The one function farm workers execute: look the renderer up by name and run it.

RQ stores ``farm.dispatch.run`` as every farm job's function; the worker refuses any other.
``run`` executes inside the work horse. It needs the farm's config and renderer registry, which
the worker installs with ``configure`` before it forks (the horse inherits them).
Also here: ``HorseContext``, the RenderContext the horse gives renderers (progress, log, cancel),
and publishing a render's outputs as ``output_dir/<job_id>/`` in one rename.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis import Redis
from rq import get_current_job

from renderers import Registry, RendererEnv, RenderError

from . import keys
from .config import FarmConfig
from .models import ErrorKind
from .submit import format_validation_error

LOG_TAIL_LINES = 200
PROGRESS_EVERY = 0.2  # seconds between progress writes (stage changes are written at once)
CANCEL_EVERY = 0.25  # seconds between checks of the cancel flag
LOG_FLUSH_EVERY = 0.2


@dataclass
class _Installed:
    config: FarmConfig
    registry: Registry
    connection: Redis
    attempt: int = 1  # of the job about to be forked; set by the worker
    job_type: str | None = None


_installed: _Installed | None = None


def configure(config: FarmConfig, registry: Registry, connection: Redis) -> None:
    """Called by the worker before it forks work horses."""
    global _installed
    _installed = _Installed(config, registry, connection)


def set_job(attempt: int, job_type: str | None) -> None:
    """Facts about the job the worker is about to fork for (the horse reads them)."""
    if _installed is not None:
        _installed.attempt = attempt
        _installed.job_type = job_type


def renderer_env(config: FarmConfig) -> RendererEnv:
    return RendererEnv(
        data_dir=config.data_dir,
        output_dir=config.output_dir,
        input_roots=config.input_roots,
        log_dir=config.log_dir,
    )


@dataclass
class HorseContext:
    """RenderContext backed by the job's Redis hash; writes are throttled and batched."""

    job_id: str
    staging_dir: Path
    env: RendererEnv
    deadline: float | None
    connection: Redis
    attempt: int = 1
    job_type: str | None = None
    _last_progress: float = 0.0
    _last_stage: str | None = None
    _last_cancel_check: float = 0.0
    _cancelled: bool = False
    _pending_lines: list[str] = field(default_factory=list)
    _last_flush: float = 0.0
    _log_file: Any = None

    def progress(self, percent: float | None = None, stage: str | None = None) -> None:
        now = time.monotonic()
        stage_changed = stage is not None and stage != self._last_stage
        if not stage_changed and now - self._last_progress < PROGRESS_EVERY:
            return
        mapping: dict[str, Any] = {}
        if percent is not None:
            mapping[keys.F_PROGRESS] = round(max(0.0, min(100.0, float(percent))), 1)
        if stage is not None:
            mapping[keys.F_STAGE] = stage[:200]
            self._last_stage = stage
        if mapping:
            self.connection.hset(keys.job(self.job_id), mapping=mapping)
        self._last_progress = now

    def log(self, line: str) -> None:
        line = line.rstrip("\n")
        self._pending_lines.append(line[:2000])
        if self._log_file is None:
            self.env.log_dir.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.env.log_dir / f"{self.job_id}.log", "a", encoding="utf-8")  # noqa: SIM115
        self._log_file.write(line + "\n")
        if time.monotonic() - self._last_flush >= LOG_FLUSH_EVERY or len(self._pending_lines) >= 100:
            self.flush()

    def flush(self) -> None:
        if self._pending_lines:
            key = keys.log(self.job_id)
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.rpush(key, *self._pending_lines)
                pipe.ltrim(key, -LOG_TAIL_LINES, -1)
                pipe.execute()
            self._pending_lines.clear()
        if self._log_file is not None:
            self._log_file.flush()
        self._last_flush = time.monotonic()

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= CANCEL_EVERY:
            self._last_cancel_check = now
            self._cancelled = bool(self.connection.hget(keys.job(self.job_id), keys.F_CANCEL))
        return self._cancelled

    def close(self) -> None:
        self.flush()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def staging_dir(config: FarmConfig, job_id: str) -> Path:
    return config.output_dir / f".{job_id}.partial"


def publish(config: FarmConfig, job_id: str, staging: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Move a finished render's files to ``output_dir/<job_id>/`` in one rename."""
    outputs = result.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(name, str) for name in outputs):
        raise RenderError(ErrorKind.UNKNOWN, "renderer returned a malformed 'outputs' list")
    if not outputs:
        shutil.rmtree(staging, ignore_errors=True)
        return {**result, "outputs": []}
    final = config.output_dir / job_id
    for name in outputs:
        if not (staging / name).resolve().is_relative_to(staging.resolve()) or not (staging / name).is_file():
            raise RenderError(ErrorKind.UNKNOWN, f"renderer listed a missing output {name!r}")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    sizes = {name: (final / name).stat().st_size for name in outputs}
    return {
        **result,
        "outputs": [str(final / name) for name in outputs],
        "output_dir": str(final),
        "sizes": sizes,
    }


def run(renderer: str, params: dict[str, Any]) -> dict[str, Any]:
    """The RQ job function of every farm job (runs in the work horse)."""
    if _installed is None:
        raise RuntimeError("farm.dispatch.run called outside a farm worker")
    job = get_current_job()
    if job is None:
        raise RuntimeError("farm.dispatch.run called outside an RQ job")
    config, registry, connection = _installed.config, _installed.registry, _installed.connection
    try:
        backend = registry.get(renderer)
    except KeyError:
        raise RenderError(ErrorKind.INVALID_INPUT, f"unknown renderer {renderer!r} on this worker") from None
    try:
        parsed = backend.validate(params)
    except ValidationError as exc:
        raise RenderError(
            ErrorKind.INVALID_INPUT, format_validation_error(f"{renderer} params", exc)
        ) from None
    staging = staging_dir(config, job.id)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    timeout = job.timeout or config.renderer_timeout(renderer)
    ctx = HorseContext(
        job_id=job.id,
        staging_dir=staging,
        env=renderer_env(config),
        deadline=time.monotonic() + float(timeout),
        connection=connection,
        attempt=_installed.attempt,
        job_type=_installed.job_type,
        _last_stage="starting",  # the dispatcher already wrote progress 0, stage "starting"
    )
    try:
        result = backend.render(parsed, ctx)
        if not isinstance(result, dict):
            raise RenderError(
                ErrorKind.UNKNOWN, f"renderer {renderer!r} returned {type(result).__name__}, not a dict"
            )
        return publish(config, job.id, staging, result)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        ctx.close()
