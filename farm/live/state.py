"""One pipelined read of the farm's live state (caps, slots, queues, workers, recent counters),
and the ``FarmStats`` that ``Farm.stats()`` and the TUI show from it.

Used by ``stats()``, by the place-in-line/ETA estimate and by the TUI snapshot. Costs a fixed
number of Redis commands (independent of how many jobs exist): counts come from list lengths and
sorted-set counts, never from loading jobs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from redis import Redis

from .. import keys
from ..caps import caps_from_hash
from ..config import FarmConfig
from ..models import PRIORITY_ORDER, Caps, FarmStats, JobStatus, PoolInfo, Priority, RendererStats
from ..records import Slot, float_or_none, number_map
from ..transitions import registry_key
from .roster import POOL_READ, pool_from_row

HOUR_BUCKETS = 60
THROUGHPUT_MINUTES = 30


@dataclass(frozen=True)
class FarmState:
    at: float
    caps: Caps
    slots: tuple[Slot, ...]
    paused: frozenset[str]
    queue_lengths: dict[str, int]
    held: dict[str, dict[str, int]]  # renderer -> priority -> count
    scheduled: dict[str, int]
    ended: dict[str, dict[str, int]]  # finished/failed/canceled -> priority -> count (unexpired)
    workers_alive: tuple[str, ...]
    scheduler_heartbeat: float | None
    buckets: tuple[dict[str, float], ...]  # per-minute counters, newest first
    deferred: dict[str, int] = field(default_factory=dict)  # waiting on other jobs (after=), by priority
    pools: tuple[PoolInfo, ...] = ()  # worker pools reporting now (farm worker --workers N or MIN:MAX)

    @property
    def used_by_renderer(self) -> Counter[str]:
        return Counter(slot.renderer for slot in self.slots)

    @property
    def used_total(self) -> int:
        return len(self.slots)

    def queued(self, priority: str) -> int:
        return self.queue_lengths.get(priority, 0) + sum(
            bands.get(priority, 0) for bands in self.held.values()
        )

    def counts(self) -> dict[JobStatus, dict[Priority, int]]:
        running = Counter(slot.priority for slot in self.slots)
        table: dict[JobStatus, dict[Priority, int]] = {}
        for status in JobStatus:
            row = {}
            for p in PRIORITY_ORDER:
                if status is JobStatus.QUEUED:
                    row[p] = self.queued(p.value) + self.deferred.get(p.value, 0)
                elif status is JobStatus.SCHEDULED:
                    row[p] = self.scheduled.get(p.value, 0)
                elif status is JobStatus.RUNNING:
                    row[p] = running.get(p.value, 0)
                else:
                    row[p] = self.ended[status.value].get(p.value, 0)
            table[status] = row
        return table

    def scheduler_age(self) -> float | None:
        return None if self.scheduler_heartbeat is None else max(0.0, self.at - self.scheduler_heartbeat)

    def bucket_sum(self, name: str, minutes: int = HOUR_BUCKETS) -> float:
        return sum(bucket.get(name, 0.0) for bucket in self.buckets[:minutes])

    def average(self, kind: str, renderer: str | None = None) -> float | None:
        """Average wait/run (seconds) over the last hour, for one renderer or all."""
        total = count = 0.0
        for bucket in self.buckets:
            for name, value in bucket.items():
                if renderer is None and name.startswith(f"{kind}_sum:") or name == f"{kind}_sum:{renderer}":
                    total += value
                    count += bucket.get(name.replace("_sum:", "_n:"), 0.0)
        return total / count if count else None


def read_state(connection: Redis, config: FarmConfig, now: float | None = None) -> FarmState:
    if now is None:
        seconds, micros = connection.time()  # the clock heartbeats and slot times are written with
        now = seconds + micros / 1_000_000
    minute = int(now // 60)
    with connection.pipeline(transaction=False) as pipe:
        pipe.smembers(keys.HELD_RENDERERS)
        pipe.smembers(keys.POOLS)
        held_raw, pools_raw = pipe.execute()
    held_renderers = sorted(m.decode("utf-8", "replace") for m in held_raw)
    pool_names = sorted(m.decode("utf-8", "replace") for m in pools_raw)
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.CAPS)
        pipe.hgetall(keys.SLOTS)
        pipe.smembers(keys.PAUSED)
        for p in PRIORITY_ORDER:
            pipe.llen(keys.queue(p.value))
            pipe.zcard(keys.deferred(p.value))
            pipe.zcard(keys.scheduled(p.value))
            for registry in ("finished", "failed", "canceled"):
                pipe.zcount(registry_key(registry, p.value), now, "+inf")
        for renderer in held_renderers:
            for rank, _p in enumerate(PRIORITY_ORDER, start=1):
                pipe.zcount(keys.held(renderer), rank * keys.HELD_BAND, (rank + 1) * keys.HELD_BAND - 1)
        pipe.zrangebyscore(keys.HEARTBEATS, now - config.scheduler.worker_timeout, "+inf")
        pipe.get(keys.SCHEDULER_HEARTBEAT)
        for offset in range(HOUR_BUCKETS):
            pipe.hgetall(keys.stats_bucket(minute - offset))
        for name in pool_names:
            pipe.hmget(keys.pool(name), POOL_READ)
        replies = iter(pipe.execute())

    caps_raw, slots_raw, paused_raw = next(replies), next(replies), next(replies)
    queue_lengths: dict[str, int] = {}
    deferred: dict[str, int] = {}
    scheduled: dict[str, int] = {}
    ended: dict[str, dict[str, int]] = {"finished": {}, "failed": {}, "canceled": {}}
    for p in PRIORITY_ORDER:
        queue_lengths[p.value] = next(replies)
        deferred[p.value] = next(replies)
        scheduled[p.value] = next(replies)
        for registry in ("finished", "failed", "canceled"):
            ended[registry][p.value] = next(replies)
    held = {r: {p.value: next(replies) for p in PRIORITY_ORDER} for r in held_renderers}
    workers_alive = tuple(sorted(w.decode("utf-8", "replace") for w in next(replies)))
    beat = next(replies)
    buckets = tuple(number_map(next(replies)) for _ in range(HOUR_BUCKETS))
    pools = tuple(pool for name in pool_names if (pool := pool_from_row(name, next(replies))))
    # What bounds concurrency: the processes alive, and those autoscaling pools may still start.
    room = sum(max(0, pool.maximum - pool.current) for pool in pools)

    slots = sorted(
        (Slot.parse(job_id, value) for job_id, value in slots_raw.items()), key=lambda s: s.started
    )
    return FarmState(
        at=now,
        caps=caps_from_hash(caps_raw, config, processes=len(workers_alive) + room),
        slots=tuple(slots),
        paused=frozenset(p.decode("utf-8", "replace") for p in paused_raw),
        queue_lengths=queue_lengths,
        held=held,
        scheduled=scheduled,
        ended=ended,
        workers_alive=workers_alive,
        scheduler_heartbeat=float_or_none(beat),
        buckets=buckets,
        deferred=deferred,
        pools=pools,
    )


def stats_from_state(state: FarmState) -> FarmStats:
    used = state.used_by_renderer
    names = set(used) | set(state.caps.effective_renderers)
    for bucket in state.buckets:
        names.update(k.split(":", 1)[1] for k in bucket if ":" in k)
    renderers = {
        name: RendererStats(
            running=used.get(name, 0),
            cap=state.caps.effective_renderers.get(name),
            avg_wait=state.average("wait", name),
            avg_run=state.average("run", name),
            finished_last_hour=int(state.bucket_sum(f"finished:{name}")),
            failed_last_hour=int(state.bucket_sum(f"failed:{name}")),
        )
        for name in sorted(names)
    }
    busy = {slot.worker for slot in state.slots}
    return FarmStats(
        counts=state.counts(),
        running=state.used_total,
        running_by_renderer=dict(used),
        caps=state.caps,
        workers=len(state.workers_alive),
        workers_busy=len(busy & set(state.workers_alive)),
        scheduler_alive=(age := state.scheduler_age()) is not None and age < 15,
        scheduler_heartbeat_age=state.scheduler_age(),
        finished_last_hour=int(state.bucket_sum("finished")),
        failed_last_hour=int(state.bucket_sum("failed")),
        throughput_per_min=tuple(
            int(b.get("finished", 0)) for b in reversed(state.buckets[:THROUGHPUT_MINUTES])
        ),
        avg_wait=state.average("wait"),
        renderers=renderers,
        paused=tuple(p for p in Priority if p.value in state.paused),
    )
