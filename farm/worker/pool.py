"""``farm worker --processes N``: RQ's WorkerPool (forks N workers, respawns dead ones) running
FarmWorkers, each with its own Redis connection."""

from __future__ import annotations

import os
import socket
from multiprocessing import get_context
from typing import Any

from redis import Redis
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

from ..config import FarmConfig
from ..connection import connect_redis
from ..rq_classes import QUEUE_NAMES, FarmJob, FarmQueue
from .worker import FarmWorker


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

    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> Any:
        self._counter += 1
        worker_name = f"{self.name_prefix}.{self._counter}"
        return get_context("fork").Process(
            target=run_worker,
            args=(self.url, self.config, worker_name, burst, logging_level),
            name=f"farm worker {worker_name}",
        )


def run_worker(url: str, config: FarmConfig, name: str, burst: bool, logging_level: str = "INFO") -> None:
    """Entry point of one pooled worker process."""
    try:
        connection = connect_redis(url, config)
        worker = FarmWorker(connection=connection, config=config, name=name)
    except KeyboardInterrupt:
        return  # the pool was stopped while this worker was still starting
    worker.work(burst=burst, logging_level=logging_level)
