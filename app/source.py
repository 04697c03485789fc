"""Where the UI's data comes from and where operator actions go: ``RedisSource`` (a live farm)
or ``FixedSource`` (a given Snapshot, for snapshot tests and screenshots).

The app calls every method here from worker threads, never from the UI thread, except
``config``/``registry`` (used to validate the enqueue form, which never touches Redis).
Unreachable Redis is always reported as ``FarmUnavailableError``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from farm.audit import default_who
from farm.client import Farm
from farm.config import FarmConfig
from farm.connection import connect_redis, redis_errors
from farm.errors import FarmUnavailableError, JobNotFoundError
from farm.live.snapshot import Snapshot, take_snapshot
from farm.models import Caps, JobInfo, PoolInfo, Priority, WorkerInfo
from farm.render import Registry
from farm.terminal import printable, sanitized

T = TypeVar("T")

ROWS = 40  # queued jobs, and ended jobs, a snapshot reads by default (running jobs: all of them)
UI_SOCKET_TIMEOUT = 3.0  # seconds: a silent Redis shows as disconnected quickly, not after 10 s


class Source(Protocol):
    config: FarmConfig
    registry: Registry

    def snapshot(self, rows: int = ROWS) -> Snapshot: ...
    def job(self, job_id: str) -> JobInfo: ...
    def log_tail(self, job_id: str, lines: int = 200) -> list[str]: ...
    def dependents(self, job_id: str) -> list[str]: ...
    def resolve_id(self, text: str) -> str: ...
    def workers(self) -> list[WorkerInfo]: ...
    def pools(self) -> list[PoolInfo]: ...
    def submit(self, renderer: str, params: Mapping[str, Any], **options: Any) -> str: ...
    def cancel(self, job_id: str) -> JobInfo: ...
    def retry(self, job_id: str) -> JobInfo: ...
    def retry_all_failed(self) -> list[str]: ...
    def set_caps(
        self, *, total: int | None = None, renderers: Mapping[str, int | None] | None = None
    ) -> Caps: ...
    def adjust_total_cap(self, delta: int) -> Caps: ...
    def toggle_pause(self, priority: Priority) -> bool: ...
    def close(self) -> None: ...


def _strings(value: Any, into: list[str]) -> list[str]:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, BaseModel):
        for item in value.__dict__.values():
            _strings(item, into)
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings(key, into)
            _strings(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _strings(item, into)
    return into


def safe(value: T) -> T:
    """``value`` fit for the screen: itself when none of its text needs escaping (the usual case,
    checked in one pass), else a ``sanitized`` copy. Rebuilding every snapshot field by field
    would cost the UI more than reading it from Redis."""
    text = "\n".join(_strings(value, []))
    if printable(text, keep_newlines=True) == text:
        return value
    return sanitized(value)  # type: ignore[no-any-return]


def tui_who() -> str:
    return f"tui:{default_who()}"


class RedisSource:
    """A live farm: snapshots straight from Redis, actions through the ``Farm`` API (audited)."""

    def __init__(self, config: FarmConfig, url: str | None = None, *, who: str | None = None) -> None:
        self.config = config
        self.url = url or config.redis_url()
        # No ping here: the UI must come up (and say "disconnected") even when Redis is down.
        self.connection = connect_redis(self.url, config, check=False, socket_timeout=UI_SOCKET_TIMEOUT)
        self.farm = Farm(self.connection, config, url=self.url, who=who or tui_who())
        self.registry = self.farm.registry
        self._change = threading.Lock()  # read-modify-write actions (cap +1, pause toggle)

    # What the screens show of stored data is sanitized here: job names, errors and logs are
    # anyone's text, and a control character in them must never reach the operator's terminal.

    def snapshot(self, rows: int = ROWS) -> Snapshot:
        with redis_errors("snapshot"):
            return safe(take_snapshot(self.connection, self.config, queued_limit=rows, recent_limit=rows))

    def job(self, job_id: str) -> JobInfo:
        with redis_errors("job"):
            return sanitized(self.farm.get(job_id))

    def log_tail(self, job_id: str, lines: int = 200) -> list[str]:
        with redis_errors("log_tail"):
            return sanitized(self.farm.log_tail(job_id, lines))

    def dependents(self, job_id: str) -> list[str]:
        with redis_errors("dependents"):
            return sanitized(self.farm.dependents(job_id))

    def resolve_id(self, text: str) -> str:
        with redis_errors("find job"):
            return self.farm.resolve_id(text)

    def workers(self) -> list[WorkerInfo]:
        with redis_errors("workers"):
            return sanitized(self.farm.workers())

    def pools(self) -> list[PoolInfo]:
        with redis_errors("pools"):
            return sanitized(self.farm.pools())

    def submit(self, renderer: str, params: Mapping[str, Any], **options: Any) -> str:
        with redis_errors("submit"):
            return self.farm.submit(renderer, params, **options)

    def cancel(self, job_id: str) -> JobInfo:
        with redis_errors("cancel"):
            return self.farm.cancel(job_id)

    def retry(self, job_id: str) -> JobInfo:
        with redis_errors("retry"):
            return self.farm.retry(job_id)

    def retry_all_failed(self) -> list[str]:
        with redis_errors("retry_all_failed"):
            return self.farm.retry_all_failed()

    def set_caps(
        self, *, total: int | None = None, renderers: Mapping[str, int | None] | None = None
    ) -> Caps:
        with redis_errors("set_caps"):
            return self.farm.set_caps(total=total, renderers=renderers)

    def adjust_total_cap(self, delta: int) -> Caps:
        with self._change, redis_errors("caps"):
            current = self.farm.caps().total
            return self.farm.set_caps(total=max(0, current + delta))

    def toggle_pause(self, priority: Priority) -> bool:
        """Pause the queue, or resume it if it is paused; True when it is now paused."""
        with self._change, redis_errors("pause"):
            if priority in self.farm.paused():
                self.farm.resume(priority)
                return False
            self.farm.pause(priority)
            return True

    def close(self) -> None:
        self.connection.close()


class FixedSource:
    """A farm frozen in one Snapshot. Actions are recorded in ``calls`` and change nothing.

    Set ``down`` to make every call fail as if Redis had gone away.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        jobs: Mapping[str, JobInfo] | None = None,
        logs: Mapping[str, list[str]] | None = None,
        workers: list[WorkerInfo] | None = None,
        config: FarmConfig | None = None,
    ) -> None:
        self.config = config or FarmConfig()
        self.registry = Registry.from_config(self.config)
        self._snapshot = snapshot
        self._jobs = dict(jobs or {})
        self._logs = dict(logs or {})
        self._workers = list(workers or [])
        self.down = False
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _check(self, name: str, *args: Any) -> None:
        if self.down:
            raise FarmUnavailableError("Redis unavailable: Connection refused")
        if name:
            self.calls.append((name, args))

    def snapshot(self, rows: int = ROWS) -> Snapshot:
        self._check("")
        return safe(self._snapshot)

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """What the next polls read (tests: the farm moving on)."""
        self._snapshot = snapshot

    def job(self, job_id: str) -> JobInfo:
        self._check("")
        if job_id not in self._jobs:
            raise JobNotFoundError(f"no job {job_id!r}")
        return sanitized(self._jobs[job_id])

    def log_tail(self, job_id: str, lines: int = 200) -> list[str]:
        self._check("")
        return sanitized(self._logs.get(job_id, [])[-lines:])

    def dependents(self, job_id: str) -> list[str]:
        self._check("")
        return [j for j, info in self._jobs.items() if job_id in info.after]

    def resolve_id(self, text: str) -> str:
        self._check("")
        return text

    def workers(self) -> list[WorkerInfo]:
        self._check("")
        return self._workers

    def pools(self) -> list[PoolInfo]:
        self._check("")
        return sanitized(list(self._snapshot.pools))

    def submit(self, renderer: str, params: Mapping[str, Any], **options: Any) -> str:
        self._check("submit", renderer, dict(params), options)
        return "fixed-job"

    def cancel(self, job_id: str) -> JobInfo:
        self._check("cancel", job_id)
        return self.job(job_id)

    def retry(self, job_id: str) -> JobInfo:
        self._check("retry", job_id)
        return self.job(job_id)

    def retry_all_failed(self) -> list[str]:
        self._check("retry_all_failed")
        return []

    def set_caps(
        self, *, total: int | None = None, renderers: Mapping[str, int | None] | None = None
    ) -> Caps:
        self._check("set_caps", total, dict(renderers or {}))
        return self._snapshot.stats.caps

    def adjust_total_cap(self, delta: int) -> Caps:
        self._check("adjust_total_cap", delta)
        return self._snapshot.stats.caps

    def toggle_pause(self, priority: Priority) -> bool:
        self._check("toggle_pause", priority)
        return priority not in self._snapshot.stats.paused

    def close(self) -> None:
        pass
