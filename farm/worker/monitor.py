"""The worker's side of a running work horse: arm its lease, watch it, kill it, end its run.

While a horse renders, its worker waits on a pidfd and, at least every ``cancel_poll`` seconds,
checks what may require killing it: the job's timeout, a cancel, a shutdown past its grace, a
lease the horse failed to renew (the horse is stopped, or Redis is away), or a run taken over
elsewhere. It then SIGKILLs the horse's whole process group (the horse and every subprocess it
started) and records the ending itself — through the local journal when Redis is away. A run the
horse is ending itself (the lease cell says ENDING) is left alone, and not reported as a takeover.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.exceptions
from redis.client import Pipeline
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.utils import now as rq_now

from .. import endings, keys
from ..models import ErrorKind
from . import exchange, horse, journal, lease, rendering

if TYPE_CHECKING:
    from .worker import FarmWorker

log = logging.getLogger("farm.worker")

TIMEOUT_BACKSTOP = 5.0  # the horse kills itself this long after its timeout if nobody else did


def arm_lease(worker: FarmWorker, job: Job, run: endings.Run) -> None:
    """The lease dispatch.lua granted counts from when the dispatch was sent; renew it here if
    warming the renderer took a while, then hand the deadline to the horse through the cell."""
    seconds = worker.config.worker.lease
    sent = worker._dispatched_at
    if time.monotonic() - sent > seconds / 4:
        sent = time.monotonic()
        if not lease.renew(worker.connection, run.job_id, run.token, seconds):
            sent = -seconds  # taken over already: the horse starts with a dead lease and dies
    timeout = float(job.timeout or worker.config.renderer_timeout(run.renderer))
    hard = time.monotonic() + timeout + TIMEOUT_BACKSTOP
    worker._lease.arm(sent + seconds - rendering.LEASE_SAFETY, hard)


def watch(worker: FarmWorker, job: Job, queue: Queue, execution: Execution) -> None:
    run = worker._run
    assert run is not None
    pid = worker._horse_pid
    timeout = float(job.timeout or worker.config.renderer_timeout(run.renderer))
    deadline = time.monotonic() + timeout
    check = horse_check(worker, job, execution, run.token)
    reason, status = horse.watch(pid, deadline, worker.config.worker.cancel_poll, check)
    # Kill the horse's whole process group now, whatever happened: on timeout/cancel that is the
    # point; after an exit it takes down any subprocess the horse left behind. The horse is not
    # reaped yet, so its pid (the group id) cannot have been reused.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if status is None:
        status = horse.reap(pid)
    ended_by_horse = worker._lease.state == lease.ENDING and status == 0
    worker._lease.idle()
    worker.executions.pop(execution.id, None)
    worker._horse_pid = 0
    stopped = worker._stopped_job_id == job.id
    worker._stopped_job_id = None
    if not ended_by_horse:
        exchange.discard(worker.config, rendering.place(), run.job_id, run.token)  # a killed attempt's files
    try:
        end_run(worker, run, reason, status, stopped, timeout, worker._bookkeeping(job, execution, ok=False))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.error("worker %s: could not record the end of %s: %s", worker.name, job.id, exc)
        journal_end(worker, run, reason, status, stopped, timeout)
    worker._run = None


def decide_ending(
    worker: FarmWorker, run: endings.Run, reason: str | None, status: int, stopped: bool, timeout: float
) -> tuple[str, ErrorKind | None, str] | None:
    """What the worker records when it (not the horse) ends a run: (outcome, kind, message)."""
    if reason == "superseded":
        return None
    if reason == "timeout":
        return "failed", ErrorKind.TIMEOUT, f"timed out after {timeout:g}s; its process tree was killed"
    if reason == "lease":
        return (
            "failed",
            ErrorKind.WORKER_LOST,
            "its lease could not be renewed in time (Redis unreachable, or the worker or horse "
            "stopped); its process tree was killed",
        )
    if reason == "cancel" or (stopped and status != 0):
        return "canceled", ErrorKind.CANCELED, "canceled while running; process tree killed"
    if reason == "shutdown":
        return "requeued", None, ""
    if status != 0:
        return (
            "failed",
            ErrorKind.WORKER_LOST,
            f"work horse died unexpectedly ({horse.describe_exit(status)})",
        )
    return None


def end_run(
    worker: FarmWorker,
    run: endings.Run,
    reason: str | None,
    status: int,
    stopped: bool,
    timeout: float,
    bookkeeping: Callable[[Pipeline], None],
) -> None:
    """The worker's side of ending a run (the horse ends it itself when it exits normally)."""
    if reason == "superseded":
        log.warning(
            "worker %s: %s was taken over (its run was ended elsewhere); horse killed",
            worker.name,
            run.job_id,
        )
        return
    ending = decide_ending(worker, run, reason, status, stopped, timeout)
    if ending is None:
        return
    outcome, kind, message = ending
    if reason == "lease":
        log.warning("worker %s: %s %s", worker.name, run.job_id, message)
    if outcome == "failed":
        assert kind is not None
        endings.fail(worker.connection, worker.config, run, kind, message, bookkeeping)
    elif outcome == "canceled":
        endings.cancel(worker.connection, worker.config, run, message, bookkeeping)
    else:
        endings.requeue(worker.connection, worker.config, run, bookkeeping)


def journal_end(
    worker: FarmWorker, run: endings.Run, reason: str | None, status: int, stopped: bool, timeout: float
) -> None:
    ending = decide_ending(worker, run, reason, status, stopped, timeout)
    if ending is not None:
        outcome, kind, message = ending
        journal.record(worker.config, journal.Entry(run, outcome, kind=kind, error=message))


def horse_check(
    worker: FarmWorker, job: Job, execution: Execution, token: str
) -> Callable[[float], str | None]:
    """What ``horse.watch`` asks while the horse runs: must it be killed, and why? Besides
    cancels and shutdowns: if the run lost its lease (the horse could not renew it: it is
    stopped, or Redis is unreachable) or no longer owns its slot (taken over), the horse must
    stop at once. A run the horse itself is ending (the lease cell says ENDING) is left alone."""
    beat_every = worker.config.worker.heartbeat_interval
    next_beat = time.monotonic() + beat_every

    def check(now: float) -> str | None:
        nonlocal next_beat
        if worker._stopped_job_id == job.id:
            return "cancel"
        if worker._force_requeue:
            return "shutdown"
        if worker._lease.expired(now):
            return "lease"
        if worker._stop_requested and worker._shutdown_requested_date is not None:
            waited = (rq_now() - worker._shutdown_requested_date).total_seconds()
            if waited >= worker.config.worker.shutdown_grace:
                return "shutdown"
        try:
            with worker.connection.pipeline(transaction=False) as pipe:
                pipe.hget(job.key, keys.F_CANCEL)
                pipe.get(keys.owner(job.id))
                cancel, owner = pipe.execute()
            if (
                owner is None or owner.decode("utf-8", "replace") != token
            ) and worker._lease.state == lease.RENDERING:
                return "superseded"
            if cancel:
                return "cancel"
            if now >= next_beat:
                next_beat = now + beat_every
                worker.maintain_heartbeats(job, execution)
                worker.farm_heartbeat(force=True)
        except redis.exceptions.RedisError as exc:
            worker._warn(f"worker {worker.name}: Redis error while monitoring {job.id}: {exc}")
        return None

    return check
