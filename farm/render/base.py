"""The renderer contract: what every render backend implements and what the farm gives it.

A renderer is a class with a ``name``, a pydantic ``Params`` model (``extra="forbid"``), an
optional ``Settings`` model filled from its config section (``Renderer`` is generic over it, so
``self.settings`` is typed), and a ``render(params, ctx)`` method that runs inside the worker's
work horse and returns a JSON-able result dict.

Contract with the farm (see ``farm/worker/job.py``):
- ``validate(params)`` is pure (no I/O): it runs on the submitter's machine before any Redis
  write. Raise ``RenderError(INVALID_INPUT, ...)`` or let pydantic's ``ValidationError`` out.
- ``render`` writes files only into ``ctx.staging_dir`` and lists them (names relative to it) in
  ``result["outputs"]``; the farm publishes them as ``output_dir/<job_id>/`` in one rename once
  the run's end is recorded, so a half-written or losing render is never visible.
- Failures are ``RenderError(kind, message)``; anything else counts as ``unknown``.
- Cancellation and timeouts are enforced from outside: the worker kills the work horse's process
  group (the horse and every subprocess it started). Subprocesses must therefore stay in the
  horse's process group (no ``start_new_session``) and must be started with argv lists.
  ``ctx.cancelled()`` lets pure-Python renderers stop early and cleanly.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..models import ErrorKind


class RenderError(Exception):
    """A render failed for a known reason; ``kind`` decides whether it is retried."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = ErrorKind(kind)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Params(BaseModel):
    """Base for renderer params: unknown keys are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(BaseModel):
    """Base for a renderer's config section (``[renderers.<name>]``)."""

    model_config = ConfigDict(extra="forbid")

    timeout: int | None = None  # seconds; overrides the farm's default timeout for this renderer


@dataclass(frozen=True)
class RendererEnv:
    """What the farm's config tells every renderer about the machine."""

    data_dir: Path
    output_dir: Path
    input_roots: tuple[Path, ...]
    log_dir: Path
    max_output_bytes: int = 20 * 1024**3  # RLIMIT_FSIZE for render subprocesses
    max_result_bytes: int = 1024**2  # largest result (and HTTP body) a render may return


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


class RenderContext(Protocol):
    """Given to ``render``: where to write, how to report, when to stop."""

    job_id: str
    env: RendererEnv
    deadline: float | None  # time.monotonic() value after which the job is killed
    attempt: int  # 1 for the first run of the job, 2 for its first retry...
    job_type: str | None  # the job type it was submitted with, if any

    @property
    def staging_dir(self) -> Path:
        """Where to write outputs (created on first use)."""
        ...

    def progress(self, percent: float | None = None, stage: str | None = None) -> None: ...

    def log(self, line: str) -> None: ...

    def cancelled(self) -> bool: ...


_SettingsModel = Settings
_ParamsModel = Params
SettingsT = TypeVar("SettingsT", bound=Settings)


class Renderer(ABC, Generic[SettingsT]):
    """Subclass as ``class Mine(Renderer[MySettings])`` with ``Settings = MySettings``."""

    name: ClassVar[str]
    Params: ClassVar[type[_ParamsModel]]
    Settings: ClassVar[type[_SettingsModel]] = Settings
    # Does render() start subprocesses? Then the work horse runs a guard process beside it that
    # kills them if the run loses its lease while the horse itself is stopped (farm/worker/lease.py).
    subprocesses: ClassVar[bool] = True

    def __init__(self, settings: SettingsT | None = None, env: RendererEnv | None = None) -> None:
        self.settings: SettingsT = settings if settings is not None else type(self).Settings()  # type: ignore[assignment]
        self.env = env

    def validate(self, params: Mapping[str, Any]) -> _ParamsModel:
        """Check params without touching disk or network; return the parsed model."""
        return self.Params.model_validate(dict(params))

    @abstractmethod
    def render(self, params: Any, ctx: RenderContext) -> dict[str, Any]:
        """Run one render; return a JSON-able dict (``outputs`` relative to ``ctx.staging_dir``)."""

    def doctor(self) -> Health:
        """Is this renderer usable on this machine (tool installed, service reachable)?"""
        return Health(True, "built in")

    # -- the render cache (submit's cache=True): the farm builds the key from the renderer's
    # name, the normalized params, the sha256 of every file ``cache_inputs`` lists and
    # ``tool_version``. Both run in the work horse, before ``render``.

    def cache_inputs(self, params: Any, env: RendererEnv) -> list[Path]:
        """The input files a render of ``params`` reads, resolved below ``env.input_roots``
        exactly as ``render`` resolves them (same confinement: a path ``render`` would refuse is
        refused here with the same RenderError). Default: none."""
        return []

    def tool_version(self) -> str:
        """What else decides the outputs besides params and input files: the tool's version
        line, a service's address and preset, a template's argv... Part of the cache key, so an
        upgraded tool never serves outputs of the old one. Default: the class's qualified name."""
        return f"{type(self).__module__}.{type(self).__qualname__}"


@dataclass
class SimpleContext:
    """An in-process RenderContext that records what a renderer reports (tests, local runs)."""

    job_id: str
    staging_dir: Path
    env: RendererEnv
    deadline: float | None = None
    attempt: int = 1
    job_type: str | None = None
    cancel_after: float | None = None  # seconds after creation at which cancelled() turns true
    progress_calls: list[tuple[float | None, str | None]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    _created: float = field(default_factory=time.monotonic)

    def progress(self, percent: float | None = None, stage: str | None = None) -> None:
        self.progress_calls.append((percent, stage))

    def log(self, line: str) -> None:
        self.lines.append(line)

    def cancelled(self) -> bool:
        return self.cancel_after is not None and time.monotonic() - self._created >= self.cancel_after


def format_validation_error(prefix: str, exc: ValidationError) -> str:
    """A pydantic ValidationError as one line: the first three problems, each where and what."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "params"
        message = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{where}: {message}")
    more = len(exc.errors()) - 3
    tail = f" (+{more} more)" if more > 0 else ""
    return f"{prefix}: " + "; ".join(parts) + tail
