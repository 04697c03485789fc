"""Turns a job's Redis hash (RQ's fields plus the farm's) into a JobInfo. Pure: no Redis calls."""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Mapping
from typing import Any

from . import keys
from .models import Attempt, ErrorKind, JobInfo, JobStatus, Priority
from .rq_classes import DISPATCHER
from .timeutil import from_ts, parse_rq_time

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

Raw = Mapping[bytes, bytes]


def text(raw: Raw, field: str) -> str | None:
    value = raw.get(field.encode())
    if value is None or value == b"":
        return None
    return value.decode("utf-8", "replace")


def decode_call(data: bytes | None) -> tuple[str | None, dict[str, Any]]:
    """(function name, kwargs) of a job's JSON payload; (None, {}) when it is not JSON."""
    if not data:
        return None, {}
    try:
        with contextlib.suppress(zlib.error):
            data = zlib.decompress(data)
        func_name, _instance, _args, kwargs = json.loads(data)
    except (ValueError, TypeError):
        return None, {}
    if not isinstance(kwargs, dict):
        kwargs = {}
    return (func_name if isinstance(func_name, str) else None), kwargs


def farm_status(raw: Raw) -> JobStatus:
    return RQ_TO_FARM_STATUS.get(text(raw, "status") or "", JobStatus.QUEUED)


def history(raw: Raw) -> tuple[Attempt, ...]:
    blob = text(raw, keys.F_HISTORY)
    if not blob:
        return ()
    try:
        return tuple(Attempt.model_validate(item) for item in json.loads(blob))
    except ValueError:
        return ()


def _float(raw: Raw, field: str, default: float = 0.0) -> float:
    value = text(raw, field)
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def _int(raw: Raw, field: str) -> int | None:
    value = text(raw, field)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def info_from_hash(job_id: str, raw: Raw, **extra: Any) -> JobInfo:
    """A JobInfo from the job hash; ``extra`` fills position/eta/wait_reason."""
    func_name, kwargs = decode_call(raw.get(b"data"))
    params = kwargs.get("params") if func_name == DISPATCHER else None
    renderer = text(raw, keys.F_RENDERER) or (kwargs.get("renderer") if func_name == DISPATCHER else None)
    priority = text(raw, keys.F_PRIORITY) or text(raw, "origin") or Priority.MEDIUM.value
    kind = text(raw, keys.F_ERROR_KIND)
    result_blob = text(raw, keys.F_RESULT)
    status = farm_status(raw)
    return JobInfo(
        id=job_id,
        name=text(raw, keys.F_NAME),
        renderer=renderer or "?",
        params=params if isinstance(params, dict) else {},
        priority=Priority(priority) if priority in Priority._value2member_map_ else Priority.MEDIUM,
        job_type=text(raw, keys.F_JOB_TYPE),
        status=status,
        progress=_float(raw, keys.F_PROGRESS),
        stage=text(raw, keys.F_STAGE) or "",
        attempts=_int(raw, keys.F_ATTEMPTS) or 0,
        max_retries=_int(raw, keys.F_MAX_RETRIES) or 0,
        timeout=_int(raw, "timeout"),
        error_kind=ErrorKind(kind) if kind in ErrorKind._value2member_map_ else None,
        error=text(raw, keys.F_ERROR),
        result=json.loads(result_blob) if result_blob else None,
        history=history(raw),
        enqueued_at=from_ts(text(raw, keys.F_SUBMITTED)) or parse_rq_time(raw.get(b"enqueued_at")),
        started_at=parse_rq_time(raw.get(b"started_at")),
        ended_at=parse_rq_time(raw.get(b"ended_at")) if status.terminal else None,
        worker=text(raw, "worker_name"),
        retry_at=from_ts(text(raw, keys.F_RETRY_AT)) if status is JobStatus.SCHEDULED else None,
        cancel_requested=bool(text(raw, keys.F_CANCEL)),
        **extra,
    )
