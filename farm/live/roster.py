"""Who is working: RQ's worker registrations joined with the farm's heartbeats and slots; and the
worker pools with their process counts (``list_pools``, for ``farm workers`` and the TUI)."""

from __future__ import annotations

import time

from redis import Redis
from rq.serializers import JSONSerializer
from rq.worker import Worker

from .. import keys
from ..config import FarmConfig
from ..models import PoolInfo, WorkerInfo
from ..records import Slot
from ..rq_classes import FarmJob, FarmQueue
from ..timeutil import from_ts


def list_workers(connection: Redis, config: FarmConfig) -> list[WorkerInfo]:
    now = time.time()
    beats = {
        m.decode("utf-8", "replace"): s for m, s in connection.zrange(keys.HEARTBEATS, 0, -1, withscores=True)
    }
    current = {}
    for job_id, value in connection.hgetall(keys.SLOTS).items():
        slot = Slot.parse(job_id, value)
        current[slot.worker] = slot.job_id
    infos = []
    for worker in Worker.all(
        connection=connection, job_class=FarmJob, queue_class=FarmQueue, serializer=JSONSerializer
    ):
        beat = beats.get(worker.name)
        alive = beat is not None and now - beat < config.scheduler.worker_timeout
        infos.append(
            WorkerInfo(
                name=worker.name,
                host=worker.hostname,
                pid=worker.pid,
                state=str(worker.get_state()) if alive else "dead",
                current_job=current.get(worker.name),
                last_heartbeat=from_ts(beat) if beat is not None else worker.last_heartbeat,
                alive=alive,
            )
        )
    infos.sort(key=lambda w: (not w.alive, w.name))
    return infos


POOL_READ = keys.POOL_FIELDS + keys.POOL_WHERE  # what to HMGET from a pool's record, in order


def list_pools(connection: Redis) -> list[PoolInfo]:
    """The worker pools that reported in the last few seconds (``farm worker --workers N`` or
    ``MIN:MAX`` on any box), by name: processes now (``current``), where each is heading
    (``target``), its size (``minimum``, ``maximum``) and what it saw. Two round trips."""
    names = sorted(n.decode("utf-8", "replace") for n in connection.smembers(keys.POOLS))
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(keys.pool(name), POOL_READ)
        rows = pipe.execute()
    return [pool for name, row in zip(names, rows, strict=True) if (pool := pool_from_row(name, row))]


def pool_from_row(name: str, row: list[bytes | None]) -> PoolInfo | None:
    """A pool from its record's ``POOL_READ`` values; None once it expired. Never raises."""
    if not any(row):
        return None
    texts = (v.decode("utf-8", "replace") if v is not None else "" for v in row)
    raw = dict(zip(POOL_READ, texts, strict=True))
    counts = {field: _count(raw[field]) for field in keys.POOL_FIELDS}
    at = _number(raw["at"])
    return PoolInfo(
        name=name,
        host=raw["host"] or None,
        pid=_count(raw["pid"]) or None,
        at=from_ts(at) if at else None,
        **counts,
    )


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if 0 <= value < 1e12 else 0.0


def _count(text: str) -> int:
    return int(_number(text))
