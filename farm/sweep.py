"""The sweep: recovers runs of dead workers, ends runs stuck past their timeout, frees orphaned
cap slots, applies retention and forgets dead workers. Runs in ``farm scheduler``.

Every action on a run is a fenced claim (``outcomes.claim`` with the run's token), so two
sweeps, or a sweep racing a worker that is still alive, can never end one run twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import worker_registration
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.serializers import JSONSerializer

from . import keys, outcomes, runs
from .config import FarmConfig
from .jobinfo import text
from .models import PRIORITY_ORDER, ErrorKind
from .outcomes import registry_key

log = logging.getLogger("farm.sweep")

TIMEOUT_GRACE = 30.0  # seconds past a run's timeout before the sweep ends it (its worker should have)
FORGET_WORKERS_AFTER = 3600.0
PRUNE_BATCH = 1000


@dataclass
class SweepReport:
    recovered: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    expired: int = 0
    forgotten_workers: int = 0


def _wip_cleanup(connection: Redis, job_id: str, priority: str) -> Callable[[Pipeline], None]:
    """Writes removing the job's executions from RQ's started registry (it stays tidy, and RQ's own
    cleanup never acts on a run the sweep has already ended)."""
    key = registry_key("wip", priority)
    members = [m for m in connection.zrange(key, 0, -1) if m.decode().startswith(f"{job_id}:")]

    def writes(pipe: Pipeline) -> None:
        if members:
            pipe.zrem(key, *members)

    return writes


def sweep_runs(connection: Redis, config: FarmConfig, report: SweepReport, now: float) -> None:
    alive = {
        m.decode()
        for m in connection.zrangebyscore(keys.HEARTBEATS, now - config.scheduler.worker_timeout, "+inf")
    }
    for job_id_b, value in connection.hgetall(keys.SLOTS).items():
        job_id = job_id_b.decode()
        renderer, worker, started, priority = (value.decode().split("\t") + ["", "", "0", "medium"])[:4]
        raw = connection.hgetall(keys.job(job_id))
        token = connection.get(keys.owner(job_id))
        if not raw or token is None or text(raw, "status") != "started":
            if now - float(started or 0) > config.scheduler.worker_timeout:
                _free_orphan(connection, job_id, token, renderer)
                report.freed.append(job_id)
            continue
        run = runs.Run.from_hash(job_id, raw)
        if run.token != token.decode():
            continue  # a newer run owns it; leave it alone
        cleanup = _wip_cleanup(connection, job_id, priority)
        if worker not in alive:
            if text(raw, keys.F_CANCEL):
                done = runs.cancel(connection, config, run, f"canceled; its worker {worker} died", cleanup)
            else:
                done = (
                    runs.fail(
                        connection,
                        config,
                        run,
                        ErrorKind.WORKER_LOST,
                        f"worker {worker} died while running it",
                        cleanup,
                    )
                    is not None
                )
            if done:
                log.warning("sweep: recovered %s from dead worker %s", job_id, worker)
                report.recovered.append(job_id)
            continue
        timeout = float(text(raw, "timeout") or config.renderer_timeout(renderer))
        if now - float(started or now) > timeout + TIMEOUT_GRACE:
            with contextlib.suppress(InvalidJobOperation, NoSuchJobError, RedisError):
                send_stop_job_command(connection, job_id, serializer=JSONSerializer)
            message = f"stuck past its {timeout:g}s timeout; ended by the sweep"
            if runs.fail(connection, config, run, ErrorKind.TIMEOUT, message, cleanup) is not None:
                report.timed_out.append(job_id)


def _free_orphan(connection: Redis, job_id: str, token: bytes | None, renderer: str) -> None:
    """A slot whose job is gone or not running: release it (fenced when it has an owner)."""
    if token is not None:
        outcomes.claim(connection, job_id, token.decode(), lambda pipe: None, renderer, "orphan freed")
    else:
        with connection.pipeline() as pipe:
            outcomes.release_slot(pipe, job_id, renderer, "orphan freed")
            pipe.execute()


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
                pipe.exists(keys.job(job_id.decode()))
            gone = [job_id for job_id, exists in zip(old, pipe.execute(), strict=True) if not exists]
        if gone:
            connection.zrem(keys.JOBS, *gone)
            report.expired += len(gone)


def forget_dead_workers(connection: Redis, config: FarmConfig, report: SweepReport, now: float) -> None:
    """Drop RQ registrations of workers that stopped heartbeating (RQ keeps them ~8 minutes)."""
    from rq.worker import Worker

    from .rq_classes import FarmJob, FarmQueue

    beats = {m.decode(): s for m, s in connection.zrange(keys.HEARTBEATS, 0, -1, withscores=True)}
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
    sweep_runs(connection, config, report, now)
    apply_retention(connection, config, report, now)
    forget_dead_workers(connection, config, report, now)
    return report
