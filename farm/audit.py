"""The audit log of operator actions (cancel, retry, caps, pause): who, when, what."""

from __future__ import annotations

import getpass
import socket
from typing import Any

from redis import Redis
from redis.client import Pipeline

from . import keys
from .models import AuditEntry
from .records import safe_json
from .timeutil import utcnow

KEEP = 1000


def default_who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def record(
    pipe: Pipeline | Redis, who: str, action: str, target: str | None = None, detail: str | None = None
) -> None:
    entry = AuditEntry(at=utcnow(), who=who, action=action, target=target, detail=detail)
    pipe.lpush(keys.AUDIT, entry.model_dump_json())
    pipe.ltrim(keys.AUDIT, 0, KEEP - 1)


def parse_entry(blob: bytes) -> AuditEntry | None:
    """One stored audit entry; None when it cannot be read."""
    try:
        return AuditEntry.model_validate(safe_json(blob))
    except ValueError:  # pydantic's ValidationError is a ValueError
        return None


def read(connection: Redis, limit: int = 50) -> list[AuditEntry]:
    return [e for blob in connection.lrange(keys.AUDIT, 0, max(0, limit - 1)) if (e := parse_entry(blob))]


def describe(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items())
