"""Turns a job's Redis hash (RQ's fields plus the farm's) into a JobInfo. Pure: no Redis calls.

Reading the hash is ``records.read_job``'s (it never raises); this module only shapes it.
"""

from __future__ import annotations

from typing import Any

from .models import JobInfo, JobStatus
from .records import RQ_TO_FARM_STATUS, JobRecord, Raw, decode_call, read_job, text

__all__ = ["RQ_TO_FARM_STATUS", "decode_call", "farm_status", "info_from_hash", "info_from_record", "text"]


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
        **extra,
    )


def info_from_hash(job_id: str, raw: Raw, **extra: Any) -> JobInfo:
    return info_from_record(read_job(job_id, raw), **extra)
