"""No-op dispatch throughput: farm workers (demo, duration 0) vs plain `rq worker-pool -n 2` (no-op
function) and a Celery worker (`--concurrency 2`, prefork, Redis broker and result backend; its
no-op task returns when it ran).

1,000 jobs, 2 worker processes each, same Redis, same run, alternating rounds. Reported: jobs/s
over the span from the first job's start to the last job's end (startup excluded; for Celery, the
first to the last task's own timestamp), and over the whole command (startup included; Celery has
no burst mode: from starting the worker until the last result is stored). Target ratio >= 1.0
against plain RQ (SPEC §11); Celery is shown beside it, and skipped when not installed.
Run: .venv/bin/python bench/dispatch.py [--jobs 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
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

from bench.common import farm_burst, private_redis, report_peers, rq_burst  # noqa: E402
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


HAVE_CELERY = importlib.util.find_spec("celery") is not None


def run_celery(url: str, n: int) -> tuple[float, float]:
    """n no-op tasks published first, then one Celery worker (2 prefork processes) until all ran."""
    connection = Redis.from_url(url)
    connection.flushall()
    env = {**os.environ, "FARM_BENCH_REDIS_SOCKET": url.removeprefix("unix://"), "PYTHONPATH": str(ROOT)}
    os.environ["FARM_BENCH_REDIS_SOCKET"] = env["FARM_BENCH_REDIS_SOCKET"]
    from celery import group

    from bench import celery_peer

    result = group(celery_peer.noop.s(renderer="demo", params={}) for _ in range(n)).apply_async()
    ids = [r.id for r in result.results]
    start = time.perf_counter()
    worker = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "bench.celery_peer",
            "worker",
            "--concurrency",
            "2",
            "--pool",
            "prefork",
            "-Q",
            celery_peer.QUEUE,
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while len(connection.keys("celery-task-meta-*")) < n:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the Celery worker did not run every task")
            time.sleep(0.02)
        wall = n / (time.perf_counter() - start)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    with connection.pipeline() as pipe:
        for task_id in ids:
            pipe.get(f"celery-task-meta-{task_id}")
        ran = [json.loads(raw)["result"] for raw in pipe.execute()]
    return n / (max(ran) - min(ran)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, tuple[list[float], list[float]]] = {
        "farm": ([], []),
        "rq": ([], []),
        "celery": ([], []),
    }
    runs = {
        "farm": lambda url, tmp: run_farm(url, args.jobs, tmp),
        "rq": lambda url, tmp: run_rq(url, args.jobs),
    }
    if HAVE_CELERY:
        runs["celery"] = lambda url, tmp: run_celery(url, args.jobs)
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, run in runs.items():
                span, wall = run(url, Path(tmp))
                results[name][0].append(span)
                results[name][1].append(wall)

    def med(name: str, which: int) -> float | None:
        values = results[name][which]
        return statistics.median(values) if values else None

    report_peers(
        f"no-op dispatch, jobs/s ({args.jobs} jobs, 2 processes, median of {args.rounds} rounds)",
        [
            (
                label,
                med("farm", which) or 0.0,
                {"plain RQ worker-pool -n 2": med("rq", which), "Celery prefork -c 2": med("celery", which)},
            )
            for which, label in ((0, "first start -> last end"), (1, "whole command (with startup)"))
        ],
        target=1.0,
    )


if __name__ == "__main__":
    main()
