"""What a Prometheus scrape of farm serve's /metrics costs, with 1k and 100k jobs in Redis, beside
the TUI's snapshot measured in the same run (the same live state underneath). Both should stay
flat as the history grows: a fixed number of Redis round trips, whatever the job count.
Run: .venv/bin/python bench/metrics.py [--big 100000] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402

from bench.common import bench_config, private_redis, record  # noqa: E402
from bench.ui import populate  # noqa: E402
from farm import Farm  # noqa: E402
from farm.live.snapshot import take_snapshot  # noqa: E402
from farm.serve.metrics import exposition  # noqa: E402


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


def timed(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with private_redis() as url:
        config = bench_config(url)
        connection = Redis.from_url(url)
        farm = Farm(connection, config, url=url)
        figures = {}
        for jobs in (args.small, args.big):
            connection.flushall()
            populate(farm, jobs)
            scrape = p95(timed(lambda: exposition(connection, config), args.rounds))
            snapshot = p95(timed(lambda: take_snapshot(connection, config), args.rounds))
            figures[jobs] = (scrape, snapshot)
            print(f"{jobs:>7} jobs: /metrics p95 {scrape:6.1f} ms   TUI snapshot p95 {snapshot:6.1f} ms")
        scrape_big, snapshot_big = figures[args.big]
        scrape_small, _ = figures[args.small]
        print(
            f"/metrics at {args.big} jobs vs the snapshot: ratio {scrape_big / snapshot_big:.2f}; "
            f"vs itself at {args.small} jobs: {scrape_big / scrape_small:.2f}x"
        )
        record(
            "metrics scrape p95",
            farm=scrape_big,
            unit="ms",
            peer=snapshot_big,
            peer_name=f"TUI snapshot at {args.big} jobs, same run",
            target=f"flat with history (<= 2x its {args.small}-job time, {scrape_small:.1f} ms)",
            ok=scrape_big <= 2 * scrape_small,
            better="lower",
        )


if __name__ == "__main__":
    main()
