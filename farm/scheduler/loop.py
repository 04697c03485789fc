"""``farm scheduler``: rq-scheduler moving due retries back to their queues, plus the sweep.

rq-scheduler (0.14) has no serializer option and would pickle; it is given the farm's JSON
``FarmJob``/``FarmQueue``. Its ``enqueue_job`` then ``ZREM`` is not atomic (a crash or a second
scheduler can enqueue a job twice), so ``FarmScheduler.enqueue_job`` moves a job with one
WATCH/MULTI that also removes it from the schedule: only one scheduler can win.
The sweep runs in this process (not as a queued job a busy farm could starve), at most once per
``sweep_interval`` farm-wide (a lock in Redis), and records the scheduler's heartbeat. Runs whose
lease expired are taken over on every tick (``sweep.take_over_expired``) — except right after the
farm was unattended (Redis down, or no scheduler): then workers get one lease and margin to renew
their leases and replay their journals before anything is taken from them.
Webhooks (``farm.notify``) are delivered by a thread of this process when any are configured.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any

from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq_scheduler import Scheduler

from .. import caps, keys, transitions
from ..cache import entries
from ..config import FarmConfig
from ..models import ErrorKind
from ..notify.deliver import Notifier
from ..records import read_job
from ..rq_classes import FarmJob, FarmQueue
from .sweep import SweepReport, server_time, sweep_once, take_over_expired

log = logging.getLogger("farm.scheduler")

RECONNECT_EVERY = 0.5  # seconds between tries while Redis is unreachable


def promote(connection: Redis, job_id: str, failed_ttl: int = 7 * 86_400) -> bool:
    """Move a due retry from the schedule to the back of its queue; False if someone else did. A
    job whose record cannot be read is failed instead (``corrupt job record: <field>``)."""
    job_key = keys.job(job_id)
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(job_key, keys.RQ_SCHEDULED)
                if pipe.zscore(keys.RQ_SCHEDULED, job_id) is None:
                    pipe.unwatch()
                    return False
                record = read_job(job_id, pipe.hgetall(job_key))
                priority = record.priority.value
                pipe.multi()
                pipe.zrem(keys.RQ_SCHEDULED, job_id)
                pipe.zrem(keys.scheduled(priority), job_id)
                pipe.zrem(keys.rq_scheduled_registry(priority), job_id)
                if not record.exists or record.rq_status != "scheduled":
                    pipe.execute()  # canceled or expired meanwhile: just drop the schedule entry
                    return False
                if record.corrupt_error:
                    transitions.write_failed(
                        pipe,
                        job_id,
                        priority,
                        failed_ttl,
                        ErrorKind.INVALID_INPUT,
                        record.corrupt_error,
                        "[]",
                    )
                    pipe.execute()
                    log.error("retry of %s refused: %s", job_id, record.corrupt_error)
                    return False
                transitions.write_requeued(pipe, job_id, priority, front=False, fields={})
                transitions.event(pipe, e="retry", job=job_id, p=priority)
                pipe.execute()
                return True
            except WatchError:
                continue


class FarmScheduler(Scheduler):
    """rq-scheduler keeps the schedule (``rq:scheduler:scheduled_jobs``), its lock and its
    registration. Moving due jobs is the farm's own: rq-scheduler would fetch each job through RQ
    (a job with one unreadable field would raise and stop the loop); ``promote`` reads the raw
    hash through ``records.read_job`` instead and moves it atomically."""

    job_class = FarmJob
    queue_class = FarmQueue
    failed_ttl = 7 * 86_400

    def enqueue_jobs(self) -> list[str]:
        now = server_time(self.connection)
        due = [m.decode("utf-8", "replace") for m in self.connection.zrangebyscore(keys.RQ_SCHEDULED, 0, now)]
        moved = [job_id for job_id in due if promote(self.connection, job_id, self.failed_ttl)]
        for job_id in moved:
            log.info("retry of %s is back in line", job_id)
        return moved

    def enqueue_job(self, job: Any) -> None:
        if promote(self.connection, job.id, self.failed_ttl):
            log.info("retry of %s is back in line", job.id)


class SchedulerLoop:
    """The main loop of ``farm scheduler``; ``stop()`` ends it (also on SIGTERM/SIGINT)."""

    def __init__(self, connection: Redis, config: FarmConfig) -> None:
        self.connection = connection
        self.config = config
        self.scheduler = FarmScheduler(connection=connection, interval=max(1, int(config.scheduler.interval)))
        self.scheduler.failed_ttl = config.retention.failed
        self._stop = threading.Event()
        self.sweeps = 0
        self.defer_until = 0.0  # server time before which no run is taken over (see module doc)

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def tick(self) -> None:
        now = server_time(self.connection)
        previous = self.connection.getset(keys.SCHEDULER_HEARTBEAT, repr(now))
        self._note_gap(now, previous)
        self.scheduler.heartbeat()
        if self.scheduler.acquire_lock():
            try:
                self.scheduler.enqueue_jobs()
            finally:
                self.scheduler.remove_lock()
        if now < self.defer_until:
            return
        lock_ttl = max(1, int(self.config.scheduler.sweep_interval * 1000))
        if self.connection.set(keys.SWEEP_LOCK, self.scheduler.name, nx=True, px=lock_ttl):
            report = sweep_once(self.connection, self.config, now)
            entries.trim(self.connection, self.config)  # the render cache within its size
            self.sweeps += 1
            if report.recovered or report.timed_out or report.freed:
                log.warning(
                    "sweep: recovered %s, timed out %s, freed %s",
                    report.recovered,
                    report.timed_out,
                    report.freed,
                )
        else:
            take_over_expired(self.connection, self.config, SweepReport(), now)

    def _note_gap(self, now: float, previous: bytes | None) -> None:
        """After the farm went unattended (no scheduler tick for longer than a lease), leases
        look expired only because nobody could renew them: wait before taking runs over."""
        try:
            gap = now - float(previous) if previous else 0.0
        except ValueError:
            gap = 0.0
        if gap > self.config.worker.lease:
            self._defer(now, f"no scheduler tick for {gap:.0f}s")

    def _defer(self, now: float, why: str) -> None:
        self.defer_until = now + self.config.worker.lease + self.config.scheduler.lease_margin
        log.warning("scheduler: %s; takeovers wait %.0fs for workers to renew", why, self.defer_until - now)

    def run(self) -> None:
        caps.seed(self.connection, self.config)
        self.scheduler.register_birth()
        log.info("farm scheduler %s started", self.scheduler.name)
        notifier = None
        if self.config.notify.webhooks:  # deliveries run beside the ticks: a slow endpoint never delays them
            notifier = Notifier(self.connection, self.config, self.scheduler.name, self._stop)
            notifier.start()
        failing = False
        try:
            while not self._stop.is_set():
                try:
                    if failing:  # Redis is back: leases could not be renewed while it was away
                        self._defer(server_time(self.connection), "Redis is back")
                    self.tick()
                    failing = False
                except RedisError as exc:
                    if not failing:
                        log.error("scheduler: Redis error (%s); retrying every %.1fs", exc, RECONNECT_EVERY)
                    failing = True
                    self._stop.wait(RECONNECT_EVERY)
                    continue
                except Exception:  # bad data must never stop retries and sweeps: log it, go on
                    log.exception("scheduler: unexpected error in a tick; carrying on")
                self._stop.wait(self.config.scheduler.interval)
        finally:
            if notifier is not None:
                notifier.join(self.config.notify.timeout + 1)
            with contextlib.suppress(RedisError):
                self.scheduler.register_death()
            log.info("farm scheduler %s stopped", self.scheduler.name)
