"""``farm worker --workers N``: RQ's WorkerPool (forks N workers, respawns dead ones) running
FarmWorkers, each with its own Redis connection. Workers die with their pool: each asks the kernel
for SIGTERM when the pool dies (a SIGKILLed pool leaves no orphan taking jobs)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from multiprocessing import get_context
from typing import Any

from redis import Redis
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

from ..config import FarmConfig
from ..connection import connect_redis
from ..rq_classes import QUEUE_NAMES, FarmJob, FarmQueue
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
    """Workers are named ``<prefix>.<n>`` (prefix: ``--name``, else host.pid)."""

    def __init__(
        self,
        url: str,
        connection: Redis,
        config: FarmConfig,
        num_workers: int,
        name_prefix: str | None = None,
    ):
        self.url = url
        super().__init__(
            list(QUEUE_NAMES),
            connection=connection,
            num_workers=num_workers,
            worker_class=FarmWorker,
            serializer=JSONSerializer,
            job_class=FarmJob,
            queue_class=FarmQueue,
        )
        self.config = config
        self.name_prefix = name_prefix or f"{socket.gethostname()}.{os.getpid()}"
        self._counter = 0

    def all_workers_have_stopped(self) -> bool:
        """Asked only once the pool is stopping. Wait for the workers' exits here (RQ's loop
        sleeps a second between looks), so the pool exits right after its last worker: a
        supervisor then sees the workers stopped before ``farm redis`` stops Redis."""
        deadline = time.monotonic() + STOP_WAIT
        for data in list(self.worker_dict.values()):
            data.process.join(max(0.0, deadline - time.monotonic()))
        return bool(super().all_workers_have_stopped())

    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> Any:
        self._counter += 1
        worker_name = f"{self.name_prefix}.{self._counter}"
        return get_context("fork").Process(
            target=run_worker,
            args=(self.url, self.config, worker_name, burst, logging_level, os.getpid()),
            name=f"farm worker {worker_name}",
        )


def run_worker(
    url: str, config: FarmConfig, name: str, burst: bool, logging_level: str = "INFO", pool_pid: int = 0
) -> None:
    """Entry point of one pooled worker process. If the pool dies (even by SIGKILL) the worker
    gets SIGTERM: a warm shutdown, so its running job finishes or is requeued, and recorded."""
    if pool_pid and not die_with_parent(pool_pid):
        return  # the pool died before this worker could ask to follow it
    try:
        connection = connect_redis(url, config)
        worker = FarmWorker(connection=connection, config=config, name=name)
    except KeyboardInterrupt:
        return  # the pool was stopped while this worker was still starting
    worker.work(burst=burst, logging_level=logging_level)
