"""Clock helpers: UTC for storage, local time of day for cap windows; one place to fake in tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rq.utils import utcformat, utcparse

__all__ = ["from_ts", "local_minute_of_day", "parse_rq_time", "rq_time", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_minute_of_day(at: float | None = None) -> int:
    tm = time.localtime(at if at is not None else time.time())
    return tm.tm_hour * 60 + tm.tm_min


def rq_time(dt: datetime | None = None) -> str:
    """A timestamp in RQ's storage format."""
    return utcformat(dt or utcnow())


def parse_rq_time(value: bytes | str | None) -> datetime | None:
    if not value:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    try:
        return utcparse(text)
    except ValueError:
        return None


def from_ts(value: float | bytes | str | None) -> datetime | None:
    if value in (None, b"", ""):
        return None
    return datetime.fromtimestamp(float(value), UTC)
