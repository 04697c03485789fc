"""Validates a submit request into a JobSpec, and writes JobSpecs to Redis in one transaction.

``build_spec`` never touches Redis: a rejected submit changes nothing. ``enqueue_specs`` writes
every job of a batch (RQ's job hash and queue push, the farm's fields, the listing index and a
worker wake-up) in a single MULTI/EXEC, so a batch is all-or-nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError
from rq.job import JobStatus

from . import keys
from .config import FarmConfig
from .errors import FarmError, FarmUnavailableError, InvalidJobError, UnknownRendererError
from .models import Priority
from .pipelines import deps, refs
from .records import depth
from .render import Registry, RenderError, format_validation_error
from .rq_classes import DISPATCHER, FarmJob, FarmQueue
from .timeutil import utcnow

JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # always used with fullmatch
JOB_TYPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_PARAMS_DEPTH = 32
MAX_TIMEOUT = 7 * 86_400
SUBMIT_KEYS = frozenset(
    {
        "renderer",
        "params",
        "priority",
        "job_type",
        "name",
        "timeout",
        "max_retries",
        "job_id",
        "files",
        "after",
    }
)
MAX_AFTER = 100  # dependencies of one job


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    renderer: str
    params: dict[str, Any]
    priority: Priority
    job_type: str | None
    name: str | None
    timeout: int
    max_retries: int
    explicit_id: bool
    files: tuple[dict[str, Any], ...] = ()  # inputs uploaded with it: name, size, sha256
    after: tuple[str, ...] = ()  # jobs it waits for (after= and job:<id>/<name> references)
    cache: bool = False  # may reuse, and feeds, the render cache


def _int_option(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidJobError(f"{name} must be between {low} and {high}, got {value}")
    return value


def resolve_priority(config: FarmConfig, priority: Any, job_type: str | None) -> Priority:
    if priority is not None:
        try:
            return Priority(priority)
        except ValueError:
            raise InvalidJobError(f"priority must be one of high, medium, low, got {priority!r}") from None
    if job_type is not None and job_type in config.queues.job_types:
        return config.queues.job_types[job_type]
    return config.queues.default_priority


def build_spec(config: FarmConfig, registry: Registry, renderer: Any, params: Any, **options: Any) -> JobSpec:
    """Check everything about a submit without touching Redis; raise InvalidJobError.

    Whatever a caller passes, the answer is a JobSpec or a FarmError: an unexpected exception
    from a check (a renderer's validator meeting a value nobody foresaw) is reported as the
    submit's error, never passed on."""
    try:
        return _build_spec(config, registry, renderer, params, **options)
    except FarmError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, UnicodeError, LookupError) as exc:
        raise InvalidJobError(
            f"{renderer if isinstance(renderer, str) else 'submit'}: {_short(exc)}"
        ) from None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _check_name(config: FarmConfig, name: Any) -> None:
    limit = config.limits.max_name_length
    if not isinstance(name, str) or len(name) > limit:
        raise InvalidJobError(f"name must be a string of at most {limit} chars")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise InvalidJobError("name must not contain control characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJobError("name must be valid text (it holds a lone surrogate)") from None


def _plain_json_size(params: Mapping[str, Any]) -> int:
    """Bytes of ``params`` as JSON; refuses what JSON cannot carry (NaN, huge ints, deep nesting)."""
    if depth(params) > MAX_PARAMS_DEPTH:
        raise InvalidJobError(f"params are nested more than {MAX_PARAMS_DEPTH} levels deep")
    try:
        return len(json.dumps(params, allow_nan=False))
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise InvalidJobError(f"params are not plain JSON: {_short(exc)}") from None


def _build_spec(
    config: FarmConfig,
    registry: Registry,
    renderer: Any,
    params: Any,
    *,
    priority: Any = None,
    job_type: Any = None,
    name: Any = None,
    timeout: Any = None,
    max_retries: Any = None,
    job_id: Any = None,
    after: Any = None,
    cache: Any = None,
    batch_size: int | None = None,
) -> JobSpec:
    if not isinstance(renderer, str) or renderer not in registry:
        known = ", ".join(registry.names())
        raise UnknownRendererError(f"unknown renderer {renderer!r} (known: {known})")
    if not isinstance(params, Mapping):
        raise InvalidJobError(f"params must be a mapping of names to values, got {type(params).__name__}")
    if job_type is not None and (not isinstance(job_type, str) or not JOB_TYPE_RE.fullmatch(job_type)):
        raise InvalidJobError(f"job_type must be a short identifier, got {job_type!r}")
    if name is not None:
        _check_name(config, name)
    explicit_id = job_id is not None
    if explicit_id and (not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id)):
        raise InvalidJobError(
            f"job_id must be 1-128 letters, digits, '_', '-' or '.', starting alphanumeric, got {job_id!r}"
        )
    resolved_priority = resolve_priority(config, priority, job_type)
    limits = config.limits
    resolved_timeout = (
        config.renderer_timeout(renderer)
        if timeout is None
        else _int_option("timeout", timeout, 1, min(MAX_TIMEOUT, limits.max_timeout))
    )
    retries = (
        config.retry.max_retries
        if max_retries is None
        else _int_option("max_retries", max_retries, 0, limits.max_retries)
    )

    _plain_json_size(params)
    waits_on = _check_after(after, batch_size)
    plain = dict(params)
    found = refs.find(plain)
    stand_ins: dict[str, str] = {}  # a reference's text -> the relative path it stands as
    if found:
        plain = refs.rewrite(
            plain, lambda r: stand_ins.setdefault(r.text(), refs.stand_in(len(stand_ins), r))
        )
        waits_on = _with(waits_on, [_check_ref_job(r, batch_size) for r in found])
    model = registry.get(renderer)
    try:
        parsed = model.validate(plain)
    except ValidationError as exc:
        raise InvalidJobError(format_validation_error(f"{renderer} params", exc)) from None
    except RenderError as exc:
        raise InvalidJobError(f"{renderer} params: {exc.message}") from None
    clean = parsed.model_dump(mode="json", exclude_unset=True)
    if stand_ins:  # the stored params keep the references (the worker resolves them)
        clean = refs.replace_strings(clean, {path: text for text, path in stand_ins.items()})
    size = len(parsed.model_dump_json(exclude_unset=True))
    if size > config.limits.max_params_bytes:
        raise InvalidJobError(
            f"params are {size} bytes, more than the limit of {config.limits.max_params_bytes}"
        )
    return JobSpec(
        job_id=job_id if explicit_id else uuid.uuid4().hex,
        renderer=renderer,
        params=clean,
        priority=resolved_priority,
        job_type=job_type,
        name=name,
        timeout=resolved_timeout,
        max_retries=retries,
        explicit_id=explicit_id,
        after=waits_on,
        cache=_check_cache(config, cache),
    )


def _check_cache(config: FarmConfig, cache: Any) -> bool:
    if cache is None:
        return config.cache.default
    if not isinstance(cache, bool):
        raise InvalidJobError(f"cache must be true or false, got {cache!r}")
    return cache


def _with(items: tuple[str, ...], more: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*items, *more]))


def _check_after(after: Any, batch_size: int | None) -> tuple[str, ...]:
    """``after=``: job ids, or in submit_many indexes of the batch's requests (kept as ``#i``)."""
    if after is None:
        return ()
    if isinstance(after, (str, bytes)) or not isinstance(after, Sequence):
        raise InvalidJobError("after must be a list of job ids")
    if len(after) > MAX_AFTER:
        raise InvalidJobError(f"after lists {len(after)} jobs; at most {MAX_AFTER}")
    ids = []
    for item in after:
        if isinstance(item, int) and not isinstance(item, bool):
            if batch_size is None:
                raise InvalidJobError("after: a request index only works in submit_many; give job ids")
            if not 0 <= item < batch_size:
                raise InvalidJobError(f"after: index {item} is not a request of this batch")
            ids.append(f"#{item}")
        elif isinstance(item, str) and JOB_ID_RE.fullmatch(item):
            ids.append(item)
        else:
            raise InvalidJobError(f"after: {item!r} is not a job id")
    return _with((), ids)


def _check_ref_job(ref: refs.Ref, batch_size: int | None) -> str:
    if ref.index is not None and (batch_size is None or ref.index >= batch_size):
        where = "only works in submit_many" if batch_size is None else "is not a request of this batch"
        raise InvalidJobError(f"{ref.text()!r}: #{ref.index} {where}")
    return ref.job


def link_batch(specs: list[JobSpec]) -> list[JobSpec]:
    """Turn ``#i`` into the ids of the batch's jobs (in after and in job:#i/ references), and
    refuse a job that waits on itself or a cycle among the batch's jobs."""
    ids = [s.job_id for s in specs]
    index_of = {job_id: i for i, job_id in enumerate(ids)}

    def real(token: str) -> str:
        return ids[int(token[1:])] if token.startswith("#") else token

    linked = []
    for spec in specs:
        after = tuple(dict.fromkeys(real(t) for t in spec.after))
        params = refs.rewrite(spec.params, lambda r: f"{refs.PREFIX}{real(r.job)}/{r.name}")
        linked.append(dataclasses.replace(spec, after=after, params=params))
    edges = {i: [index_of[d] for d in s.after if d in index_of] for i, s in enumerate(linked)}
    state: dict[int, int] = {}  # 1: on the current path, 2: done

    def visit(i: int) -> None:
        state[i] = 1
        for j in edges[i]:
            if state.get(j) == 1:
                raise InvalidJobError(f"request {i}: after= makes a cycle (through request {j})")
            if j not in state:
                visit(j)
        state[i] = 2

    for i in edges:
        if i not in state:
            visit(i)
    return linked


def build_specs(
    config: FarmConfig, registry: Registry, requests: Sequence[Mapping[str, Any]]
) -> list[JobSpec]:
    """Validate a batch; the first bad request (by index) rejects the whole batch."""
    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
        raise InvalidJobError("submit_many takes a list of request dicts")
    specs: list[JobSpec] = []
    seen: set[str] = set()
    for index, request in enumerate(requests):
        if not isinstance(request, Mapping):
            raise InvalidJobError(f"request {index}: must be a dict, got {type(request).__name__}")
        unknown = set(request) - SUBMIT_KEYS
        if unknown:
            raise InvalidJobError(f"request {index}: unknown keys {sorted(map(repr, unknown))}")
        if "renderer" not in request:
            raise InvalidJobError(f"request {index}: 'renderer' is required")
        options = {k: v for k, v in request.items() if k not in ("renderer", "params", "files")}
        try:
            spec = build_spec(
                config,
                registry,
                request["renderer"],
                request.get("params", {}),
                batch_size=len(requests),
                **options,
            )
        except InvalidJobError as exc:
            raise type(exc)(f"request {index}: {exc}") from None
        if spec.job_id in seen:
            raise InvalidJobError(f"request {index}: job_id {spec.job_id!r} appears twice in the batch")
        seen.add(spec.job_id)
        specs.append(spec)
    return link_batch(specs)


class QueueCache:
    """One FarmQueue per priority, reused by every submit."""

    def __init__(self, connection: Redis) -> None:
        self._queues = {p: FarmQueue(p.value, connection=connection) for p in Priority}

    def __getitem__(self, priority: Priority) -> FarmQueue:
        return self._queues[priority]


def enqueue_specs(
    connection: Redis,
    queues: QueueCache,
    config: FarmConfig,
    specs: Sequence[JobSpec],
    *,
    retry_for: float = 0.0,
    submitter: str | None = None,
) -> None:
    """Write every spec in one transaction; an existing explicit job id rejects the batch.

    Idempotent: the batch carries a nonce (``farm_submit_id``), and on a connection error the
    write is tried again, with the same ids, for ``retry_for`` seconds. Before each new try, a
    batch that may have landed is looked up by its nonce. ``connection`` must not retry commands
    by itself (a blind resend of the transaction would push the ids twice). Raises
    FarmUnavailableError only when the batch is certainly not stored; when it cannot know, the
    message says so and names the id.
    """
    nonce = uuid.uuid4().hex
    give_up = time.monotonic() + retry_for
    uncertain = False
    while True:
        try:
            if uncertain and _stored(connection, specs, nonce):
                return
            _enqueue_once(connection, queues, config, specs, nonce, submitter)
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            uncertain = uncertain or "connecting to" not in str(exc)  # else nothing was sent
            if time.monotonic() >= give_up:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if uncertain:
                    first = specs[0].job_id
                    more = f" (and {len(specs) - 1} more of its batch)" if len(specs) > 1 else ""
                    raise FarmUnavailableError(
                        f"submit: Redis stopped answering ({reason}); job {first}{more} may or may not "
                        f"have been stored: check with `farm show {first}`"
                    ) from None
                raise FarmUnavailableError(
                    f"submit: Redis unavailable ({reason}); nothing was stored"
                ) from None
            time.sleep(0.1)


def _stored(connection: Redis, specs: Sequence[JobSpec], nonce: str) -> bool:
    """Did an earlier try of this batch land? (A transaction lands whole or not at all.)"""
    return connection.hget(keys.job(specs[0].job_id), keys.F_SUBMIT_ID) == nonce.encode()


def _enqueue_once(
    connection: Redis,
    queues: QueueCache,
    config: FarmConfig,
    specs: Sequence[JobSpec],
    nonce: str,
    submitter: str | None,
) -> None:
    explicit = [keys.job(s.job_id) for s in specs if s.explicit_id]
    limit = config.limits.per_submitter_per_hour
    counter = keys.submitted_by(submitter, int(time.time() // 3600)) if limit and submitter else None
    outside = deps.outside_batch(specs)
    with connection.pipeline() as pipe:
        while True:
            try:
                watched = [*explicit, *([counter] if counter else []), *map(keys.job, outside)]
                if watched:
                    pipe.watch(*watched)
                taken = [s.job_id for s in specs if s.explicit_id and pipe.exists(keys.job(s.job_id))]
                if taken:
                    raise InvalidJobError(f"job id {taken[0]!r} already exists")
                waiting = deps.pending(pipe, specs, outside)
                if counter is not None:
                    done = int(pipe.get(counter) or 0)
                    if done + len(specs) > limit:
                        raise InvalidJobError(
                            f"{submitter} submitted {done} jobs this hour; limits.per_submitter_per_hour "
                            f"is {limit}"
                        )
                pipe.multi()
                _queue_writes(pipe, queues, config, specs, nonce, submitter, waiting)
                if counter is not None:
                    pipe.incrby(counter, len(specs))
                    pipe.expire(counter, 2 * 3600)
                pipe.execute()
                return
            except WatchError:
                continue


def _queue_writes(
    pipe: Any,
    queues: QueueCache,
    config: FarmConfig,
    specs: Sequence[JobSpec],
    nonce: str = "",
    submitter: str | None = None,
    waiting: Mapping[str, tuple[str, ...]] | None = None,
) -> None:
    """One HSET per job (RQ's fields and the farm's together), then one push per queue. A job
    with unfinished dependencies (``waiting``: job id -> their ids) is written as RQ's deferred
    job instead, and pushed by the end of its last dependency (lua/after.lua)."""
    waiting = waiting or {}
    submitted = time.time()
    enqueued_at = utcnow()
    by_queue: dict[Priority, list[str]] = {}
    for spec in specs:
        queue = queues[spec.priority]
        job: FarmJob = queue.create_job(  # type: ignore[assignment]
            DISPATCHER,
            kwargs={"renderer": spec.renderer, "params": spec.params},
            timeout=spec.timeout,
            result_ttl=config.retention.finished,
            failure_ttl=config.retention.failed,
            description=spec.name or spec.renderer,
            job_id=spec.job_id,
            status=JobStatus.DEFERRED if waiting.get(spec.job_id) else JobStatus.QUEUED,
        )
        job.enqueued_at = enqueued_at
        job._dependency_ids = list(spec.after)  # RQ's dependency_ids: JobInfo.after
        fields: dict[str, Any] = {
            keys.F_RENDERER: spec.renderer,
            keys.F_PRIORITY: spec.priority.value,
            keys.F_MAX_RETRIES: spec.max_retries,
            keys.F_ATTEMPTS: 0,
            keys.F_PROGRESS: 0,
            keys.F_SUBMITTED: repr(submitted),
            keys.F_SUBMIT_ID: nonce,
        }
        if spec.job_type:
            fields[keys.F_JOB_TYPE] = spec.job_type
        if spec.name:
            fields[keys.F_NAME] = spec.name
        if submitter:
            fields[keys.F_SUBMITTER] = submitter
        if spec.files:
            fields[keys.F_FILES] = json.dumps(list(spec.files))
        if spec.cache:
            fields[keys.F_CACHE] = "1"
        job.farm_fields = fields
        job.save(pipeline=pipe)
        if spec.after:
            pipe.sadd(keys.dependencies(spec.job_id), *spec.after)
        if waiting.get(spec.job_id):
            deps.write_deferred(pipe, spec.job_id, spec.priority.value, waiting[spec.job_id])
        else:
            by_queue.setdefault(spec.priority, []).append(spec.job_id)
    for priority, ids in by_queue.items():
        pipe.sadd(keys.RQ_QUEUES_SET, keys.queue(priority.value))
        pipe.rpush(keys.queue(priority.value), *ids)
    pipe.zadd(keys.JOBS, {spec.job_id: submitted for spec in specs})
    pipe.lpush(keys.WAKE, 1)
    pipe.ltrim(keys.WAKE, 0, 0)
