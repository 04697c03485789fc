"""The audit log of operator actions (cancel, retry, caps, pause): who, when, what."""

from __future__ import annotations

import getpass
import json
import socket
from typing import Any

from redis import Redis
from redis.client import Pipeline

from . import keys
from .models import AuditEntry
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


def read(connection: Redis, limit: int = 50) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for blob in connection.lrange(keys.AUDIT, 0, max(0, limit - 1)):
        try:
            entries.append(AuditEntry.model_validate(json.loads(blob)))
        except ValueError:
            continue
    return entries


def describe(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items())
