"""Submit throughput: Farm.submit vs RQ Queue.enqueue (loops), submit_many vs enqueue_many.

Same Redis, same run, alternating rounds; prints jobs/s and the ratio (target >= 0.8).
Run: .venv/bin/python bench/submit.py [--jobs 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from bench.common import bench_config, median_rate, private_redis, rate, report  # noqa: E402
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

        farm_loop(), rq_loop()  # warm up both
        rows = [
            (
                "submit loop vs Queue.enqueue",
                median_rate(farm_loop, args.rounds),
                median_rate(rq_loop, args.rounds),
            ),
            (
                "submit_many vs enqueue_many",
                median_rate(farm_many, args.rounds),
                median_rate(rq_many, args.rounds),
            ),
        ]
        report(f"submit throughput, jobs/s ({n} jobs, median of {args.rounds} rounds)", rows, target=0.8)


if __name__ == "__main__":
    main()
