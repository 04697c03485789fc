"""No-op dispatch throughput: farm workers (demo, duration 0) vs plain `rq worker-pool` (no-op function).

1,000 jobs, 2 worker processes each, same Redis, same run, alternating rounds. Reported: jobs/s
over the span from the first job's start to the last job's end (startup excluded), and over the
whole command (startup included). Target ratio >= 1.0.
Run: .venv/bin/python bench/dispatch.py [--jobs 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.registry import FinishedJobRegistry  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from bench.common import farm_burst, private_redis, report, rq_burst  # noqa: E402
from farm.timeutil import parse_rq_time  # noqa: E402

BIN = Path(sys.executable).parent


def span_rate(connection: Redis, queue: str, expected: int) -> float:
    ids = FinishedJobRegistry(queue, connection=connection).get_job_ids(cleanup=False)
    assert len(ids) == expected, f"{len(ids)} of {expected} finished in {queue}"
    with connection.pipeline() as pipe:
        for job_id in ids:
            pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at")
        times = pipe.execute()
    starts = [parse_rq_time(s) for s, _ in times]
    ends = [parse_rq_time(e) for _, e in times]
    span = (max(e for e in ends if e) - min(s for s in starts if s)).total_seconds()
    return expected / span


def run_farm(url: str, n: int, workdir: Path) -> tuple[float, float]:
    connection = Redis.from_url(url)
    connection.flushall()
    config = workdir / "farm.toml"
    config.write_text(
        f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{workdir}"\n[caps]\ntotal = 100\nwindows = []\n'
        "[retention]\nfinished = 3600\n"
    )
    from farm import Farm
    from farm.config import load_config

    farm = Farm(connection, load_config(config), url=url)
    farm.submit_many([{"renderer": "demo", "params": {"duration": 0, "stages": 1}} for _ in range(n)])
    start = time.perf_counter()
    farm_burst(config, 2)
    wall = n / (time.perf_counter() - start)
    return span_rate(connection, "medium", n), wall


def run_rq(url: str, n: int) -> tuple[float, float]:
    connection = Redis.from_url(url)
    connection.flushall()
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    queue.enqueue_many(
        [
            Queue.prepare_data("bench.noop.noop", kwargs={"renderer": "demo", "params": {}}, result_ttl=3600)
            for _ in range(n)
        ]
    )
    start = time.perf_counter()
    rq_burst(url, "worker-pool", ["default"], "-n", "2")
    wall = n / (time.perf_counter() - start)
    return span_rate(connection, "default", n), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    farm_span, farm_wall, rq_span, rq_wall = [], [], [], []
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            span, wall = run_farm(url, args.jobs, Path(tmp))
            farm_span.append(span)
            farm_wall.append(wall)
            span, wall = run_rq(url, args.jobs)
            rq_span.append(span)
            rq_wall.append(wall)
    med = statistics.median
    report(
        f"no-op dispatch, jobs/s ({args.jobs} jobs, 2 processes, median of {args.rounds} rounds)",
        [
            ("first start -> last end", med(farm_span), med(rq_span)),
            ("whole command (with startup)", med(farm_wall), med(rq_wall)),
        ],
        target=1.0,
    )


if __name__ == "__main__":
    main()
