"""The Celery peer of the submit and dispatch benchmarks: a Redis-broker app with one no-op task.

Broker and result backend are the benchmark's private redis-server (its unix socket, from
``$FARM_BENCH_REDIS_SOCKET``), JSON everywhere. The worker is started by the benchmark as
``celery -A bench.celery_peer worker --concurrency 2 --pool prefork``. Needs the ``bench`` extra
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import os
import time

from celery import Celery

QUEUE = "bench"
SOCKET = os.environ.get("FARM_BENCH_REDIS_SOCKET", "/tmp/farm-bench-redis.sock")

app = Celery("bench", broker=f"redis+socket://{SOCKET}", backend=f"redis+socket://{SOCKET}")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=3600,
)


@app.task(name="bench.noop")
def noop(**kwargs: object) -> float:
    """Does nothing; returns when it ran (the benchmark reads the first and last of these)."""
    return time.time()


def without_backend() -> Celery:
    """The same app with no result backend (fire and forget: no state a submitter could query)."""
    bare = Celery("bench-bare", broker=f"redis+socket://{SOCKET}")
    bare.conf.update(task_serializer="json", accept_content=["json"], task_default_queue=QUEUE)
    bare.task(name="bench.noop", ignore_result=True)(noop.run)
    return bare
