"""How a job's run ends, written atomically: the fenced claim and the writes for each outcome.

Whoever ends a run (the work horse on success or failure, the worker when it kills the horse for
a cancel or timeout, the sweep when the worker died) first *claims* the run: a WATCH on
``farm:owner:<job id>`` holding the dispatch token. Only the claimer whose token still matches
commits, in the same MULTI/EXEC, the slot release and the outcome. So a run ends exactly once,
and a late horse can never overwrite what the sweep decided.

Key formats of RQ's registries are RQ's own (``rq:finished:<queue>`` scored by expiry time);
``tests/test_api_surface.py`` checks them against RQ.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.results import Result
from rq.serializers import JSONSerializer

from . import keys
from .models import PRIORITY_ORDER, Attempt, ErrorKind, JobStatus, Priority
from .scripts import queue_ended, scripts_for
from .timeutil import rq_time

MAX_ERROR_CHARS = 4000
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)  # seconds: /metrics' histogram


def registry_key(kind: str, priority: str) -> str:
    """RQ's registry key: kind is finished, failed, canceled or wip."""
    return f"rq:{kind}:{priority}"


def claim(
    connection: Redis,
    job_id: str,
    token: str | None,
    writes: Callable[[Pipeline], None],
    renderer: str = "?",
    outcome: str = "ended",
) -> bool:
    """Commit ``writes`` plus the slot release iff the run holding the slot has ``token``.

    ``token=None`` claims whatever run holds the slot. Returns False when the slot is not (or no
    longer) held by that run: someone else ended it first. Idempotent: when a reply is lost and
    the claim is sent again, the second call finds the end recorded by this token and says True.
    """

    def with_release(pipe: Pipeline) -> None:
        release_slot(pipe, job_id, renderer, outcome)
        writes(pipe)

    if fenced(connection, job_id, token, with_release, end=True):
        return True
    return bool(token) and connection.hget(keys.job(job_id), keys.F_ENDED_BY) == token.encode()  # type: ignore[union-attr]


def fenced(
    connection: Redis,
    job_id: str,
    token: str | None,
    writes: Callable[[Pipeline], None],
    pipe: Pipeline | None = None,
    *,
    end: bool = False,
) -> Any:
    """Apply ``writes`` only while the run holding the job's slot has ``token`` (one round trip:
    the writes are queued on an unexecuted pipeline and sent to ``lua/fenced.lua``). With
    ``pipe``, the call is queued there and its reply (1 applied, 0 not) comes with ``execute()``.
    ``end``: these writes end the run (the job hash records which token ended it)."""
    recorder = connection.pipeline(transaction=False)
    writes(recorder)
    commands = [[_arg(a) for a in args] for args, _options in recorder.command_stack]
    recorder.reset()
    return scripts_for(connection).fenced(job_id, token, commands, end=end, client=pipe)


def _arg(value: Any) -> str:
    """A command argument as text Redis' JSON decoder accepts (no lone surrogates)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        return repr(value)
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def wip_cleanup(connection: Redis, job_id: str, priority: str) -> Callable[[Pipeline], None]:
    """Writes removing the job's executions from RQ's started registry (it stays tidy, and RQ's own
    cleanup never acts on a run the farm has already ended)."""
    key = registry_key("wip", priority)
    members = [
        m for m in connection.zrange(key, 0, -1) if m.decode("utf-8", "replace").startswith(f"{job_id}:")
    ]

    def writes(pipe: Pipeline) -> None:
        if members:
            pipe.zrem(key, *members)

    return writes


def release_slot(pipe: Pipeline, job_id: str, renderer: str, outcome: str) -> None:
    pipe.delete(keys.owner(job_id))
    pipe.hdel(keys.SLOTS, job_id)
    pipe.zrem(keys.LEASES, job_id)
    event(pipe, e="stop", job=job_id, r=renderer, o=outcome)
    wake(pipe)


def event(pipe: Pipeline | Redis, **fields: str) -> None:
    """Append to farm:events, the ordered record of slot starts/stops, cap changes, retries and
    jobs' ends (``e=end``, ``s=finished|failed|canceled``: what webhooks are made from)."""
    pipe.xadd(keys.EVENTS, fields, maxlen=keys.EVENTS_MAXLEN, approximate=True)


def wake(pipe: Pipeline | Redis) -> None:
    """Leave one wake-up token for an idle worker (they chain further wake-ups themselves)."""
    pipe.lpush(keys.WAKE, 1)
    pipe.ltrim(keys.WAKE, 0, 0)


def history_json(previous: Sequence[Attempt], attempt: Attempt | None) -> str:
    items = [a.model_dump(mode="json") for a in previous]
    if attempt is not None:
        items.append(attempt.model_dump(mode="json"))
    return json.dumps(items[-50:])


def trim_error(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 15] + "... (truncated)"


def _terminal(
    pipe: Pipeline, job_id: str, priority: str, status: str, registry: str, ttl: int, fields: dict[str, Any]
) -> None:
    job_key = keys.job(job_id)
    pipe.hset(job_key, mapping={"status": status, "ended_at": rq_time(), **fields})
    pipe.hdel(job_key, keys.F_CANCEL, keys.F_RETRY_AT)
    pipe.zadd(registry_key(registry, priority), {job_id: math.ceil(time.time()) + ttl})
    pipe.expire(job_key, ttl)
    pipe.expire(keys.log(job_id), ttl)
    pipe.expire(keys.dependencies(job_id), ttl)


class _ResultOf:
    """What RQ's ``Result.create`` reads of a job: its id, connection and serializer."""

    serializer = JSONSerializer

    def __init__(self, job_id: str, pipe: Pipeline) -> None:
        self.id = job_id
        self.connection = pipe


def rq_result(pipe: Pipeline, job_id: str, ttl: int, *, value: Any = None, error: str | None = None) -> None:
    """RQ's own record of how the job ended (``rq:results:<id>``), so ``Job.return_value()``,
    ``Job.exc_info``, ``rq info`` and rq-dashboard see the farm's results and errors."""
    kind = Result.Type.SUCCESSFUL if error is None else Result.Type.FAILED
    Result.create(_ResultOf(job_id, pipe), kind, ttl, return_value=value, exc_string=error, pipeline=pipe)


def write_finished(
    pipe: Pipeline, job_id: str, priority: str, ttl: int, result: dict[str, Any], history: str
) -> None:
    _terminal(
        pipe,
        job_id,
        priority,
        "finished",
        "finished",
        ttl,
        {
            keys.F_PROGRESS: 100,
            keys.F_STAGE: "done",
            keys.F_RESULT: json.dumps(result),
            keys.F_HISTORY: history,
        },
    )
    pipe.hdel(keys.job(job_id), keys.F_ERROR, keys.F_ERROR_KIND)
    rq_result(pipe, job_id, ttl, value=result)
    event(pipe, e="end", job=job_id, s="finished")
    _settle_dependents(pipe, job_id)


def write_failed(
    pipe: Pipeline, job_id: str, priority: str, ttl: int, kind: ErrorKind, error: str, history: str
) -> None:
    _terminal(
        pipe,
        job_id,
        priority,
        "failed",
        "failed",
        ttl,
        {
            keys.F_ERROR_KIND: kind.value,
            keys.F_ERROR: trim_error(error),
            keys.F_HISTORY: history,
        },
    )
    rq_result(pipe, job_id, ttl, error=f"{kind.value}: {trim_error(error)}")
    event(pipe, e="end", job=job_id, s="failed")
    _settle_dependents(pipe, job_id)


def write_canceled(
    pipe: Pipeline, job_id: str, priority: str, ttl: int, message: str, history: str | None = None
) -> None:
    fields: dict[str, Any] = {keys.F_ERROR_KIND: ErrorKind.CANCELED.value, keys.F_ERROR: message}
    if history is not None:
        fields[keys.F_HISTORY] = history
    _terminal(pipe, job_id, priority, "canceled", "canceled", ttl, fields)
    event(pipe, e="end", job=job_id, s="canceled")
    _settle_dependents(pipe, job_id)


def _settle_dependents(pipe: Pipeline, job_id: str) -> None:
    """The jobs waiting on this one (after=) are released or canceled with its end, atomically:
    in a MULTI by ended.lua, queued here; in a fenced end (its writes recorded on a
    non-transactional pipeline and replayed by fenced.lua) by fenced.lua itself."""
    if pipe.transaction:
        queue_ended(pipe, job_id)


def write_scheduled(
    pipe: Pipeline, job_id: str, priority: str, retry_at: float, kind: ErrorKind, error: str, history: str
) -> None:
    job_key = keys.job(job_id)
    pipe.hset(
        job_key,
        mapping={
            "status": "scheduled",
            "ended_at": rq_time(),
            keys.F_RETRY_AT: repr(retry_at),
            keys.F_ERROR_KIND: kind.value,
            keys.F_ERROR: trim_error(error),
            keys.F_HISTORY: history,
            keys.F_STAGE: f"retry after {kind.value}",
        },
    )
    pipe.persist(job_key)
    # rq-scheduler keeps whole seconds; round up so the retry never runs early.
    pipe.zadd(keys.RQ_SCHEDULED, {job_id: math.ceil(retry_at)})
    # Mirrored in RQ's ScheduledJobRegistry so `rq info` and rq-dashboard show waiting retries
    # (farm workers run no RQ scheduler; rq-scheduler and the farm's loop move the job).
    pipe.zadd(keys.rq_scheduled_registry(priority), {job_id: math.ceil(retry_at)})
    pipe.zadd(keys.scheduled(priority), {job_id: retry_at})


def write_requeued(
    pipe: Pipeline,
    job_id: str,
    priority: str,
    *,
    front: bool,
    fields: dict[str, Any],
    renderer: str | None = None,
    line: int | None = None,
) -> None:
    """Back in line now. ``front`` with the job's ``line`` (its place when it first left the queue):
    into its renderer's held set at that place, so it starts before every job that reached the
    head after it (dispatch.lua serves held jobs of a priority before the queue). ``front`` alone:
    the queue's head. Otherwise the back of the queue."""
    job_key = keys.job(job_id)
    pipe.hset(
        job_key,
        mapping={
            "status": "queued",
            "enqueued_at": rq_time(),
            keys.F_PROGRESS: 0,
            keys.F_STAGE: "",
            **fields,
        },
    )
    pipe.hdel(job_key, keys.F_CANCEL, keys.F_RETRY_AT, "ended_at")
    pipe.persist(job_key)
    pipe.sadd(keys.RQ_QUEUES_SET, keys.queue(priority))
    if front and line is not None and renderer:
        pipe.zadd(keys.held(renderer), {job_id: held_score(priority, line)})
        pipe.sadd(keys.HELD_RENDERERS, renderer)
    elif front:
        pipe.lpush(keys.queue(priority), job_id)
    else:
        pipe.rpush(keys.queue(priority), job_id)
    wake(pipe)


def held_score(priority: str, line: int) -> float:
    """A held job's score: its priority's band, then its place in line (as in dispatch.lua)."""
    rank = PRIORITY_ORDER.index(Priority(priority)) + 1 if priority in Priority._value2member_map_ else 2
    return rank * keys.HELD_BAND + line


def remove_from_waiting(pipe: Pipeline, job_id: str, priority: str, renderer: str) -> None:
    """Take a job out of every place a waiting job can be (queue, held set, retry schedule, and
    RQ's deferred registry of jobs waiting on others)."""
    pipe.lrem(keys.queue(priority), 0, job_id)
    pipe.zrem(keys.deferred(priority), job_id)
    pipe.zrem(keys.held(renderer), job_id)
    pipe.zrem(keys.RQ_SCHEDULED, job_id)
    pipe.zrem(keys.scheduled(priority), job_id)
    pipe.zrem(keys.rq_scheduled_registry(priority), job_id)


def remove_from_ended(pipe: Pipeline, job_id: str, priority: str) -> None:
    for registry in ("failed", "canceled", "finished"):
        pipe.zrem(registry_key(registry, priority), job_id)


def count_outcome(
    pipe: Pipeline, status: JobStatus, renderer: str, run_seconds: float | None, kind: ErrorKind | None = None
) -> None:
    """Per-minute counters behind stats() (finished/failed per hour, throughput, average run
    time), and the farm's lifetime counters behind /metrics (durations, failures by kind)."""
    bucket = keys.stats_bucket(int(time.time() // 60))
    pipe.hincrby(bucket, status.value, 1)
    pipe.hincrby(bucket, f"{status.value}:{renderer}", 1)
    if run_seconds is not None and status is JobStatus.FINISHED:
        pipe.hincrbyfloat(bucket, f"run_sum:{renderer}", run_seconds)
        pipe.hincrby(bucket, f"run_n:{renderer}", 1)
        le = next((f"{b:g}" for b in DURATION_BUCKETS if run_seconds <= b), "+Inf")
        pipe.hincrby(keys.METRICS, f"duration:{renderer}:{le}", 1)
        pipe.hincrbyfloat(keys.METRICS, f"duration_sum:{renderer}", run_seconds)
    if status is JobStatus.FAILED:
        pipe.hincrby(keys.METRICS, f"failures:{(kind or ErrorKind.UNKNOWN).value}", 1)
    pipe.expire(bucket, 2 * 3600)


def count_retry(pipe: Pipeline) -> None:
    """A failed run went back in line (now, or later through the schedule): /metrics counts it."""
    pipe.hincrby(keys.METRICS, "retries", 1)


def count_start(pipe: Pipeline | Redis, renderer: str, waited_seconds: float) -> None:
    bucket = keys.stats_bucket(int(time.time() // 60))
    pipe.hincrbyfloat(bucket, f"wait_sum:{renderer}", max(0.0, waited_seconds))
    pipe.hincrby(bucket, f"wait_n:{renderer}", 1)
    pipe.hincrby(bucket, "started", 1)
    pipe.expire(bucket, 2 * 3600)
