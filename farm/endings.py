"""Ending a run: success, failure (with the retry policy), cancel, requeue — each one fenced claim.

Called by the work horse (success, render errors), the worker (cancel, timeout, horse lost,
shutdown requeue) and the sweep (dead workers, stuck jobs). See ``transitions.claim``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline

from . import keys, transitions
from .cache import entries
from .cache.key import KEY_RE
from .config import FarmConfig
from .models import Attempt, ErrorKind, JobStatus
from .records import JobRecord, corrupt_error, read_job
from .retry import Decision, decide, retry_delay
from .timeutil import utcnow

Extra = Callable[[Pipeline], None] | None


@dataclass(frozen=True)
class Run:
    """One attempt of a job, as the dispatcher started it."""

    job_id: str
    token: str
    priority: str
    renderer: str
    attempt: int
    max_retries: int
    retry_base: int  # attempts made before the last manual retry (a manual retry resets the budget)
    worker: str | None
    started_at: datetime | None
    history: tuple[Attempt, ...]
    line: int | None = None  # place in line (farm_line): a requeue keeps it
    corrupt: tuple[str, ...] = ()  # fields of the job hash that could not be read

    def to_json(self) -> dict[str, Any]:
        """The run as plain JSON (the outcome journal stores it)."""
        return {
            **{f: getattr(self, f) for f in ("job_id", "token", "priority", "renderer", "attempt")},
            **{f: getattr(self, f) for f in ("max_retries", "retry_base", "worker", "line")},
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "history": [a.model_dump(mode="json") for a in self.history],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        started = data.get("started_at")
        return cls(
            job_id=str(data["job_id"]),
            token=str(data["token"]),
            priority=str(data["priority"]),
            renderer=str(data["renderer"]),
            attempt=int(data["attempt"]),
            max_retries=int(data["max_retries"]),
            retry_base=int(data["retry_base"]),
            worker=data.get("worker"),
            started_at=datetime.fromisoformat(started) if started else None,
            history=tuple(Attempt.model_validate(a) for a in data.get("history", [])),
            line=data.get("line"),
        )

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[bytes, bytes]) -> Run:
        return cls.from_record(read_job(job_id, raw))

    @classmethod
    def from_record(cls, record: JobRecord) -> Run:
        return cls(
            job_id=record.id,
            token=record.token or "",
            priority=record.priority.value,
            renderer=record.renderer or "?",
            attempt=record.attempts or 1,
            max_retries=record.max_retries,
            retry_base=record.retry_base,
            worker=record.worker,
            started_at=record.started_at,
            history=record.history,
            line=record.line,
            corrupt=record.corrupt,
        )

    def run_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, (utcnow() - self.started_at).total_seconds())

    def record(self, kind: ErrorKind | None = None, error: str | None = None) -> Attempt:
        return attempt_record(self.attempt, self.worker, self.started_at, kind, error)


def _with_extra(writes: Callable[[Pipeline], None], extra: Extra) -> Callable[[Pipeline], None]:
    # ``extra`` first: it may append the log's last lines, and the outcome's writes then give the
    # log key its TTL (an EXPIRE before the RPUSH that creates the key would leave it forever).
    def both(pipe: Pipeline) -> None:
        if extra is not None:
            extra(pipe)
        writes(pipe)

    return both


def finish(
    connection: Redis, config: FarmConfig, run: Run, result: dict[str, Any], extra: Extra = None
) -> bool:
    def writes(pipe: Pipeline) -> None:
        transitions.write_finished(
            pipe,
            run.job_id,
            run.priority,
            config.retention.finished,
            result,
            transitions.history_json(run.history, run.record()),
        )
        transitions.count_outcome(pipe, JobStatus.FINISHED, run.renderer, run.run_seconds())
        _cache_writes(pipe, config, run, result)

    return transitions.claim(
        connection, run.job_id, run.token, _with_extra(writes, extra), run.renderer, "finished"
    )


def _cache_writes(pipe: Pipeline, config: FarmConfig, run: Run, result: dict[str, Any]) -> None:
    """A cache hit counts on its entry and names its source; a miss becomes the entry."""
    key = result.get("cache_key")
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        return
    source = result.get("cached_from")
    if isinstance(source, str) and source:
        entries.count_hit(pipe, key)
        pipe.hset(keys.job(run.job_id), keys.F_CACHED_FROM, source)
    else:
        files = result.get("files")
        entries.record(pipe, config, key, run.job_id, run.renderer, files if isinstance(files, list) else [])


def fail(
    connection: Redis, config: FarmConfig, run: Run, kind: ErrorKind, error: str, extra: Extra = None
) -> Decision | None:
    """End a failed run per the retry policy; None when another party already ended it.

    A run that failed because it was canceled (the renderer noticed the cancel itself), or whose
    job has a cancel request pending, ends canceled: a cancel is never turned into a retry."""
    if kind is ErrorKind.CANCELED or cancel_requested(connection, run.job_id):
        canceled = cancel(connection, config, run, "canceled while running", extra)
        return Decision.CANCELED if canceled else None
    if run.corrupt:  # never put a job whose record cannot be read back in line
        kind, error = ErrorKind.INVALID_INPUT, corrupt_error(run.corrupt)
    decision = decide(kind, run.attempt - run.retry_base, run.max_retries)
    hist = transitions.history_json(run.history, run.record(kind, error))

    def writes(pipe: Pipeline) -> None:
        if decision is Decision.FAIL:
            transitions.write_failed(
                pipe, run.job_id, run.priority, config.retention.failed, kind, error, hist
            )
            transitions.count_outcome(pipe, JobStatus.FAILED, run.renderer, run.run_seconds(), kind)
        elif decision is Decision.RETRY_LATER:
            transitions.count_retry(pipe)
            retry_at = time.time() + retry_delay(run.attempt - run.retry_base, config.retry)
            transitions.write_scheduled(pipe, run.job_id, run.priority, retry_at, kind, error, hist)
        else:
            transitions.count_retry(pipe)
            transitions.write_requeued(
                pipe,
                run.job_id,
                run.priority,
                front=True,
                fields={
                    keys.F_HISTORY: hist,
                    keys.F_ERROR_KIND: kind.value,
                    keys.F_ERROR: transitions.trim_error(error),
                },
                renderer=run.renderer,
                line=run.line,
            )

    outcome = f"{kind.value}:{decision.value}"
    if transitions.claim(
        connection, run.job_id, run.token, _with_extra(writes, extra), run.renderer, outcome
    ):
        return decision
    return None


def cancel(connection: Redis, config: FarmConfig, run: Run, message: str, extra: Extra = None) -> bool:
    def writes(pipe: Pipeline) -> None:
        transitions.write_canceled(
            pipe,
            run.job_id,
            run.priority,
            config.retention.canceled,
            message,
            transitions.history_json(run.history, run.record(ErrorKind.CANCELED, message)),
        )
        transitions.count_outcome(pipe, JobStatus.CANCELED, run.renderer, run.run_seconds())

    return transitions.claim(
        connection, run.job_id, run.token, _with_extra(writes, extra), run.renderer, "canceled"
    )


def cancel_requested(connection: Redis, job_id: str) -> bool:
    return bool(connection.hget(keys.job(job_id), keys.F_CANCEL))


def requeue(connection: Redis, config: FarmConfig, run: Run, extra: Extra = None) -> bool:
    """Put an interrupted run back at the front of its queue without counting the attempt
    (unless a cancel is pending: then it ends canceled)."""
    if cancel_requested(connection, run.job_id):
        return cancel(connection, config, run, "canceled while running", extra)
    if run.corrupt:
        return (
            fail(connection, config, run, ErrorKind.INVALID_INPUT, corrupt_error(run.corrupt), extra)
            is not None
        )

    def writes(pipe: Pipeline) -> None:
        transitions.write_requeued(
            pipe,
            run.job_id,
            run.priority,
            front=True,
            fields={keys.F_ATTEMPTS: max(0, run.attempt - 1)},
            renderer=run.renderer,
            line=run.line,
        )

    return transitions.claim(
        connection, run.job_id, run.token, _with_extra(writes, extra), run.renderer, "requeued"
    )


def attempt_record(
    number: int, worker: str | None, started_at: Any, kind: ErrorKind | None = None, error: str | None = None
) -> Attempt:
    return Attempt(
        number=number,
        worker=worker,
        started_at=started_at,
        ended_at=utcnow(),
        error_kind=kind,
        error=transitions.trim_error(error) if error else None,
    )
