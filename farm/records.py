"""Reading what the farm stores in Redis: one reader per record, and none of them ever raises;
and shaping a job record into the API's ``JobInfo``.

Records are the job hash (RQ's fields plus the farm's ``farm_*``), a slot entry of ``farm:slots``
and a stats bucket. Anyone with access to Redis can write anything into them, so every reader
here turns bytes into typed values defensively: an unreadable field takes its default and its
name is added to ``corrupt``. Whoever acts on a job (the worker at dispatch, the sweep, the
scheduler) fails a job whose record is corrupt with ``invalid_input`` and the error
``"corrupt job record: <field>"``; whoever only shows it (API, CLI, TUI) shows the defaults.
Pure: no Redis calls.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from rq.utils import utcparse

from . import keys
from .models import Attempt, ErrorKind, JobInfo, JobStatus, Priority
from .rq_classes import DISPATCHER

Raw = Mapping[bytes, bytes]

RQ_TO_FARM_STATUS: dict[str, JobStatus] = {
    "queued": JobStatus.QUEUED,
    "deferred": JobStatus.QUEUED,
    "rate_limited": JobStatus.QUEUED,
    "scheduled": JobStatus.SCHEDULED,
    "started": JobStatus.RUNNING,
    "finished": JobStatus.FINISHED,
    "failed": JobStatus.FAILED,
    "stopped": JobStatus.CANCELED,
    "canceled": JobStatus.CANCELED,
}
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # renderer names and job types, as stored
MAX_JSON_CHARS = 4 * 1024 * 1024  # a stored JSON field larger than this is not parsed
MAX_DEPTH = 64
RQ_INT_FIELDS = ("result_ttl", "failure_ttl", "ttl")
RQ_TIME_FIELDS = ("created_at", "last_heartbeat")


def text(raw: Raw, field: str) -> str | None:
    value = raw.get(field.encode())
    if value is None or value == b"":
        return None
    return value.decode("utf-8", "replace")


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a decoded JSON value (stops counting past ``limit``)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def safe_json(blob: bytes | str | None) -> Any:
    """Decoded JSON, or raises ValueError (too large, too deep, invalid): never anything else."""
    if blob is None:
        raise ValueError("missing")
    if len(blob) > MAX_JSON_CHARS:
        raise ValueError("too large")
    try:
        value = json.loads(blob)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    if depth(value) > MAX_DEPTH:
        raise ValueError("nested too deeply")
    return value


def decode_call(data: bytes | None) -> tuple[str | None, dict[str, Any]]:
    """(function name, kwargs) of a job's JSON payload; (None, {}) when it is not JSON."""
    if not data:
        return None, {}
    try:
        with contextlib.suppress(zlib.error):
            inflater = zlib.decompressobj()
            data = inflater.decompress(data, MAX_JSON_CHARS)  # bounded: no zip bomb
            if inflater.unconsumed_tail:
                return None, {}
        func_name, _instance, _args, kwargs = safe_json(data)
    except (ValueError, TypeError):
        return None, {}
    if not isinstance(kwargs, dict):
        kwargs = {}
    return (func_name if isinstance(func_name, str) else None), kwargs


class _Fields:
    """Typed reads of a job hash, noting the fields that could not be read."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.corrupt: list[str] = []

    def text(self, name: str) -> str | None:
        return text(self.raw, name)

    def bad(self, name: str) -> None:
        if name not in self.corrupt:
            self.corrupt.append(name)

    def int(self, name: str, low: int = 0, high: int = 10**12) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            number = int(value.strip()) if len(value) <= 20 else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            self.bad(name)
            return None
        return number

    def float(self, name: str, low: float = -math.inf, high: float = math.inf) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            number = float(value) if len(value) <= 40 else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or not low <= number <= high:
            self.bad(name)
            return None
        return number

    def stamp(self, name: str) -> datetime | None:
        """A unix time field (the farm's own)."""
        value = self.float(name, 0, 1e11)
        return None if value is None else datetime.fromtimestamp(value, UTC)

    def rq_time(self, name: str) -> datetime | None:
        """A datetime in RQ's storage format."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return utcparse(value)
        except (ValueError, TypeError, OverflowError):
            self.bad(name)
            return None

    def choice(self, name: str, allowed: Mapping[str, Any]) -> Any:
        value = self.text(name)
        if value is None:
            return None
        if value not in allowed:
            self.bad(name)
            return None
        return allowed[value]

    def pattern(self, name: str, regex: re.Pattern[str]) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        if not regex.fullmatch(value):
            self.bad(name)
            return None
        return value


_PRIORITIES = {p.value: p for p in Priority}
_KINDS = {k.value: k for k in ErrorKind}


@dataclass(frozen=True)
class JobRecord:
    """A job hash, read. ``exists`` is False for an empty hash (no such job)."""

    id: str
    exists: bool
    rq_status: str | None
    status: JobStatus
    func_name: str | None
    renderer: str | None
    params: dict[str, Any] | None
    priority: Priority
    job_type: str | None
    name: str | None
    attempts: int
    max_retries: int
    retry_base: int
    line: int | None
    timeout: int | None
    progress: float
    stage: str
    error_kind: ErrorKind | None
    error: str | None
    result: dict[str, Any] | None
    history: tuple[Attempt, ...]
    submitted: datetime | None
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    retry_at: datetime | None
    worker: str | None
    token: str | None
    cancel: str | None
    ended_by: str | None
    by: str | None
    files: tuple[dict[str, Any], ...]
    after: tuple[str, ...]
    cache: bool
    cached_from: str | None
    corrupt: tuple[str, ...]

    @property
    def corrupt_error(self) -> str | None:
        """The error a job failed for its unreadable record gets, or None when it reads fine."""
        return corrupt_error(self.corrupt) if self.corrupt else None


CORRUPT = "corrupt job record: "  # + the unreadable fields (dispatch.lua writes it too)


def corrupt_error(fields: tuple[str, ...]) -> str:
    return CORRUPT + ", ".join(fields)


def _history(fields: _Fields) -> tuple[Attempt, ...]:
    blob = fields.text(keys.F_HISTORY)
    if blob is None:
        return ()
    try:
        items = safe_json(blob)
        if not isinstance(items, list):
            raise ValueError("not a list")
        return tuple(Attempt.model_validate(item) for item in items)
    except (ValueError, ValidationError, TypeError):
        fields.bad(keys.F_HISTORY)
        return ()


def _files(fields: _Fields) -> tuple[dict[str, Any], ...]:
    return _json_list(
        fields,
        keys.F_FILES,
        lambda i: isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("sha256"), str),
    )


def _after(fields: _Fields) -> tuple[str, ...]:
    return _json_list(fields, keys.RQ_DEPENDENCY_IDS, lambda i: isinstance(i, str) and 0 < len(i) <= 128)


def _json_list(fields: _Fields, field: str, good: Callable[[Any], bool]) -> tuple[Any, ...]:
    """The JSON list stored in ``field`` when every item is ``good``; else () and the field bad."""
    blob = fields.text(field)
    if blob is None:
        return ()
    try:
        items = safe_json(blob)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(good(i) for i in items):
        fields.bad(field)
        return ()
    return tuple(items)


def _result(fields: _Fields) -> dict[str, Any] | None:
    blob = fields.text(keys.F_RESULT)
    if blob is None:
        return None
    try:
        value = safe_json(blob)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        fields.bad(keys.F_RESULT)
        return None
    return value


def read_job(job_id: str, raw: Raw) -> JobRecord:
    """The job hash ``raw`` as a JobRecord. Never raises, whatever the hash holds."""
    f = _Fields(raw)
    func_name, kwargs = decode_call(raw.get(b"data"))
    ours = func_name == DISPATCHER
    rq_status = f.text("status")
    status = RQ_TO_FARM_STATUS.get(rq_status or "", JobStatus.QUEUED)
    if rq_status is not None and rq_status not in RQ_TO_FARM_STATUS:
        f.bad("status")
    renderer = f.pattern(keys.F_RENDERER, NAME_RE)
    if renderer is None and ours and isinstance(kwargs.get("renderer"), str):
        renderer = kwargs["renderer"] if NAME_RE.fullmatch(kwargs["renderer"]) else None
    params = kwargs.get("params") if ours else None
    priority = (
        f.choice(keys.F_PRIORITY, _PRIORITIES) or _PRIORITIES.get(f.text("origin") or "") or Priority.MEDIUM
    )
    history = _history(f)
    for name in RQ_INT_FIELDS:  # RQ's own fields, as Job.restore will read them
        f.int(name, -1, 10**12)
    for name in RQ_TIME_FIELDS:
        f.rq_time(name)
    return JobRecord(
        id=job_id,
        exists=bool(raw),
        rq_status=rq_status,
        status=status,
        func_name=func_name,
        renderer=renderer,
        params=params if isinstance(params, dict) else None,
        priority=priority,
        job_type=f.pattern(keys.F_JOB_TYPE, NAME_RE),
        name=f.text(keys.F_NAME),
        attempts=f.int(keys.F_ATTEMPTS) or 0,
        max_retries=f.int(keys.F_MAX_RETRIES, 0, 1000) or 0,
        retry_base=f.int(keys.F_RETRY_BASE) or 0,
        line=f.int(keys.F_LINE),
        timeout=f.int("timeout", 1, 10**9),
        progress=f.float(keys.F_PROGRESS, 0, 100) or 0.0,
        stage=f.text(keys.F_STAGE) or "",
        error_kind=f.choice(keys.F_ERROR_KIND, _KINDS),
        error=f.text(keys.F_ERROR),
        result=_result(f),
        history=history,
        submitted=f.stamp(keys.F_SUBMITTED),
        enqueued_at=f.rq_time("enqueued_at"),
        started_at=f.rq_time("started_at"),
        ended_at=f.rq_time("ended_at"),
        retry_at=f.stamp(keys.F_RETRY_AT),
        worker=f.text("worker_name"),
        token=f.text(keys.F_TOKEN),
        cancel=f.text(keys.F_CANCEL),
        ended_by=f.text(keys.F_ENDED_BY),
        by=f.text(keys.F_SUBMITTER),
        files=_files(f),
        after=_after(f),
        cache=f.text(keys.F_CACHE) == "1",
        cached_from=f.text(keys.F_CACHED_FROM),
        corrupt=tuple(f.corrupt),
    )


@dataclass(frozen=True)
class Slot:
    """One entry of ``farm:slots``: job id -> ``renderer\\tworker\\tstarted\\tpriority``."""

    job_id: str
    renderer: str
    worker: str
    started: float  # server time; 0.0 when unreadable
    priority: str

    SEP = "\t"

    def encode(self) -> str:
        return self.SEP.join((self.renderer, self.worker, repr(self.started), self.priority))

    @classmethod
    def parse(cls, job_id: bytes | str, value: bytes | str | None) -> Slot:
        """Never raises: missing or unreadable parts take defaults."""
        job = job_id.decode("utf-8", "replace") if isinstance(job_id, bytes) else job_id
        text_value = value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
        renderer, worker, started, priority = (text_value.split(cls.SEP) + ["", "", "", ""])[:4]
        try:
            when = float(started)
        except ValueError:
            when = 0.0
        if not math.isfinite(when):
            when = 0.0
        return cls(
            job, renderer, worker, when, priority if priority in _PRIORITIES else Priority.MEDIUM.value
        )


def number_map(raw: Raw) -> dict[str, float]:
    """A hash of counters (stats buckets); unreadable values are dropped."""
    out = {}
    for key, value in raw.items():
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            out[key.decode("utf-8", "replace")] = number
    return out


def float_or_none(value: bytes | str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def farm_status(raw: Raw) -> JobStatus:
    return RQ_TO_FARM_STATUS.get(text(raw, "status") or "", JobStatus.QUEUED)


def info_from_record(record: JobRecord, **extra: Any) -> JobInfo:
    """A JobInfo from a read job record; ``extra`` fills position/eta/wait_reason."""
    status = record.status
    return JobInfo(
        id=record.id,
        name=record.name,
        renderer=record.renderer or "?",
        params=record.params or {},
        priority=record.priority,
        job_type=record.job_type,
        status=status,
        progress=record.progress,
        stage=record.stage,
        attempts=record.attempts,
        max_retries=record.max_retries,
        timeout=record.timeout,
        error_kind=record.error_kind,
        error=record.error,
        result=record.result,
        history=record.history,
        enqueued_at=record.submitted or record.enqueued_at,
        started_at=record.started_at,
        ended_at=record.ended_at if status.terminal else None,
        worker=record.worker,
        retry_at=record.retry_at if status is JobStatus.SCHEDULED else None,
        cancel_requested=bool(record.cancel),
        by=record.by,
        files=record.files,
        after=record.after,
        cached_from=record.cached_from,
        **extra,
    )


def info_from_hash(job_id: str, raw: Raw, **extra: Any) -> JobInfo:
    return info_from_record(read_job(job_id, raw), **extra)
