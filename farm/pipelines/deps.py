"""A job's dependencies in Redis: checked at submit, written as RQ's deferred job, and read back.

At submit every dependency outside the batch is WATCHed and must exist: a finished one is already
satisfied, a failed or canceled one refuses the submit (retry it first), any other makes the job
wait. A waiting job is RQ's: status ``deferred``, its ids in ``dependency_ids``, itself in each
dependency's ``rq:job:<id>:dependents`` and in ``rq:deferred:<priority>`` (RQ's
DeferredJobRegistry, so ``rq info`` and rq-dashboard show it). Nothing here releases a job: the
end of its last dependency does, in the same step (``lua/after.lua``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.client import Pipeline

from .. import keys
from ..errors import InvalidJobError, InvalidTransitionError
from ..models import JobStatus
from ..records import RQ_TO_FARM_STATUS

if TYPE_CHECKING:
    from ..submit import JobSpec

ENDED_BADLY = (JobStatus.FAILED, JobStatus.CANCELED)


def outside_batch(specs: Sequence[JobSpec]) -> list[str]:
    ids = {s.job_id for s in specs}
    return list(dict.fromkeys(d for s in specs for d in s.after if d not in ids))


def status_of(raw: bytes | None) -> JobStatus | None:
    """A stored RQ status as the farm's (None: no such job)."""
    if raw is None:
        return None
    return RQ_TO_FARM_STATUS.get(raw.decode("utf-8", "replace"), JobStatus.QUEUED)


def statuses(client: Redis | Pipeline, ids: Sequence[str]) -> dict[str, JobStatus | None]:
    """Each job's status, read one by one (``client`` may be a pipeline in WATCH mode)."""
    return {job_id: status_of(client.hget(keys.job(job_id), keys.RQ_STATUS)) for job_id in ids}


def read_statuses(connection: Redis, ids: Sequence[str]) -> dict[str, JobStatus | None]:
    """Each job's status, in one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(keys.job(job_id), keys.RQ_STATUS)
        return dict(zip(ids, map(status_of, pipe.execute()), strict=True))


def pending(pipe: Pipeline, specs: Sequence[JobSpec], outside: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The dependencies each job of the batch still waits for; refuses unknown and failed ones."""
    found = statuses(pipe, outside)
    for job_id, status in found.items():
        if status is None:
            raise InvalidJobError(f"after: no job {job_id!r}")
        if status in ENDED_BADLY:
            raise InvalidJobError(f"after: job {job_id} is {status.value}; retry it first")
    unfinished = {job_id for job_id, status in found.items() if status is not JobStatus.FINISHED}
    batch = {s.job_id for s in specs}
    return {s.job_id: tuple(d for d in s.after if d in batch or d in unfinished) for s in specs if s.after}


def write_deferred(pipe: Pipeline, job_id: str, priority: str, waits_for: Sequence[str]) -> None:
    """Register a waiting job with its dependencies (its hash is written by the caller)."""
    for dependency in waits_for:
        pipe.sadd(keys.dependents(dependency), job_id)
        pipe.persist(keys.dependents(dependency))
    pipe.zadd(keys.deferred(priority), {job_id: float("inf")})


def retry_plan(client: Redis | Pipeline, job_id: str, after: Sequence[str]) -> tuple[str, ...]:
    """A retried job's dependencies it must wait for again (empty: it can go in line now).
    Refused while one of them is failed or canceled: that one needs the retry first."""
    waiting = []
    for dependency, status in statuses(client, after).items():
        if status in ENDED_BADLY:
            assert status is not None
            raise InvalidTransitionError(
                f"job {job_id} waits for {dependency}, which is {status.value}: retry that one first"
            )
        if status is not None and status is not JobStatus.FINISHED:
            waiting.append(dependency)
    return tuple(waiting)


def write_waiting_again(
    pipe: Pipeline, job_id: str, priority: str, waits_for: Sequence[str], fields: dict[str, Any]
) -> None:
    """A retried job goes back to waiting for ``waits_for`` (instead of into its queue)."""
    job_key = keys.job(job_id)
    pipe.hset(job_key, mapping={keys.RQ_STATUS: "deferred", keys.F_PROGRESS: 0, keys.F_STAGE: "", **fields})
    pipe.hdel(
        job_key,
        keys.F_CANCEL,
        keys.F_RETRY_AT,
        keys.RQ_ENDED,
        keys.F_ERROR,
        keys.F_ERROR_KIND,
        keys.F_DEP_CANCELED,
    )
    pipe.persist(job_key)
    write_deferred(pipe, job_id, priority, waits_for)


def wait_reason(waits_for: Sequence[str], found: dict[str, JobStatus | None]) -> str | None:
    """``after <id8> (<status>)`` for the first dependency not finished; None if all are."""
    for dependency in waits_for:
        status = found.get(dependency)
        if status is not None and status is not JobStatus.FINISHED:
            return f"after {dependency[:8]} ({status.value})"
    return None
