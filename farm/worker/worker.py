"""The farm worker: RQ's forking Worker with cap-aware dispatch, fenced run endings and kill-the-tree.

What is RQ's and kept: registration and heartbeats, the work loop, pub/sub commands (stop-job),
warm/cold shutdown signals, fork per job, executions and the started registry, WorkerPool.
What is overridden and why:
- ``dequeue_job_and_maintain_ttl``: RQ pops the first job of the first non-empty queue. The
  farm must respect caps without losing priority, so it calls ``lua/dispatch.lua`` (which takes
  the cap slot atomically) and sleeps on a wake-up list instead of BLPOP on the queues.
- ``perform_job`` (horse, in ``horse.run_job``): a run ends through ``endings`` (a fenced
  claim), never RQ's handlers, so a recovered run can't be finished twice; errors are classified
  into ErrorKinds.
- ``monitor_work_horse`` (worker, in ``monitor.watch``): waits on a pidfd and enforces the job
  timeout, cancels, shutdown grace and the run's lease by SIGKILLing the horse's whole process
  group (the horse and every subprocess it started), then ends the run itself.
- ``request_force_stop``: a second SIGTERM/SIGINT requeues the running job instead of leaving it
  ``started`` for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.exceptions
from redis import Redis
from redis.client import Pipeline
from rq.executions import Execution, cleanup_execution
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.suspension import is_suspended
from rq.utils import now as rq_now
from rq.worker import Worker, WorkerStatus

from .. import endings, keys, transitions
from ..config import FarmConfig
from ..models import PRIORITY_ORDER, ErrorKind
from ..records import Slot, read_job, text
from ..render import Registry
from ..rq_classes import QUEUE_NAMES, FarmJob, FarmQueue
from ..scripts import Taken, scripts_for
from ..timeutil import local_minute_of_day, rq_time
from . import exchange, horse, housekeeping, journal, lease, monitor, rendering

log = logging.getLogger("farm.worker")

HOLD_BUDGET = 500  # jobs the dispatch script may move to held sets in one call
IDLE_WAIT = 1.0  # seconds an idle worker sleeps on the wake-up list before looking again
ORPHAN_CHECK_EVERY = 5.0  # seconds between an idle worker's checks for slots it still holds
HOUSEKEEPING_EVERY = 60.0  # seconds between an idle worker's cleanups of this host's files
RECONNECT_EVERY = 0.5  # seconds between tries while Redis is unreachable ("back within 2 s")
TRACEBACK_LINES = 12


class FarmWorker(Worker):
    queue_class = FarmQueue
    job_class = FarmJob
    log_result_lifespan = False
    log_job_description = False

    def __init__(
        self,
        queues: Any = None,
        *,
        connection: Redis,
        config: FarmConfig,
        registry: Registry | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("serializer", None)
        kwargs.pop("job_class", None)
        kwargs.pop("queue_class", None)
        queues = queues or [FarmQueue(n, connection=connection) for n in QUEUE_NAMES]
        super().__init__(
            queues,
            name=name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}",
            connection=connection,
            serializer=JSONSerializer,
            job_class=FarmJob,
            queue_class=FarmQueue,
            job_monitoring_interval=max(1, int(config.worker.heartbeat_interval)),
            **kwargs,
        )
        self.config = config
        self.registry = registry or Registry.from_config(config)
        self.scripts = scripts_for(connection)
        self._slots_checked = 0.0
        self._run: endings.Run | None = None
        self._raw: dict[bytes, bytes] = {}
        self._force_requeue = False
        self._last_farm_heartbeat = 0.0
        self._suspension_checked = 0.0
        self._suspension_read = 0.0
        self._is_suspended = False
        self._lease = lease.LeaseCell()  # shared with the horses this worker forks
        self._dispatched_at = 0.0  # monotonic time the current run's dispatch was sent
        self._housekept = 0.0
        self._warned_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        self._wait_for_redis()
        super().bootstrap(*args, **kwargs)
        self.place = exchange.locate(self.config, self.connection)
        rendering.configure(self.config, self.registry, self.connection, self._lease, self.place)
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        self.farm_heartbeat(force=True)

    def _wait_for_redis(self) -> None:
        """Start only once Redis answers (a worker started during an outage waits, not crash-loops)."""
        while not self._stop_requested:
            try:
                self.connection.ping()
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                self._warn(f"worker {self.name}: waiting for Redis ({exc})")
                time.sleep(RECONNECT_EVERY)

    def _warn(self, message: str) -> None:
        """Log a repeated problem at most every 10 s."""
        now = time.monotonic()
        if now - self._warned_at >= 10.0:
            self._warned_at = now
            log.warning("%s", message)

    def _warm_renderer(self, name: str) -> None:
        """Import and build a renderer in the worker before forking, the first time it is needed:
        every later horse inherits it ready instead of importing modules and building pydantic
        models per job. Only renderers actually used are loaded (a smaller worker forks faster)."""
        try:
            self.registry.get(name)
        except Exception as exc:  # the horse reports the problem as the job's error
            log.warning("worker %s: renderer %s unavailable: %s", self.name, name, exc)

    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        """Retries go through rq-scheduler (``farm scheduler``), not RQ's built-in scheduler."""
        self.scheduler = None

    def run_maintenance_tasks(self) -> None:
        """Registry cleanup and dead-job recovery belong to the scheduler's sweep."""
        self.last_cleaned_at = rq_now()  # type: ignore[assignment]

    def register_death(self) -> None:
        with contextlib.suppress(redis.exceptions.RedisError):
            self.connection.zrem(keys.HEARTBEATS, self.name)
        super().register_death()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, in one round trip instead of three, carrying the worker's state too.
        A Redis outage must not end the worker (RQ's loop quits on any error): the dispatch loop
        waits for Redis to come back."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                super().heartbeat(timeout, pipe)
                pipe.hset(self.key, "state", self._state)
                pipe.execute()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self._warn(f"worker {self.name}: heartbeat failed: {exc}")

    def execute_job(self, job: Job, queue: Queue) -> None:
        run = self._run
        assert run is not None
        self._warm_renderer(run.renderer)
        execution = self.prepare_execution(job)
        monitor.arm_lease(self, job, run)
        self.fork_work_horse(job, queue)
        self.monitor_work_horse(job, queue, execution)
        self._state = WorkerStatus.IDLE  # written by the heartbeat RQ's work loop sends next

    def monitor_work_horse(self, job: Job, queue: Queue, execution: Execution) -> None:
        monitor.watch(self, job, queue, execution)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        return horse.run_job(self, job, queue, execution)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == self._state:
            return  # unchanged: skip the write (RQ sets IDLE both after a job and before dequeueing)
        super().set_state(state, pipeline)

    def _suspended(self) -> bool:
        """Is the farm suspended (``rq suspend``)? Read at most once a second."""
        now = time.monotonic()
        if now - self._suspension_read >= 1.0:
            self._suspension_read = now
            was, self._is_suspended = self._is_suspended, bool(is_suspended(self.connection))
            if self._is_suspended != was:
                log.warning(
                    "worker %s: %s", self.name, "suspended (rq suspend)" if self._is_suspended else "resumed"
                )
        return self._is_suspended

    def check_for_suspension(self, burst: bool) -> None:
        """RQ checks `rq suspend` before every job; once a second is plenty."""
        now = time.monotonic()
        if now - self._suspension_checked >= 1.0:
            self._suspension_checked = now
            with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                super().check_for_suspension(burst)

    def farm_heartbeat(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_farm_heartbeat < self.config.worker.heartbeat_interval:
            return
        self._last_farm_heartbeat = now
        self.scripts.heartbeat(self.name)
        if now - self._housekept >= HOUSEKEEPING_EVERY and self._run is None:
            self._housekept = now
            housekeeping.clean_host_files(self.connection, self.config)

    def _shutdown(self) -> None:
        """Warm shutdown: never raise from the signal handler (RQ raises StopRequested when idle,
        which could land between taking a job's slot and starting it). The work loop notices
        the flag within a second when idle; a running job finishes, or is requeued after
        ``shutdown_grace`` seconds."""
        self._stop_requested = True
        try:
            self.set_shutdown_requested_date()  # RQ's record of it, in Redis
        except redis.exceptions.RedisError:  # raised here, it would land in whatever code was running
            self._shutdown_requested_date = rq_now()

    def request_force_stop(self, signum: int, frame: Any) -> None:
        """Second signal: stop now, but put the running job back in line instead of losing it."""
        requested = self._shutdown_requested_date
        if requested is not None and (rq_now() - requested).total_seconds() < 1:
            return  # the pool and the terminal both sent one; RQ ignores such pairs too
        if self._run is not None:
            log.warning("worker %s: cold shutdown, requeueing the running job", self.name)
            self._force_requeue = True
            return
        raise SystemExit()

    def _waiting(self) -> int:
        """Jobs waiting for others to end (after=), in every priority."""
        with self.connection.pipeline(transaction=False) as pipe:
            for p in PRIORITY_ORDER:
                pipe.zcard(keys.deferred(p.value))
            return sum(pipe.execute())

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        super().fork_work_horse(job, queue)
        # The horse puts itself in its own process group; do it from this side too, so there is
        # no moment in which the horse still shares the worker's group.
        with contextlib.suppress(OSError):
            os.setpgid(self._horse_pid, self._horse_pid)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill the horse's process group, which is the horse's pid. RQ's version kills
        ``getpgid(horse_pid)``: the worker's own group with no horse yet (pid 0) or for a horse
        just forked, so a cancel landing as a job starts killed the worker (and a pool, all of
        it). A stop that finds no group yet is picked up by the monitor (``_stopped_job_id``,
        the cancel flag)."""
        if self._horse_pid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._horse_pid, sig)

    def teardown(self) -> None:
        self._release_my_slots()
        super().teardown()

    def _release_my_slots(self) -> None:
        """Put back in line any job whose slot this worker still holds (e.g. a dispatch whose reply
        was lost to an exit); fenced, so a job that ended normally is left alone."""
        if self.is_horse:
            return
        try:
            for job_id, value in self.connection.hgetall(keys.SLOTS).items():
                slot = Slot.parse(job_id, value)
                if slot.worker != self.name:
                    continue
                raw = self.connection.hgetall(keys.job(slot.job_id))
                if raw:
                    endings.requeue(self.connection, self.config, endings.Run.from_hash(slot.job_id, raw))
        except redis.exceptions.RedisError as exc:
            log.warning("worker %s: could not release its slots at exit: %s", self.name, exc)

    # -- dispatch ----------------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        self.set_state(WorkerStatus.IDLE)
        self.procline("Listening on " + ",".join(QUEUE_NAMES))
        idle_since = time.monotonic()
        while True:
            try:
                self.farm_heartbeat()
                if self._stop_requested:
                    return None
                if journal.pending(self.config):  # endings kept while Redis was away go first
                    journal.replay(self.connection, self.config, self.place)
                if self._suspended():  # `rq suspend`: take nothing new until `rq resume`
                    time.sleep(IDLE_WAIT)
                    continue
                sent = time.monotonic()
                outcome = self.scripts.dispatch(
                    worker=self.name,
                    token=uuid.uuid4().hex,
                    minute_of_day=local_minute_of_day(),
                    started_at=rq_time(),
                    default_total=self.config.caps.total,
                    hold_budget=HOLD_BUDGET,
                    lease=self.config.worker.lease,
                    failed_ttl=self.config.retention.failed,
                )
                if isinstance(outcome, Taken):
                    self._dispatched_at = sent
                    picked = self._job_from(outcome)
                    if picked is not None:
                        self.heartbeat()
                        return picked
                    continue
                if outcome.reason == "busy":
                    continue
                self._release_orphans()
                # burst: stop when nothing is left that could ever start (a job waiting on a
                # running one will start when it ends)
                if timeout is None and (
                    not self.connection.hlen(keys.SLOTS)
                    or (outcome.reason == "empty" and not self._waiting())
                ):
                    return None
                if max_idle_time is not None and time.monotonic() - idle_since > max_idle_time:
                    return None
                self.connection.blpop([keys.WAKE], timeout=0.2 if timeout is None else IDLE_WAIT)
                self.heartbeat()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # Short, flat retries: dispatch resumes within a second or so of Redis answering.
                self._warn(f"worker {self.name}: Redis unreachable ({exc}); retrying")
                time.sleep(RECONNECT_EVERY)
            except redis.exceptions.RedisError as exc:  # e.g. a script error: log, never crash-loop
                log.error("worker %s: dispatch failed: %s", self.name, exc)
                time.sleep(RECONNECT_EVERY)

    def _release_orphans(self) -> None:
        """While idle this worker runs nothing, so a slot still naming it is an orphan (a dispatch
        whose reply never arrived, a run whose ending could not be written): put those jobs
        back in line. Checked every few seconds of idleness."""
        now = time.monotonic()
        if now - self._slots_checked >= ORPHAN_CHECK_EVERY:
            self._slots_checked = now
            self._release_my_slots()

    def _job_from(self, taken: Taken) -> tuple[Job, Queue] | None:
        try:
            return self._read_dispatched(taken)
        except redis.exceptions.RedisError:
            raise
        except Exception:  # whatever the job holds, the worker goes on: refuse it
            log.exception("worker %s: unreadable dispatch reply", self.name)
            self._refuse(taken.job_id, taken.queue, taken.fields, "corrupt job record")
            return None

    def _read_dispatched(self, taken: Taken) -> tuple[Job, Queue] | None:
        job_id, queue_name, raw = taken.job_id, taken.queue, taken.fields
        reason = horse.refusal(raw)
        record = read_job(job_id, raw)
        if reason is None and record.corrupt:
            reason = record.corrupt_error
        job = FarmJob(job_id, connection=self.connection)
        if reason is None:
            try:
                job.restore(raw)
            except Exception as exc:  # RQ's own fields are unreadable: never let that stop the worker
                reason = f"corrupt job record: RQ fields ({type(exc).__name__})"
        if reason is not None:
            self._refuse(job_id, queue_name, raw, reason)
            return None
        self._raw = raw
        self._run = endings.Run.from_record(record)
        rendering.set_job(self._run.attempt, record.job_type, self._run.token, record.files, record.cache)
        return job, FarmQueue(
            queue_name if queue_name in QUEUE_NAMES else "medium", connection=self.connection
        )

    def _refuse(self, job_id: str, queue_name: str, raw: dict[bytes, bytes], reason: str) -> None:
        log.error("worker %s: job %s %s", self.name, job_id, reason)
        priority = queue_name if queue_name in QUEUE_NAMES else "medium"
        ttl = self.config.retention.failed

        def writes(pipe: Pipeline) -> None:
            transitions.write_failed(pipe, job_id, priority, ttl, ErrorKind.INVALID_INPUT, reason, "[]")

        token = text(raw, keys.F_TOKEN)
        renderer = text(raw, keys.F_RENDERER)
        if token and renderer:
            transitions.claim(self.connection, job_id, token, writes, renderer, "refused")
        else:
            with self.connection.pipeline() as pipe:
                writes(pipe)
                pipe.execute()

    # -- running a job (worker side) ----------------------------------------------------------

    def prepare_execution(self, job: Job) -> Execution:
        run = self._run
        with self.connection.pipeline() as pipe:
            # No worker name: RQ then leaves the execution out of the worker's own index, which
            # RQ's tools read back with the pickle serializer (rq-dashboard's workers view failed
            # on the farm's JSON jobs). The started registry still lists the execution.
            execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name="")
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            if run is not None:
                waited = time.time() - float(text(self._raw, keys.F_SUBMITTED) or time.time())
                transitions.count_start(pipe, run.renderer, waited)
            pipe.execute()
        return execution

    def _bookkeeping(self, job: Job, execution: Execution, ok: bool) -> Callable[[Pipeline], None]:
        """RQ's own records of an ended execution, committed with the run's outcome."""

        tail = rendering.log_tail_writes(job.id, rendering.closing_lines()) if self.is_horse else None

        def writes(pipe: Pipeline) -> None:
            if tail is not None:
                tail(pipe)
            cleanup_execution(self, job, pipe, execution)
            if ok:
                self.increment_successful_job_count(pipe)
            else:
                self.increment_failed_job_count(pipe)

        return writes

    # -- running a job (horse side) -----------------------------------------------------------
