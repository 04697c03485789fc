"""Every Redis key name the farm uses, spelled once.

RQ's own keys (``rq:queue:<name>``, ``rq:job:<id>``, registries) are built by RQ; the few the Lua
scripts touch directly are mirrored here and checked against RQ by a test.
Farm fields stored inside RQ's job hash are prefixed ``farm_`` so they never collide with RQ's.
"""

from __future__ import annotations

RQ_QUEUE = "rq:queue:"  # + priority name
RQ_JOB = "rq:job:"  # + job id
RQ_QUEUES_SET = "rq:queues"
RQ_SCHEDULED = "rq:scheduler:scheduled_jobs"  # rq-scheduler's zset of job id -> unix time
RQ_SCHEDULED_REGISTRY = "rq:scheduled:"  # + priority: RQ's ScheduledJobRegistry (job id -> time)
RQ_FAILED = "rq:failed:"  # + priority: RQ's failed registry (job id -> expiry)
RQ_CANCELED = "rq:canceled:"  # + priority: RQ's canceled registry (job id -> expiry)
RQ_DEFERRED = "rq:deferred:"  # + priority: RQ's DeferredJobRegistry (jobs waiting on others)
RQ_DEPENDENTS = ":dependents"  # rq:job:<id> + this: RQ's set of the jobs waiting on <id>
RQ_DEPENDENCIES = ":dependencies"  # rq:job::<id> + this: RQ's set of the jobs <id> waits on
RQ_DEPENDENCY_IDS = "dependency_ids"  # RQ's job field: JSON list of the jobs this one waits on
RQ_SUSPENDED = "rq:suspended"  # set by `rq suspend`: workers start nothing new

PREFIX = "farm:"
CAPS = PREFIX + "caps"  # hash: total, r:<renderer>, windows (fields below)
CAPS_TOTAL, CAPS_RENDERER, CAPS_WINDOWS = "total", "r:", "windows"
SLOTS = PREFIX + "slots"  # hash: job id -> "renderer\tworker\tstarted_ts\tpriority" (records.Slot)
SLOT_SEP = "\t"
OWNER = PREFIX + "owner:"  # + job id: the dispatch token of the run that owns the job's slot
DISPATCHED = PREFIX + "dispatched:"  # + dispatch token: the job it took (a resent dispatch gets it again)
LEASES = PREFIX + "leases"  # zset: job id -> its run's lease expiry (server clock), see lease.py
SCHEDULED = PREFIX + "scheduled:"  # + priority: zset of job id -> retry time (mirrors rq-scheduler's)
HELD = PREFIX + "held:"  # + renderer: zset of queued jobs held back by that renderer's cap
HELD_BAND = 10**13  # a held job's score: priority rank (1..3) * HELD_BAND + its place in line
HELD_RENDERERS = PREFIX + "held_renderers"  # set of renderers with a non-empty HELD zset
SEQ = PREFIX + "seq"  # counter giving jobs their place in line as they leave a queue (dispatch.lua)
PAUSED = PREFIX + "paused"  # set of paused priority names
WAKE = PREFIX + "wake"  # list: a token here wakes one idle worker
JOBS = PREFIX + "jobs"  # zset: every job id -> submit time (newest-first listing)
HEARTBEATS = PREFIX + "heartbeats"  # zset: worker name -> last heartbeat (unix time)
SCHEDULER_HEARTBEAT = PREFIX + "scheduler:heartbeat"  # string: unix time of the last scheduler tick
SWEEP_LOCK = PREFIX + "sweep:lock"
STATS = PREFIX + "stats:"  # + minute bucket (unix minute): hash of counters
EVENTS = PREFIX + "events"  # stream: slot starts/stops, cap changes, retries, ends (server order)
EVENTS_MAXLEN = 20_000
AUDIT = PREFIX + "audit"  # list of JSON audit entries, newest first
LOG = PREFIX + "log:"  # + job id: list, the job's log tail
SUBMITTED_BY = PREFIX + "by:"  # + who + ":" + unix hour: a submitter's submits that hour (2 h TTL)
NOTIFY_CURSOR = PREFIX + "notify:cursor"  # string: the last farm:events id turned into deliveries
NOTIFY_DUE = PREFIX + "notify:due"  # zset: delivery id -> when to try it (unix time)
NOTIFY_DELIVERY = PREFIX + "notify:d:"  # + delivery id: string, JSON {url, format, body, attempt}
NOTIFY_ALERTS = PREFIX + "notify:alerts"  # hash: alert kind -> message, while it is crossed
NOTIFY_LOG = PREFIX + "notify:log"  # list: the last deliveries tried, JSON, newest first
NOTIFY_LOCK = PREFIX + "notify:lock"  # string: the scheduler delivering (one farm-wide)
CACHE = PREFIX + "cache:"  # + key: hash of a cache entry (job, renderer, files, bytes, at, hits)
CACHE_LOCK = PREFIX + "cache:lock:"  # + key: the job rendering it now (identical jobs wait for it)
CACHE_INDEX = PREFIX + "cache:index"  # zset: cache key -> when its entry was made
DIGEST = PREFIX + "digest:"  # + host:device:inode: "size:mtime_ns:sha256" of an input file (7 days)
METRICS = PREFIX + "metrics"  # hash: lifetime counters for /metrics (durations, failures, retries)
SERVE = PREFIX + "serve"  # hash: url, store_id, at — where farm serve listens (published by it)
POLICY = PREFIX + "policy"  # hash: version, digest, config, host, at — the farm's published policy
POOLS = PREFIX + "pools"  # set of the names of worker pools that published a POOL record
POOL = PREFIX + "pool:"  # + pool name: hash of POOL_FIELDS and POOL_WHERE, renewed each second
POOL_STARTING = "starting"  # the POOL field scale.lua reserves workers in (started, not registered)
# What `farm workers` and the TUI show of a pool (models.PoolInfo, read by live/roster.py).
POOL_FIELDS = ("current", "target", "minimum", "maximum", "busy", "idle", POOL_STARTING, "eligible")
POOL_WHERE = ("host", "pid", "at")  # and where and when it ran (unix time of its last report)
REDIS_RESTARTS = PREFIX + "redis:restarts"  # hash: count, last (unix time) — `farm up` restarting Redis

# RQ's own fields of the job hash that the farm's scripts read or write.
RQ_STATUS = "status"
RQ_ORIGIN = "origin"
RQ_WORKER = "worker_name"
RQ_STARTED = "started_at"
RQ_ENDED = "ended_at"
RQ_HEARTBEAT = "last_heartbeat"

# Fields the farm keeps in RQ's job hash.
F_RENDERER = "farm_renderer"
F_PRIORITY = "farm_priority"
F_JOB_TYPE = "farm_job_type"
F_NAME = "farm_name"
F_MAX_RETRIES = "farm_max_retries"
F_ATTEMPTS = "farm_attempts"
F_HISTORY = "farm_history"
F_PROGRESS = "farm_progress"
F_STAGE = "farm_stage"
F_ERROR_KIND = "farm_error_kind"
F_ERROR = "farm_error"
F_RESULT = "farm_result"
F_TOKEN = "farm_token"
F_CANCEL = "farm_cancel"
F_RETRY_AT = "farm_retry_at"
F_RETRY_BASE = "farm_retry_base"  # attempts made before the last manual retry
F_SUBMITTED = "farm_submitted"  # unix time of the first submit (enqueued_at moves on retry)
F_SUBMIT_ID = "farm_submit_id"  # nonce of the submit call that stored the job (idempotent retries)
F_LINE = "farm_line"  # place in line, given when the job left its queue; a requeue keeps it
F_FILES = "farm_files"  # JSON list of {name, size, sha256}: inputs uploaded with the submit
F_SUBMITTER = "farm_by"  # who submitted it (Farm.connect(who=...), else user@host)
F_ENDED_BY = "farm_ended_by"  # token of the run whose end was recorded (claims are idempotent)
F_CACHE = "farm_cache"  # "1": the job may reuse (and feeds) the render cache
F_CACHED_FROM = "farm_cached_from"  # the earlier job whose outputs a cache hit reused
F_DEP_CANCELED = "farm_dep_canceled"  # the failed job whose end canceled this one (after=)


def queue(priority: str) -> str:
    return RQ_QUEUE + priority


def job(job_id: str) -> str:
    return RQ_JOB + job_id


def dependents(job_id: str) -> str:
    """RQ's set of the jobs that wait for ``job_id`` (submit's ``after=``)."""
    return RQ_JOB + job_id + RQ_DEPENDENTS


def dependencies(job_id: str) -> str:
    """RQ's set of the jobs ``job_id`` waits for (``Job.dependency_ids`` reads it). RQ 3.0 spells
    it with a double colon (``rq:job::<id>:dependencies``); a test keeps this in step with RQ."""
    return RQ_JOB + ":" + job_id + RQ_DEPENDENCIES


def deferred(priority: str) -> str:
    return RQ_DEFERRED + priority


def owner(job_id: str) -> str:
    return OWNER + job_id


def rq_scheduled_registry(priority: str) -> str:
    """RQ's ScheduledJobRegistry of a queue (a mirror of the farm's retry schedule)."""
    return f"{RQ_SCHEDULED_REGISTRY}{priority}"


def scheduled(priority: str) -> str:
    return SCHEDULED + priority


def pool(name: str) -> str:
    """A worker pool's published counts (farm worker --workers MIN:MAX)."""
    return POOL + name


def held(renderer: str) -> str:
    return HELD + renderer


def log(job_id: str) -> str:
    return LOG + job_id


def submitted_by(who: str, hour: int) -> str:
    """Counter of one submitter's submits in one hour (limits.per_submitter_per_hour)."""
    return f"{SUBMITTED_BY}{who}:{hour}"


def stats_bucket(minute: int) -> str:
    return f"{STATS}{minute}"
