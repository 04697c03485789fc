"""The sweep: takes over runs whose lease expired, frees orphaned cap slots, applies retention
and forgets dead workers. Runs in ``farm scheduler``.

A run is taken over only once its lease (``farm:leases``, see ``farm/lease.py``) expired
``scheduler.lease_margin`` seconds ago on the Redis server's clock: by then its own worker has
killed its process tree, so the job can run again without two renders at once. The taken-over run
ends ``timeout`` if it was past its timeout (its worker died or stalled before enforcing it), else
``worker_lost`` (back in line at its place). Expired leases are checked on every scheduler tick
(one sorted-set range read); the full slot table, retention and dead workers on every sweep.

Every action on a run is a fenced claim (``transitions.claim`` with the run's token), so two
sweeps, or a sweep racing a worker that is still alive, can never end one run twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import worker_registration
from rq.serializers import JSONSerializer

from .. import endings, keys, transitions
from ..config import FarmConfig
from ..models import PRIORITY_ORDER, ErrorKind
from ..records import Slot, read_job, text
from ..transitions import registry_key

log = logging.getLogger("farm.sweep")

FORGET_WORKERS_AFTER = 3600.0
PRUNE_BATCH = 1000


@dataclass
class SweepReport:
    recovered: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    expired: int = 0
    forgotten_workers: int = 0


def take_over_expired(
    connection: Redis, config: FarmConfig, report: SweepReport, now: float, *, every_slot: bool = False
) -> None:
    """End the runs whose lease expired over ``lease_margin`` ago. ``every_slot`` also looks at
    slots without a lease entry (granted ``worker.lease`` from their start)."""
    margin = config.scheduler.lease_margin
    if every_slot:
        slots = {k.decode("utf-8", "replace"): v for k, v in connection.hgetall(keys.SLOTS).items()}
        leases = {
            m.decode("utf-8", "replace"): s for m, s in connection.zrange(keys.LEASES, 0, -1, withscores=True)
        }
        candidates = []
        for job_id, value in slots.items():
            started = Slot.parse(job_id, value).started
            expiry = leases.get(job_id, started + config.worker.lease)
            if expiry + margin < now:
                candidates.append(job_id)
        candidates += [job_id for job_id in leases if job_id not in slots]
    else:
        candidates = [
            m.decode("utf-8", "replace") for m in connection.zrangebyscore(keys.LEASES, "-inf", now - margin)
        ]
        values = connection.hmget(keys.SLOTS, candidates) if candidates else []
        slots = {job_id: v for job_id, v in zip(candidates, values, strict=True) if v is not None}
    for job_id in candidates:
        if job_id not in slots:
            connection.zrem(keys.LEASES, job_id)  # a lease left without its slot
            continue
        try:
            _take_over(connection, config, report, now, job_id, slots[job_id])
        except RedisError:
            raise
        except Exception:  # one unreadable run must never stop the sweep (or the scheduler)
            log.exception("sweep: could not take over %s; leaving it for the next pass", job_id)


def _take_over(
    connection: Redis, config: FarmConfig, report: SweepReport, now: float, job_id: str, value: bytes
) -> None:
    slot = Slot.parse(job_id, value)
    renderer, worker, started, priority = slot.renderer, slot.worker, slot.started, slot.priority
    raw = connection.hgetall(keys.job(job_id))
    token = connection.get(keys.owner(job_id))
    if not raw or token is None or text(raw, "status") != "started":
        if _free_orphan(connection, job_id, token, slot, value):
            report.freed.append(job_id)
        return
    record = read_job(job_id, raw)
    run = endings.Run.from_record(record)
    if run.token != token.decode("utf-8", "replace"):
        return  # the hash and the owner disagree: a newer run is starting; leave it alone
    cleanup = transitions.wip_cleanup(connection, job_id, priority)
    timeout = float(record.timeout or config.renderer_timeout(renderer))
    if record.cancel:
        done = endings.cancel(connection, config, run, f"canceled; its worker {worker} was lost", cleanup)
    elif now - started > timeout:
        message = f"ran past its {timeout:g}s timeout and its worker {worker} stopped answering"
        done = endings.fail(connection, config, run, ErrorKind.TIMEOUT, message, cleanup) is not None
        if done:
            report.timed_out.append(job_id)
        return
    else:
        message = f"worker {worker} stopped renewing the run's lease (died, stopped or cut off)"
        done = endings.fail(connection, config, run, ErrorKind.WORKER_LOST, message, cleanup) is not None
    if done:
        log.warning("sweep: took over %s from worker %s (lease expired)", job_id, worker)
        report.recovered.append(job_id)


def _free_orphan(connection: Redis, job_id: str, token: bytes | None, slot: Slot, value: bytes) -> bool:
    """A slot whose job is gone or not running: release it — fenced on its owner when it has one,
    else only while the slot still holds the value seen (two sweeps never release it twice)."""
    if token is not None:
        return transitions.claim(
            connection,
            job_id,
            token.decode("utf-8", "replace"),
            lambda pipe: None,
            slot.renderer,
            "orphan freed",
        )
    with connection.pipeline() as pipe:
        try:
            pipe.watch(keys.SLOTS)
            if pipe.hget(keys.SLOTS, job_id) != value:
                pipe.unwatch()
                return False
            pipe.multi()
            transitions.release_slot(pipe, job_id, slot.renderer, "orphan freed")
            pipe.execute()
            return True
        except WatchError:
            return False  # the slot table changed: the next pass looks again


def apply_retention(connection: Redis, config: FarmConfig, report: SweepReport, now: float) -> None:
    oldest = now - max(config.retention.finished, config.retention.failed, config.retention.canceled) - 3600
    with connection.pipeline(transaction=False) as pipe:
        for p in PRIORITY_ORDER:
            for registry in ("finished", "failed", "canceled"):
                pipe.zremrangebyscore(registry_key(registry, p.value), 0, now)
        pipe.zremrangebyscore(keys.HEARTBEATS, 0, now - FORGET_WORKERS_AFTER)
        report.expired = sum(int(n) for n in pipe.execute())
    # The listing index forgets old ids only once their job is gone: a job waiting (paused, or
    # retried) longer than the retention must stay listed.
    old = connection.zrangebyscore(keys.JOBS, 0, oldest, start=0, num=PRUNE_BATCH)
    if old:
        with connection.pipeline(transaction=False) as pipe:
            for job_id in old:
                pipe.exists(keys.job(job_id.decode("utf-8", "replace")))
            gone = [job_id for job_id, exists in zip(old, pipe.execute(), strict=True) if not exists]
        if gone:
            connection.zrem(keys.JOBS, *gone)
            report.expired += len(gone)


def forget_dead_workers(connection: Redis, config: FarmConfig, report: SweepReport, now: float) -> None:
    """Drop RQ registrations of workers that stopped heartbeating (RQ keeps them ~8 minutes)."""
    from rq.worker import Worker

    from ..rq_classes import FarmJob, FarmQueue

    beats = {
        m.decode("utf-8", "replace"): s for m, s in connection.zrange(keys.HEARTBEATS, 0, -1, withscores=True)
    }
    for worker in Worker.all(
        connection=connection, job_class=FarmJob, queue_class=FarmQueue, serializer=JSONSerializer
    ):
        beat = beats.get(worker.name)
        born = worker.birth_date.timestamp() if worker.birth_date else 0.0
        if time.time() - born < 3 * config.scheduler.worker_timeout:
            continue  # just registered with RQ, its first farm heartbeat may not be there yet
        if beat is None or now - beat > 3 * config.scheduler.worker_timeout:
            with connection.pipeline() as pipe:
                worker_registration.unregister(worker, pipe)
                pipe.delete(worker.key)
                pipe.execute()
            report.forgotten_workers += 1


def server_time(connection: Redis) -> float:
    """The Redis server's clock: heartbeats and slot start times are written with it."""
    seconds, micros = connection.time()
    return seconds + micros / 1_000_000


def sweep_once(connection: Redis, config: FarmConfig, now: float | None = None) -> SweepReport:
    now = server_time(connection) if now is None else now
    report = SweepReport()
    take_over_expired(connection, config, report, now, every_slot=True)
    apply_retention(connection, config, report, now)
    forget_dead_workers(connection, config, report, now)
    return report
