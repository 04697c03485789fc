"""``farm worker --workers N`` or ``--workers MIN:MAX``: RQ's WorkerPool (forks workers, each with
its own Redis connection) running FarmWorkers. Workers die with their pool: each asks the kernel
for SIGTERM when the pool dies (a SIGKILLed pool leaves no orphan taking jobs).

Sizes. Each worker process has a place, 0 to MAX-1. The first MIN places are always filled (a
worker that dies there is respawned, as RQ does). The others are filled when ``scaling.Scaler``
says jobs that could start now are waiting for more workers than the farm has idle, and their
workers exit by themselves after ``worker.idle_exit`` idle seconds; a place left that way is not
refilled unless work asks for it again (RQ's pool would respawn it). A fixed pool is MIN = MAX.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from multiprocessing import get_context

import redis.exceptions
from redis import Redis
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerData, WorkerPool

from ..config import FarmConfig
from ..connection import connect_redis
from ..rq_classes import QUEUE_NAMES, FarmJob, FarmQueue
from .scaling import PoolSize, Scaler, idle_exit_seconds
from .worker import FarmWorker

log = logging.getLogger("farm.worker")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_WAIT = 30.0  # seconds a stopping pool blocks on its workers' exits before RQ's loop looks again


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``). Returns False when the parent is already gone (it died between the fork
    and this call, so the signal will never come): the caller must then exit by itself."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        except (OSError, AttributeError) as exc:
            log.warning("prctl unavailable: %s", exc)
    return os.getppid() == parent_pid


class FarmWorkerPool(WorkerPool):
    """Workers are named ``<prefix>.<n>`` (prefix: ``--name``, else host.pid), and so is the pool
    in ``farm:pool:<prefix>``."""

    def __init__(
        self,
        url: str,
        connection: Redis,
        config: FarmConfig,
        size: PoolSize | int,
        name_prefix: str | None = None,
    ):
        self.url = url
        self.size = size if isinstance(size, PoolSize) else PoolSize(size, size)
        super().__init__(
            list(QUEUE_NAMES),
            connection=connection,
            num_workers=self.size.minimum,
            worker_class=FarmWorker,
            serializer=JSONSerializer,
            job_class=FarmJob,
            queue_class=FarmQueue,
        )
        self.config = config
        self.name_prefix = name_prefix or f"{socket.gethostname()}.{os.getpid()}"
        self.scaler = Scaler(connection, config, self.name_prefix, self.size)
        self._counter = 0
        self._places: dict[str, int] = {}  # worker name -> its place
        self._gone: dict[str, float] = {}  # worker name -> when its process was found dead
        self._logging_level = "INFO"
        self._warned_at = 0.0
        self.idle_exit = idle_exit_seconds(config)

    def start(self, burst: bool = False, logging_level: str = "INFO") -> None:
        self._logging_level = logging_level
        try:
            super().start(burst=burst, logging_level=logging_level)
        finally:
            with contextlib.suppress(redis.exceptions.RedisError):
                self.scaler.forget()

    def start_workers(self, burst: bool = True, _sleep: float = 0, logging_level: str = "INFO") -> None:
        # A burst pool with MIN 0 still starts one worker: it is what looks for work, and the
        # pool ends when its last worker does.
        for place in range(max(self.size.minimum, 1 if burst else 0)):
            self.spawn(place)

    def spawn(self, place: int) -> None:
        self._counter += 1
        worker_name = f"{self.name_prefix}.{self._counter}"
        idle_exit = self.idle_exit if place >= self.size.minimum else None
        process = get_context("fork").Process(
            target=run_worker,
            args=(self.url, self.config, worker_name, self._burst, self._logging_level, os.getpid()),
            kwargs={"idle_exit": idle_exit},
            name=f"farm worker {worker_name}",
        )
        process.start()
        self.worker_dict[worker_name] = WorkerData(name=worker_name, pid=process.pid or 0, process=process)
        self._places[worker_name] = place

    def reap_workers(self) -> None:
        """RQ joins each worker for 0.1 s (MAX tenths of a second per look); polling is enough."""
        for data in list(self.worker_dict.values()):
            if not data.process.is_alive():
                self.handle_dead_worker(data)

    def handle_dead_worker(self, worker_data: WorkerData) -> None:
        place = self._places.pop(worker_data.name, None)
        self.worker_dict.pop(worker_data.name, None)
        self._gone[worker_data.name] = time.monotonic()
        code = worker_data.process.exitcode
        if self.status == self.Status.STOPPED:
            log.info("worker %s stopped", worker_data.name)
        elif self._burst and code == 0:
            log.info("worker %s: nothing left to do (burst)", worker_data.name)
        elif code == 0 and place is not None and place >= self.size.minimum:
            log.info("worker %s exited, idle for %gs (pool %s)", worker_data.name, self.idle_exit, self.size)
        else:
            log.warning("worker %s (pid %d) died, exit code %s", worker_data.name, worker_data.pid, code)

    def check_workers(self, respawn: bool = True) -> None:
        """Once a second: reap, refill the first MIN places, then start what scaling asks for.
        ``respawn`` is False in burst mode: nothing is refilled, and once every worker has quit
        the pool ends."""
        self.reap_workers()
        if self.status == self.Status.STOPPED:
            return
        if respawn:
            taken = set(self._places.values())
            for place in range(self.size.minimum):
                if place not in taken:
                    self.spawn(place)
        elif not self.worker_dict:
            return
        self.scale()

    def scale(self) -> None:
        forget_before = time.monotonic() - self.config.scheduler.worker_timeout
        self._gone = {name: at for name, at in self._gone.items() if at >= forget_before}
        try:
            decision = self.scaler.look(list(self.worker_dict), list(self._gone), burst=self._burst)
            if decision.add:
                taken = set(self._places.values())
                free = [place for place in range(self.size.maximum) if place not in taken]
                log.info(
                    "pool %s: %d job(s) could start, %d idle worker(s) elsewhere: starting %d (target %d)",
                    self.size,
                    decision.eligible,
                    decision.idle_elsewhere,
                    decision.add,
                    decision.target,
                )
                for place in free[: decision.add]:
                    self.spawn(place)
            self.scaler.publish(decision, len(self.worker_dict))
        except redis.exceptions.RedisError as exc:  # no scaling while Redis is away; MIN stays
            now = time.monotonic()
            if now - self._warned_at >= 10.0:
                self._warned_at = now
                log.warning("pool %s: cannot look at the farm: %s", self.name_prefix, exc)

    def all_workers_have_stopped(self) -> bool:
        """Asked only once the pool is stopping. Wait for the workers' exits here (RQ's loop
        sleeps a second between looks), so the pool exits right after its last worker: a
        supervisor then sees the workers stopped before ``farm redis`` stops Redis."""
        deadline = time.monotonic() + STOP_WAIT
        for data in list(self.worker_dict.values()):
            data.process.join(max(0.0, deadline - time.monotonic()))
        return bool(super().all_workers_have_stopped())


def run_worker(
    url: str,
    config: FarmConfig,
    name: str,
    burst: bool,
    logging_level: str = "INFO",
    pool_pid: int = 0,
    idle_exit: int | None = None,
) -> None:
    """Entry point of one pooled worker process. If the pool dies (even by SIGKILL) the worker
    gets SIGTERM: a warm shutdown, so its running job finishes or is requeued, and recorded.
    With ``idle_exit`` the worker exits (deregistered, exit code 0) after that many seconds
    without a job."""
    if pool_pid and not die_with_parent(pool_pid):
        return  # the pool died before this worker could ask to follow it
    try:
        connection = connect_redis(url, config)
        worker = FarmWorker(connection=connection, config=config, name=name)
    except KeyboardInterrupt:
        return  # the pool was stopped while this worker was still starting
    worker.work(burst=burst, logging_level=logging_level, max_idle_time=idle_exit)
