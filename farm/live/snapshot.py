"""The TUI's data: one immutable Snapshot of the farm, read in a fixed number of Redis round trips.

Three pipelined reads whatever the size of the history: the live state (``state.read_state``),
the ids of one page of jobs (running, the head of the line, recent retries and endings), then a
few hash fields of those jobs. Counts come from list/sorted-set sizes; no job list is walked.
UI-free: the app polls ``take_snapshot`` off its UI thread and renders what it gets.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from redis import Redis

from .. import keys
from ..audit import parse_entry
from ..config import FarmConfig
from ..models import PRIORITY_ORDER, AuditEntry, ErrorKind, FarmStats, JobStatus, PoolInfo, Priority
from ..pipelines import deps
from ..records import float_or_none, read_job
from ..timeutil import from_ts
from ..transitions import registry_key
from .placement import can_start, lanes, running_eta, take_lane, wait_reason
from .state import FarmState, read_state, stats_from_state

ROW_FIELDS = (
    "status",
    keys.F_NAME,
    keys.F_RENDERER,
    keys.F_PRIORITY,
    keys.F_PROGRESS,
    keys.F_STAGE,
    keys.F_ATTEMPTS,
    keys.F_MAX_RETRIES,
    "worker_name",
    keys.F_ERROR_KIND,
    keys.F_ERROR,
    keys.F_SUBMITTED,
    "started_at",
    "ended_at",
    keys.F_RETRY_AT,
    keys.F_JOB_TYPE,
    keys.F_SUBMITTER,
    keys.RQ_DEPENDENCY_IDS,
    keys.F_CACHED_FROM,
)


class JobRow(BaseModel):
    """One line of the job table."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None
    renderer: str
    priority: Priority
    status: JobStatus
    progress: float
    stage: str
    attempts: int
    max_retries: int
    job_type: str | None = None
    by: str | None = None
    worker: str | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None  # first line only
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    position: int | None = None
    eta: datetime | None = None
    wait_reason: str | None = None
    after: tuple[str, ...] = ()  # the jobs it waits for (after=)
    cached_from: str | None = None  # a render cache hit: the job whose outputs it reused

    def waited(self, now: datetime) -> float | None:
        if self.enqueued_at is None:
            return None
        end = self.started_at or (
            now if self.status in (JobStatus.QUEUED, JobStatus.SCHEDULED) else self.ended_at
        )
        return max(0.0, ((end or now) - self.enqueued_at).total_seconds())

    def ran(self, now: datetime) -> float | None:
        if self.started_at is None or self.status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
            return None
        end = now if self.status is JobStatus.RUNNING else (self.ended_at or now)
        return max(0.0, (end - self.started_at).total_seconds())


class Snapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    stats: FarmStats
    rows: tuple[JobRow, ...]
    alerts: tuple[str, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    redis_rtt_ms: float = 0.0
    workers_alive: tuple[str, ...] = ()
    redis_restarts: int = 0  # times `farm up` restarted its embedded Redis
    redis_restarted_at: datetime | None = None
    pools: tuple[PoolInfo, ...] = ()  # worker pools: processes now (current) and target, min, max


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value else None


def _line_ids(connection: Redis, state: FarmState, limit: int) -> list[str]:
    """The first ``limit`` queued jobs in the order dispatch.lua serves them, then (if that
    leaves room) jobs waiting for others (after=)."""
    with connection.pipeline(transaction=False) as pipe:
        for rank, p in enumerate(PRIORITY_ORDER, start=1):
            for renderer in state.held:
                pipe.zrangebyscore(
                    keys.held(renderer),
                    rank * keys.HELD_BAND,
                    (rank + 1) * keys.HELD_BAND - 1,
                    start=0,
                    num=limit,
                    withscores=True,
                )
            pipe.lrange(keys.queue(p.value), 0, limit - 1)
        for p in PRIORITY_ORDER:
            pipe.zrange(keys.deferred(p.value), 0, limit - 1)
        replies = iter(pipe.execute())
    ids: list[str] = []
    for _p in PRIORITY_ORDER:
        held: list[tuple[float, str]] = []
        for _renderer in state.held:
            held.extend((score, member.decode("utf-8", "replace")) for member, score in next(replies))
        ids.extend(member for _, member in sorted(held))  # held jobs of a priority come first
        ids.extend(member.decode("utf-8", "replace") for member in next(replies))
    ids = ids[:limit]
    waiting = [m.decode("utf-8", "replace") for _p in PRIORITY_ORDER for m in next(replies)]
    return ids + waiting[: max(0, limit - len(ids))]  # then the jobs waiting on others


def _recent_ids(connection: Redis, limit: int) -> list[str]:
    """Scheduled retries and the most recently ended jobs (all three registries, all priorities)."""
    with connection.pipeline(transaction=False) as pipe:
        for p in PRIORITY_ORDER:
            pipe.zrange(keys.scheduled(p.value), 0, limit - 1, withscores=True)
        for p in PRIORITY_ORDER:
            for registry in ("finished", "failed", "canceled"):
                pipe.zrevrange(registry_key(registry, p.value), 0, limit - 1, withscores=True)
        replies = pipe.execute()
    scheduled = sorted((score, m.decode("utf-8", "replace")) for reply in replies[:3] for m, score in reply)
    ended = sorted(
        ((score, m.decode("utf-8", "replace")) for reply in replies[3:] for m, score in reply), reverse=True
    )
    return [m for _, m in scheduled[:limit]] + [m for _, m in ended[:limit]]


def _row(job_id: str, values: list[bytes | None]) -> JobRow | None:
    raw = {
        field.encode(): value for field, value in zip(ROW_FIELDS, values, strict=True) if value is not None
    }
    if b"status" not in raw:
        return None
    record = read_job(job_id, raw)
    status = record.status
    retry_at = record.retry_at
    error = record.error
    return JobRow(
        id=job_id,
        name=record.name,
        renderer=record.renderer or "?",
        priority=record.priority,
        status=status,
        progress=record.progress,
        stage=record.stage,
        attempts=record.attempts,
        max_retries=record.max_retries,
        job_type=record.job_type,
        by=record.by,
        worker=record.worker,
        error_kind=record.error_kind,
        error=error.splitlines()[0][:200] if error else None,
        enqueued_at=record.submitted,
        started_at=record.started_at,
        ended_at=record.ended_at if status.terminal else None,
        eta=retry_at if status is JobStatus.SCHEDULED else None,
        wait_reason=f"retry at {retry_at.astimezone():%H:%M:%S}"
        if status is JobStatus.SCHEDULED and retry_at
        else None,
        after=record.after,
        cached_from=record.cached_from,
    )


def _waiting_rows(connection: Redis, rows: list[JobRow]) -> list[JobRow]:
    """Queued rows still waiting for a dependency get ``after <id8> (<status>)`` (one round trip)."""
    needed = list(dict.fromkeys(d for r in rows if r.status is JobStatus.QUEUED for d in r.after))
    if not needed:
        return rows
    found = deps.read_statuses(connection, needed)
    out = []
    for row in rows:
        reason = deps.wait_reason(row.after, found) if row.status is JobStatus.QUEUED else None
        out.append(row.model_copy(update={"wait_reason": reason}) if reason else row)
    return out


def _place_rows(state: FarmState, rows: list[JobRow]) -> list[JobRow]:
    """Positions, wait reasons and ETAs for the queued rows (in line order) and running rows."""
    placed = []
    position = 0
    renderer_lanes: dict[str, list[float]] = {}
    for row in rows:
        if row.status is JobStatus.QUEUED and row.after and row.wait_reason:
            placed.append(row)  # waiting for another job: not in line yet
        elif row.status is JobStatus.QUEUED:
            position += 1
            reason = wait_reason(state, row.priority, row.renderer, position)
            eta = None
            if reason != "queue paused" and can_start(state):
                lane = renderer_lanes.setdefault(row.renderer, lanes(state, row.renderer))
                eta = take_lane(state, lane, row.renderer)
            placed.append(row.model_copy(update={"position": position, "wait_reason": reason, "eta": eta}))
        elif row.status is JobStatus.RUNNING:
            placed.append(
                row.model_copy(update={"eta": running_eta(state, row.started_at, row.progress, row.renderer)})
            )
        else:
            placed.append(row)
    return placed


def threshold_alerts(config: FarmConfig, stats: FarmStats) -> dict[str, str]:
    """The [alerts] thresholds crossed now, by kind (``queue_depth``, ``failures_per_hour``,
    ``avg_wait``): the TUI's banner and the scheduler's alert webhooks read the same ones."""
    found = {}
    queued = sum(stats.counts[JobStatus.QUEUED].values())
    if queued > config.alerts.queue_depth:
        found["queue_depth"] = f"queue depth {queued} > {config.alerts.queue_depth}"
    if stats.failed_last_hour > config.alerts.failures_per_hour:
        found["failures_per_hour"] = (
            f"{stats.failed_last_hour} failures in the last hour > {config.alerts.failures_per_hour}"
        )
    if stats.avg_wait is not None and stats.avg_wait > config.alerts.avg_wait_minutes * 60:
        found["avg_wait"] = (
            f"average wait {stats.avg_wait / 60:.0f} min > {config.alerts.avg_wait_minutes:g} min"
        )
    return found


def alerts(config: FarmConfig, stats: FarmStats) -> tuple[str, ...]:
    found = list(threshold_alerts(config, stats).values())
    if not stats.scheduler_alive:
        found.append("scheduler not running: no retries, no sweeps")
    if stats.workers == 0:
        found.append("no workers alive")
    return tuple(found)


def take_snapshot(
    connection: Redis,
    config: FarmConfig,
    *,
    queued_limit: int = 40,
    recent_limit: int = 40,
    now: float | None = None,
) -> Snapshot:
    start = time.perf_counter()
    state = read_state(connection, config, now=now)
    rtt_ms = (time.perf_counter() - start) * 1000
    running_ids = [slot.job_id for slot in state.slots]
    ids = running_ids + _line_ids(connection, state, queued_limit) + _recent_ids(connection, recent_limit)
    unique = list(dict.fromkeys(ids))
    with connection.pipeline(transaction=False) as pipe:
        for job_id in unique:
            pipe.hmget(keys.job(job_id), ROW_FIELDS)
        pipe.lrange(keys.AUDIT, 0, 9)
        pipe.hgetall(keys.REDIS_RESTARTS)
        replies = pipe.execute()
    rows = [row for job_id, values in zip(unique, replies[:-2], strict=True) if (row := _row(job_id, values))]
    rows = _waiting_rows(connection, rows)
    stats = stats_from_state(state)
    audit = tuple(entry for blob in replies[-2] if (entry := parse_entry(blob)) is not None)
    restarts = replies[-1]
    return Snapshot(
        at=datetime.fromtimestamp(state.at, UTC),
        stats=stats,
        rows=tuple(_place_rows(state, rows)),
        alerts=alerts(config, stats),
        audit=audit,
        redis_rtt_ms=rtt_ms,
        workers_alive=state.workers_alive,
        pools=state.pools,
        redis_restarts=int(float_or_none(restarts.get(b"count")) or 0),
        redis_restarted_at=from_ts(float_or_none(restarts.get(b"last"))),
    )
