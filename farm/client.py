"""``Farm``: the teammate API (SPEC §4). Submit, inspect, cancel, retry, wait, caps, pause, workers."""

from __future__ import annotations

import builtins
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from redis import ConnectionPool, Redis
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.serializers import JSONSerializer

from . import audit, keys, policy, scripts, transitions
from .cache import entries
from .caps import apply_changes, validate_changes
from .config import FarmConfig, load_config
from .connection import connect_redis, no_retry, redact, redis_errors
from .errors import InvalidJobError, InvalidTransitionError, JobNotFoundError
from .files import jobs
from .live.listing import list_job_ids, list_prefix
from .live.placement import place_job, wait_reason
from .live.roster import list_pools, list_workers
from .live.state import FarmState, read_state, stats_from_state
from .models import (
    AuditEntry,
    CacheEntry,
    Caps,
    FarmStats,
    JobInfo,
    JobStatus,
    OutputFile,
    PoolInfo,
    Priority,
    WorkerInfo,
)
from .pipelines import deps
from .records import farm_status, info_from_hash, read_job
from .render import Registry
from .submit import JOB_ID_RE, JobSpec, QueueCache, build_spec, build_specs, enqueue_specs
from .timeutil import from_ts

CANCEL_CONFIRM_SECONDS = 3.0
MIN_PREFIX = 6  # shortest id prefix the CLI resolves


def _without_retries(connection: Redis) -> Redis:
    """A client on the same server whose commands are never resent by redis-py on a connection
    error: a resent MULTI/EXEC whose reply was lost would apply twice (an id pushed twice). The
    farm's writes retry themselves where that is safe (``enqueue_specs``)."""
    pool = connection.connection_pool
    kwargs = {**pool.connection_kwargs, "retry": no_retry()}
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


def _check_id(job_id: Any) -> str:
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise InvalidJobError(f"not a valid job id: {job_id!r}")
    return job_id


def _check_priority(priority: Any) -> Priority:
    try:
        return Priority(priority)
    except ValueError:
        raise InvalidJobError(f"priority must be one of high, medium, low, got {priority!r}") from None


class Farm:
    """A handle on one farm (one Redis). Cheap to create; safe to share within a thread."""

    def __init__(
        self,
        connection: Redis,
        config: FarmConfig | None = None,
        *,
        url: str = "",
        who: str | None = None,
        registry: Registry | None = None,
        published: policy.Published | None = None,
    ) -> None:
        self.connection = connection
        self.config = config or FarmConfig()
        self.url = url
        self.who = who or audit.default_who()
        self.policy = published  # the farm's published policy in force here (None: defaults)
        self.registry = registry or Registry.from_config(self.config)
        self._queues = QueueCache(connection)
        self._writer = _without_retries(connection)

    @classmethod
    def connect(
        cls, url: str | None = None, *, config: FarmConfig | str | Path | None = None, who: str | None = None
    ) -> Farm:
        """URL, else ``$FARM_REDIS_URL``, else the config file; FarmUnavailableError within 3 s.

        The farm's rules (job types, retries, timeouts, limits, renderer services and templates,
        input roots) come from the policy the render host published, not from a local file: a
        teammate needs only the URL."""
        cfg = config if isinstance(config, FarmConfig) else load_config(config)
        resolved = url or cfg.redis_url()
        connection = connect_redis(resolved, cfg)
        with redis_errors("connect"):
            published = policy.read(connection)
        cfg = policy.apply(cfg, published, submit_side=True)
        return cls(connection, cfg, url=resolved, who=who, published=published)

    def close(self) -> None:
        self.connection.close()
        self._writer.close()

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Farm({redact(self.url)!r})"

    @property
    def _retry_for(self) -> float:
        """How long a write keeps trying through connection errors (idempotent writes only)."""
        return self.config.redis.connect_timeout

    # -- submitting --------------------------------------------------------------------------

    def submit(
        self,
        renderer: str,
        params: Mapping[str, Any] | None = None,
        *,
        priority: Priority | str | None = None,
        job_type: str | None = None,
        name: str | None = None,
        timeout: int | None = None,
        max_retries: int | None = None,
        job_id: str | None = None,
        files: Sequence[str | os.PathLike[str]] | None = None,
        after: Sequence[str] | None = None,
        cache: bool | None = None,
    ) -> str:
        """Validate (before any Redis write) and enqueue one render; returns its job id.

        ``files`` are uploaded with the job (to ``farm serve``): a relative path keeps its relative
        name, an absolute one its base name, and relative paths in ``params`` resolve against
        them first, then against the farm's input roots. All or nothing.

        ``after``: job ids this one waits for; it stays queued (``wait_reason`` "after <id8> ...")
        until all have finished, and is canceled if one fails or is canceled. A param may name an
        earlier job's output as ``"job:<id>/<name>"`` (that job is waited for too).

        ``cache`` (default ``[cache] default``): a render identical to an earlier finished one
        (renderer, normalized params, input files' sha256, tool version) finishes at once with
        its outputs (``JobInfo.cached_from``); identical jobs running together render once."""
        planned = jobs.plan(files, self.config)
        spec = build_spec(
            self.config,
            self.registry,
            renderer,
            {} if params is None else params,
            priority=priority,
            job_type=job_type,
            name=name,
            timeout=timeout,
            max_retries=max_retries,
            job_id=job_id,
            after=after,
            cache=cache,
        )
        jobs.submit_with_files(self._writer, self.config, [spec], [planned], self._enqueue)
        return spec.job_id

    def submit_many(self, requests: Sequence[Mapping[str, Any]]) -> builtins.list[str]:
        """Bulk submit, all-or-nothing: every request is validated before one pipelined write.

        A whole pipeline in one call: a request's ``after`` may hold indexes of earlier (or later)
        requests of the batch, and its params ``"job:#<index>/<name>"``; cycles are refused."""
        specs = build_specs(self.config, self.registry, requests)
        plans = [jobs.plan(request.get("files"), self.config) for request in requests]
        if specs:
            jobs.submit_with_files(self._writer, self.config, specs, plans, self._enqueue)
        return [s.job_id for s in specs]

    def _enqueue(self, specs: builtins.list[JobSpec]) -> None:
        enqueue_specs(
            self._writer, self._queues, self.config, specs, retry_for=self._retry_for, submitter=self.who
        )

    def resolve_id(self, text: str) -> str:
        """A job id from the id itself or any unique prefix of 6 or more characters (as ``farm ls``
        shows them). An unknown id is JobNotFoundError; an ambiguous prefix InvalidJobError
        listing the matches."""
        job_id = _check_id(text)
        with redis_errors("find job"):
            if self.connection.exists(keys.job(job_id)) or len(job_id) < MIN_PREFIX:
                return job_id
            matches = list_prefix(self.connection, job_id, limit=10)
        if not matches:
            raise JobNotFoundError(f"no job {text!r}")
        if len(matches) > 1:
            raise InvalidJobError(f"{text!r} matches several jobs: {', '.join(matches)}")
        return matches[0]

    # -- files ---------------------------------------------------------------------------------

    def outputs(self, job_id: str) -> builtins.list[OutputFile]:
        """A finished job's outputs: name, size, sha256 and a signed, expiring download URL."""
        info = self.get(job_id)
        with redis_errors("outputs"):
            return jobs.outputs(self.connection, self.config, info)

    def download(self, job_id: str, dest_dir: str | os.PathLike[str]) -> builtins.list[Path]:
        """Fetch a finished job's outputs into ``dest_dir`` (streamed, resumable, checksums
        verified); returns the files' paths."""
        info = self.get(job_id)
        with redis_errors("download"):
            return jobs.download(self.connection, self.config, info, dest_dir)

    # -- reading -----------------------------------------------------------------------------

    def _raw(self, job_id: str) -> dict[bytes, bytes]:
        with redis_errors("get"):
            raw = self.connection.hgetall(keys.job(_check_id(job_id)))
        if not raw:
            raise JobNotFoundError(f"no job {job_id!r}")
        return raw

    def cache_entries(self, limit: int = 100) -> builtins.list[CacheEntry]:
        """The render cache's entries, newest first."""
        with redis_errors("cache"):
            return [
                CacheEntry(
                    key=e.key,
                    job_id=e.job_id,
                    renderer=e.renderer,
                    files=len(e.files),
                    bytes=e.bytes,
                    created_at=from_ts(e.at),
                    hits=e.hits,
                )
                for e in entries.entries(self.connection, limit)
            ]

    def clear_cache(self) -> int:
        """Forget every render cache entry (outputs stay); returns how many there were."""
        with redis_errors("cache clear"):
            count = entries.clear(self.connection)
            audit.record(self.connection, self.who, "cache clear", None, f"{count} entries")
        return count

    def dependents(self, job_id: str) -> builtins.list[str]:
        """The jobs that were submitted to wait for this one (after=), still known to Redis."""
        with redis_errors("dependents"):
            members = self.connection.smembers(keys.dependents(_check_id(job_id)))
        return sorted(m.decode("utf-8", "replace") for m in members)

    def get(self, job_id: str) -> JobInfo:
        info = info_from_hash(job_id, self._raw(job_id))
        if info.status.terminal:
            return info
        with redis_errors("get"):
            return place_job(self.connection, self._state(), info)

    def _state(self) -> FarmState:
        with redis_errors("state"):
            return read_state(self.connection, self.config)

    def list(
        self,
        *,
        status: JobStatus | str | None = None,
        priority: Priority | str | None = None,
        renderer: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[JobInfo]:
        """Newest first, one page read from Redis indexes (never every job)."""
        try:
            status_ = JobStatus(status) if status is not None else None
        except ValueError:
            raise InvalidJobError(f"unknown status {status!r}") from None
        priority_ = _check_priority(priority) if priority is not None else None
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidJobError("limit must be an integer from 1 to 1000")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidJobError("offset must be a non-negative integer")
        with redis_errors("list"):
            ids = list_job_ids(
                self.connection,
                status=status_,
                priority=priority_,
                renderer=renderer,
                limit=limit,
                offset=offset,
            )
            with self.connection.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(keys.job(job_id))
                raws = pipe.execute()
            infos = [info_from_hash(job_id, raw) for job_id, raw in zip(ids, raws, strict=True) if raw]
            if any(not i.status.terminal for i in infos):
                state = self._state()
                infos = [self._annotate(state, i) for i in infos]
        return infos

    def _annotate(self, state: FarmState, info: JobInfo) -> JobInfo:
        if info.status is JobStatus.QUEUED:
            return info.model_copy(
                update={"wait_reason": wait_reason(state, info.priority, info.renderer, None)}
            )
        if info.status in (JobStatus.SCHEDULED, JobStatus.RUNNING):
            return place_job(self.connection, state, info)
        return info

    def log_tail(self, job_id: str, lines: int = 50) -> builtins.list[str]:
        """The last lines the job's renderer logged (the full log is on the worker's disk)."""
        with redis_errors("log"):
            tail = self.connection.lrange(keys.log(_check_id(job_id)), -max(1, lines), -1)
        return [line.decode("utf-8", "replace") for line in tail]

    def wait(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Block until the job is finished, failed or canceled; TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.02
        while True:
            raw = self._raw(job_id)
            if farm_status(raw).terminal:
                return info_from_hash(job_id, raw)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"job {job_id} not done after {timeout}s (status {farm_status(raw).value})"
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.5, 0.5)

    # -- changing jobs -------------------------------------------------------------------------

    def _transition(
        self,
        action: str,
        job_id: str,
        plan: Callable[[dict[bytes, bytes], JobStatus, Pipeline], Callable[[Pipeline], None]],
    ) -> JobStatus:
        """Change a job in one MULTI/EXEC, retried if the job changed meanwhile (WATCH).

        ``plan`` sees the job's hash and status (and the watching pipeline, to watch and read more),
        raises if the change is not allowed, and returns the writes; the audit entry is committed
        with them. Returns the status it started from.
        """
        job_key = keys.job(_check_id(job_id))
        with redis_errors(action, may_have_applied=job_id), self._writer.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(job_key)
                    raw = pipe.hgetall(job_key)
                    if not raw:
                        raise JobNotFoundError(f"no job {job_id!r}")
                    status = farm_status(raw)
                    writes = plan(raw, status, pipe)
                    pipe.multi()
                    writes(pipe)
                    audit.record(pipe, self.who, action, job_id, f"was {status.value}")
                    pipe.execute()
                    return status
                except WatchError:
                    continue

    def cancel(self, job_id: str) -> JobInfo:
        """Queued/scheduled: never runs. Running: its process tree is killed (confirmed within ~2 s)."""

        def plan(raw: dict[bytes, bytes], status: JobStatus, _: Pipeline) -> Callable[[Pipeline], None]:
            if status.terminal:
                raise InvalidTransitionError(f"job {job_id} is already {status.value}")
            info = info_from_hash(job_id, raw)
            if status is JobStatus.RUNNING:
                return lambda pipe: pipe.hset(keys.job(job_id), keys.F_CANCEL, self.who)

            def writes(pipe: Pipeline) -> None:
                transitions.remove_from_waiting(pipe, job_id, info.priority.value, info.renderer)
                transitions.write_canceled(
                    pipe,
                    job_id,
                    info.priority.value,
                    self.config.retention.canceled,
                    f"canceled by {self.who} before it ran",
                )

            return writes

        if self._transition("cancel", job_id, plan) is JobStatus.RUNNING:
            # It may have ended meanwhile, or its worker died: the flag and the sweep cover those.
            with redis_errors("cancel"), contextlib.suppress(InvalidJobOperation, NoSuchJobError):
                send_stop_job_command(self.connection, job_id, serializer=JSONSerializer)
            deadline = time.monotonic() + CANCEL_CONFIRM_SECONDS
            while time.monotonic() < deadline and not farm_status(self._raw(job_id)).terminal:
                time.sleep(0.05)
        return self.get(job_id)

    def retry(self, job_id: str) -> JobInfo:
        """A failed or canceled job goes back to its queue now; its attempt history is kept."""

        def plan(
            raw: dict[bytes, bytes], status: JobStatus, watching: Pipeline
        ) -> Callable[[Pipeline], None]:
            if status not in (JobStatus.FAILED, JobStatus.CANCELED):
                raise InvalidTransitionError(
                    f"job {job_id} is {status.value}; only failed or canceled jobs can be retried"
                )
            record = read_job(job_id, raw)
            priority = record.priority.value
            attempts = record.attempts
            if record.after:
                watching.watch(*map(keys.job, record.after))
            waits_for = deps.retry_plan(watching, job_id, record.after) if record.after else ()

            def writes(pipe: Pipeline) -> None:
                transitions.remove_from_ended(pipe, job_id, priority)
                if waits_for:  # its dependencies were retried too and have not finished yet
                    deps.write_waiting_again(pipe, job_id, priority, waits_for, {keys.F_RETRY_BASE: attempts})
                else:
                    transitions.write_requeued(
                        pipe, job_id, priority, front=False, fields={keys.F_RETRY_BASE: attempts}
                    )
                scripts.queue_rewait(pipe, job_id)  # the jobs its failure canceled wait for it again

            return writes

        self._transition("retry", job_id, plan)
        return self.get(job_id)

    def retry_all_failed(self) -> builtins.list[str]:
        """Retry every failed job (the TUI's ``R``); returns the ids put back in line."""
        retried = []
        for info in self.list(status=JobStatus.FAILED, limit=1000):
            try:
                self.retry(info.id)
                retried.append(info.id)
            except (InvalidTransitionError, JobNotFoundError):
                continue
        return retried

    # -- farm-wide -----------------------------------------------------------------------------

    def caps(self) -> Caps:
        state = self._state()
        return state.caps

    def set_caps(
        self, *, total: int | None = None, renderers: Mapping[str, int | None] | None = None
    ) -> Caps:
        """Change the base caps live (windows still multiply them); in force within 1 s."""
        changes = validate_changes(total, renderers)
        if changes:
            with redis_errors("set_caps"):
                apply_changes(self.connection, changes)
                audit.record(self.connection, self.who, "caps", None, audit.describe(changes))
        return self.caps()

    def pause(self, priority: Priority | str) -> None:
        p = _check_priority(priority)
        with redis_errors("pause"), self.connection.pipeline() as pipe:
            pipe.sadd(keys.PAUSED, p.value)
            audit.record(pipe, self.who, "pause", p.value)
            pipe.execute()

    def resume(self, priority: Priority | str) -> None:
        p = _check_priority(priority)
        with redis_errors("resume"), self.connection.pipeline() as pipe:
            pipe.srem(keys.PAUSED, p.value)
            transitions.wake(pipe)
            audit.record(pipe, self.who, "resume", p.value)
            pipe.execute()

    def paused(self) -> builtins.list[Priority]:
        with redis_errors("paused"):
            members = self.connection.smembers(keys.PAUSED)
        return [p for p in Priority if p.value.encode() in members]

    def stats(self) -> FarmStats:
        return stats_from_state(self._state())

    def workers(self) -> builtins.list[WorkerInfo]:
        with redis_errors("workers"):
            return list_workers(self.connection, self.config)

    def pools(self) -> builtins.list[PoolInfo]:  # reporting now, on any box: current, target, min, max
        with redis_errors("pools"):
            return list_pools(self.connection)

    def audit_log(self, limit: int = 50) -> builtins.list[AuditEntry]:
        with redis_errors("audit"):
            return audit.read(self.connection, limit)
