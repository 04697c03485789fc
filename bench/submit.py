"""Submit throughput: Farm.submit vs RQ Queue.enqueue (loops), submit_many vs enqueue_many; and
the same against Celery (Redis broker): an ``apply_async`` loop, and a ``group(...).apply_async()``
for the bulk submit — with its Redis result backend (a submitted task's state can be queried, as a
farm job's can) and without one (fire and forget, Celery's fastest).

Same Redis, same run, alternating rounds; prints jobs/s and the ratio (target >= 0.8 against
plain RQ, SPEC §11; Celery is shown beside it). Celery is skipped when it is not installed
(``pip install -e '.[bench]'``).
Run: .venv/bin/python bench/submit.py [--jobs 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from bench.common import bench_config, median_rate, private_redis, rate, report_peers  # noqa: E402
from farm import Farm  # noqa: E402

PARAMS = {"duration": 0, "stages": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.jobs
    with private_redis() as url:
        connection = Redis.from_url(url)
        farm = Farm(connection, bench_config(url), url=url)
        queue = Queue("medium", connection=connection, serializer=JSONSerializer)

        def farm_loop() -> float:
            connection.flushall()
            start = time.perf_counter()
            for _ in range(n):
                farm.submit("demo", PARAMS)
            return rate(n, time.perf_counter() - start)

        def rq_loop() -> float:
            connection.flushall()
            start = time.perf_counter()
            for _ in range(n):
                queue.enqueue("bench.noop.noop", renderer="demo", params=PARAMS)
            return rate(n, time.perf_counter() - start)

        def farm_many() -> float:
            connection.flushall()
            start = time.perf_counter()
            farm.submit_many([{"renderer": "demo", "params": PARAMS} for _ in range(n)])
            return rate(n, time.perf_counter() - start)

        def rq_many() -> float:
            connection.flushall()
            start = time.perf_counter()
            queue.enqueue_many(
                [
                    Queue.prepare_data("bench.noop.noop", kwargs={"renderer": "demo", "params": PARAMS})
                    for _ in range(n)
                ]
            )
            return rate(n, time.perf_counter() - start)

        celery = celery_runs(url, connection, n) if HAVE_CELERY else {}
        farm_loop(), rq_loop()  # warm up both
        for run in celery.values():
            run()
        med = {name: median_rate(run, args.rounds) for name, run in celery.items()}
        rows = [
            (
                "submit loop",
                median_rate(farm_loop, args.rounds),
                {
                    "plain RQ Queue.enqueue": median_rate(rq_loop, args.rounds),
                    "Celery apply_async": med.get("loop"),
                    "Celery apply_async, no backend": med.get("loop-bare"),
                },
            ),
            (
                "submit_many",
                median_rate(farm_many, args.rounds),
                {
                    "plain RQ enqueue_many": median_rate(rq_many, args.rounds),
                    "Celery group": med.get("group"),
                    "Celery group, no backend": med.get("group-bare"),
                },
            ),
        ]
        report_peers(
            f"submit throughput, jobs/s ({n} jobs, median of {args.rounds} rounds)", rows, target=0.8
        )


HAVE_CELERY = importlib.util.find_spec("celery") is not None


def celery_runs(url: str, connection: Redis, n: int) -> dict[str, Callable[[], float]]:
    """Timed Celery submits of n no-op tasks on the same Redis (its unix socket)."""
    os.environ["FARM_BENCH_REDIS_SOCKET"] = url.removeprefix("unix://")
    from celery import group

    from bench import celery_peer

    task = celery_peer.noop
    bare = celery_peer.without_backend().tasks["bench.noop"]
    kwargs = {"renderer": "demo", "params": PARAMS}

    def timed(submit: Callable[[], None]) -> Callable[[], float]:
        def run() -> float:
            connection.flushall()
            start = time.perf_counter()
            submit()
            return rate(n, time.perf_counter() - start)

        return run

    def loop(t: Any) -> Callable[[], None]:
        def submit() -> None:
            for _ in range(n):
                t.apply_async(kwargs=kwargs)

        return submit

    def bulk(t: Any) -> Callable[[], None]:
        def submit() -> None:
            group(t.s(**kwargs) for _ in range(n)).apply_async()

        return submit

    return {
        "loop": timed(loop(task)),
        "loop-bare": timed(loop(bare)),
        "group": timed(bulk(task)),
        "group-bare": timed(bulk(bare)),
    }


if __name__ == "__main__":
    main()
