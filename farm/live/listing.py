"""Paginated job listings, newest first, read page by page from Redis indexes.

Finished, failed and canceled jobs come from RQ's registries (scored by expiry, so by end time);
running jobs from the slot table; scheduled ones from the retry schedule; everything else from
``farm:jobs`` (scored by submit time). Filters are checked on a few cheap hash fields per page;
a scan stops after ``MAX_SCAN`` ids, so a listing never walks the whole history.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

from redis import Redis

from .. import keys
from ..models import PRIORITY_ORDER, JobStatus, Priority
from ..records import RQ_TO_FARM_STATUS, Slot
from ..transitions import registry_key

PAGE = 500
MAX_SCAN = 20_000


def _zset_desc(connection: Redis, key: str) -> Iterator[tuple[float, str]]:
    start = 0
    while True:
        page = connection.zrevrange(key, start, start + PAGE - 1, withscores=True)
        if not page:
            return
        for member, score in page:
            yield -score, member.decode("utf-8", "replace")  # negated: heapq.merge wants ascending order
        if len(page) < PAGE:
            return
        start += PAGE


def _merged_ids(connection: Redis, zset_keys: Sequence[str]) -> Iterator[str]:
    for _, member in heapq.merge(*(_zset_desc(connection, k) for k in zset_keys)):
        yield member


def _candidates(connection: Redis, status: JobStatus | None, priorities: Sequence[Priority]) -> Iterator[str]:
    if status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED):
        assert status is not None
        return _merged_ids(connection, [registry_key(status.value, p.value) for p in priorities])
    if status is JobStatus.SCHEDULED:
        return _merged_ids(connection, [keys.scheduled(p.value) for p in priorities])
    if status is JobStatus.RUNNING:
        slots = [Slot.parse(k, v) for k, v in connection.hgetall(keys.SLOTS).items()]
        return iter([slot.job_id for slot in sorted(slots, key=lambda s: s.started, reverse=True)])
    return _merged_ids(connection, [keys.JOBS])


def list_job_ids(
    connection: Redis,
    *,
    status: JobStatus | None = None,
    priority: Priority | None = None,
    renderer: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[str]:
    priorities = [priority] if priority else list(PRIORITY_ORDER)
    wanted_status = {rq for rq, farm in RQ_TO_FARM_STATUS.items() if farm is status} if status else None
    found: list[str] = []
    skipped = scanned = 0
    stale: list[str] = []
    ids = _candidates(connection, status, priorities)
    # Without filters nearly every id matches: read just enough for the page.
    page_size = PAGE if (status or priority or renderer) else min(PAGE, offset + limit + 10)
    while len(found) < limit and scanned < MAX_SCAN:
        page = [job_id for _, job_id in zip(range(page_size), ids, strict=False)]
        if not page:
            break
        scanned += len(page)
        with connection.pipeline(transaction=False) as pipe:
            for job_id in page:
                pipe.hmget(keys.job(job_id), "status", keys.F_PRIORITY, keys.F_RENDERER)
            fields = pipe.execute()
        for job_id, (st, prio, rend) in zip(page, fields, strict=True):
            if st is None:
                stale.append(job_id)
                continue
            if wanted_status is not None and st.decode("utf-8", "replace") not in wanted_status:
                continue
            if priority is not None and (prio or b"").decode("utf-8", "replace") != priority.value:
                continue
            if renderer is not None and (rend or b"").decode("utf-8", "replace") != renderer:
                continue
            if skipped < offset:
                skipped += 1
                continue
            found.append(job_id)
            if len(found) >= limit:
                break
    if stale and status is None:
        connection.zrem(keys.JOBS, *stale)  # expired jobs: drop them from the listing index
    return found


def list_prefix(connection: Redis, prefix: str, limit: int = 10) -> list[str]:
    """Ids in the listing index that start with ``prefix`` (at most ``limit``; one SCAN pass).
    ``prefix`` is a checked job id, so it holds no glob characters."""
    found: list[str] = []
    for member, _score in connection.zscan_iter(keys.JOBS, match=f"{prefix}*", count=1000):
        found.append(member.decode("utf-8", "replace"))
        if len(found) >= limit:
            break
    return sorted(found)
