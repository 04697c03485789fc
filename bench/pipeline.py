"""Dependency release latency: how long after a job ends does the job waiting on it start?

Farm: a chain of N short demo jobs, each submitted with after= the previous one (one
submit_many call), 3 idle worker processes. Gap = a job's started_at - its dependency's
ended_at. The dependent is released inside the step that records the end (lua/after.lua), so
this should match the plain slot hand-off measured in the same run (bench/latency.py's case: a
renderer capped at 1, the freed slot taken by the next job).
Peer: plain RQ's own dependencies (depends_on=previous), released by the worker that finished
the job (enqueue_dependents), a pool of 3 workers.
Run: .venv/bin/python bench/pipeline.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from bench.common import farm_burst, private_redis, record, rq_burst  # noqa: E402
from bench.latency import DURATION, gaps, pct  # noqa: E402
from bench.latency import run_farm as handoff  # noqa: E402
from bench.utilization import intervals  # noqa: E402


def chain_farm(url: str, n: int, tmp: Path) -> list[float]:
    connection = Redis.from_url(url)
    connection.flushall()
    config = tmp / "chain.toml"
    config.write_text(f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{tmp}"\n[caps]\nwindows = []\n')
    from farm import Farm
    from farm.config import load_config

    farm = Farm(connection, load_config(config), url=url)
    ids = farm.submit_many(
        [
            {
                "renderer": "demo",
                "params": {"duration": DURATION, "stages": 1},
                **({"after": [i - 1]} if i else {}),
            }
            for i in range(n)
        ]
    )
    farm_burst(config, 3)
    return gaps(intervals(connection, ids))


def chain_rq(url: str, n: int) -> list[float]:
    connection = Redis.from_url(url)
    connection.flushall()
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    ids: list[str] = []
    for _ in range(n):
        job = queue.enqueue(
            "bench.noop.sleep",
            kwargs={"seconds": DURATION},
            result_ttl=3600,
            depends_on=ids[-1] if ids else None,
        )
        ids.append(job.id)
    rq_burst(url, "worker-pool", ["default"], "-n", "3")
    return gaps(intervals(connection, ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        chain = chain_farm(url, args.jobs, Path(tmp))
        slot = handoff(url, args.jobs, Path(tmp))
        peer = chain_rq(url, args.jobs)
    print(
        f"\nstart after the job it waits on ends, ms ({args.jobs} jobs of {DURATION * 1000:.0f} ms, 3 workers)"
    )
    for label, values in (
        ("farm: after= chain", chain),
        ("farm: slot hand-off (cap 1)", slot),
        ("plain RQ: depends_on chain", peer),
    ):
        print(
            f"  {label:<30} p50 {pct(values, 50):6.1f}   p90 {pct(values, 90):6.1f}   p99 {pct(values, 99):6.1f}"
            f"   max {max(values):6.1f}"
        )
    print(
        f"  ratio p50 chain/slot hand-off {pct(chain, 50) / pct(slot, 50):.2f}; "
        f"chain/plain RQ {pct(chain, 50) / pct(peer, 50):.2f}"
    )
    for q in (50, 99):
        record(
            f"dependency release latency: p{q}",
            farm=pct(chain, q),
            peer=pct(peer, q),
            peer_name="plain RQ depends_on chain, pool of 3",
            unit="ms",
            target=f"close to the slot hand-off in the same run ({pct(slot, q):.1f} ms)",
            ok=pct(chain, q) <= max(20.0, 1.5 * pct(slot, q))
            if q == 50
            else pct(chain, q) <= max(100.0, 1.5 * pct(slot, q)),
            better="lower",
        )


if __name__ == "__main__":
    main()
