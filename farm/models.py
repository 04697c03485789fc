"""The farm's typed values: enums and the read-only models the API returns.

Owned here so every layer (API, worker, CLI, TUI, renderers) speaks the same names.
Nothing in this module touches Redis.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict


class Priority(str, Enum):
    """RQ queue names, in the order workers serve them."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return PRIORITY_ORDER.index(self)


PRIORITY_ORDER: tuple[Priority, ...] = (Priority.HIGH, Priority.MEDIUM, Priority.LOW)


class JobStatus(str, Enum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED)


class ErrorKind(str, Enum):
    TIMEOUT = "timeout"
    API_ERROR = "api_error"
    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    WORKER_LOST = "worker_lost"
    CANCELED = "canceled"
    UNKNOWN = "unknown"

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE_KINDS


RETRYABLE_KINDS = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.API_ERROR, ErrorKind.WORKER_LOST, ErrorKind.UNKNOWN}
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Attempt(_Frozen):
    """One run of a job on a worker, successful or not."""

    number: int
    worker: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None


class JobInfo(_Frozen):
    id: str
    name: str | None = None
    renderer: str
    params: dict[str, Any] = {}
    priority: Priority
    job_type: str | None = None
    status: JobStatus
    progress: float = 0.0
    stage: str = ""
    attempts: int = 0
    max_retries: int = 0
    timeout: int | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    history: tuple[Attempt, ...] = ()
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    position: int | None = None
    eta: datetime | None = None
    wait_reason: str | None = None
    retry_at: datetime | None = None
    cancel_requested: bool = False
    by: str | None = None  # who submitted it
    files: tuple[dict[str, Any], ...] = ()  # inputs uploaded with it: name, size, sha256
    after: tuple[str, ...] = ()  # the jobs it waits for (submit's after= and job:<id>/ references)
    cached_from: str | None = None  # a render cache hit: the earlier job whose outputs it reused


class CacheEntry(_Frozen):
    """One render cache entry, as ``Farm.cache_entries`` and ``farm cache ls`` list it."""

    key: str
    job_id: str  # the finished job whose outputs a hit reuses
    renderer: str
    files: int
    bytes: int
    created_at: datetime | None = None
    hits: int = 0


class OutputFile(_Frozen):
    """One published output of a finished job, as ``Farm.outputs`` lists it."""

    name: str  # relative to the job's output dir
    size: int
    sha256: str
    url: str | None = None  # signed, expiring download URL from farm serve (None without one)


class Window(_Frozen):
    """A time-of-day window (local time) in which caps are multiplied."""

    start: str  # "HH:MM"
    end: str  # "HH:MM"; may be earlier than start (window spans midnight)
    multiplier: float

    def minutes(self) -> tuple[int, int]:
        return _hhmm(self.start), _hhmm(self.end)

    def contains(self, minute_of_day: int) -> bool:
        start, end = self.minutes()
        if start <= end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end

    def label(self) -> str:
        return f"{self.start}-{self.end} x{self.multiplier:g}"


def _hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class Caps(_Frozen):
    total: int
    renderers: dict[str, int] = {}
    effective_total: int
    effective_renderers: dict[str, int] = {}
    window: Window | None = None
    windows: tuple[Window, ...] = ()
    processes: int = 0  # worker processes alive, plus what pools may still start: the real upper bound


class WorkerInfo(_Frozen):
    name: str
    host: str | None = None
    pid: int | None = None
    state: str = "unknown"
    current_job: str | None = None
    last_heartbeat: datetime | None = None
    alive: bool = True


class PoolInfo(_Frozen):
    """A worker pool (``farm worker --workers N`` or ``MIN:MAX``) as it last reported, each second."""

    name: str
    host: str | None = None
    pid: int | None = None
    current: int = 0  # processes alive, the ones starting included
    target: int = 0  # where it is heading: it starts processes up to this; idle ones above exit
    minimum: int = 0
    maximum: int = 0
    busy: int = 0  # processes running a job
    idle: int = 0
    starting: int = 0  # started, not yet taking jobs
    eligible: int = 0  # jobs that could start now, as counted by the pool (no further than mattered)
    at: datetime | None = None  # its last report

    @property
    def autoscaling(self) -> bool:
        return self.minimum < self.maximum


class RendererStats(_Frozen):
    running: int = 0
    cap: int | None = None
    avg_wait: float | None = None  # seconds, jobs started in the last hour
    avg_run: float | None = None  # seconds, jobs ended in the last hour
    finished_last_hour: int = 0
    failed_last_hour: int = 0


class FarmStats(_Frozen):
    counts: dict[JobStatus, dict[Priority, int]]
    running: int
    running_by_renderer: dict[str, int]
    caps: Caps
    workers: int
    workers_busy: int
    scheduler_alive: bool
    scheduler_heartbeat_age: float | None = None
    finished_last_hour: int = 0
    failed_last_hour: int = 0
    throughput_per_min: tuple[int, ...] = ()  # finished per minute, oldest first (last 30 min)
    avg_wait: float | None = None
    renderers: dict[str, RendererStats] = {}
    paused: tuple[Priority, ...] = ()


class AuditEntry(_Frozen):
    at: datetime
    who: str
    action: str
    target: str | None = None
    detail: str | None = None
