"""Start latency when a slot frees: how long after a capped job ends does the next one start?

Farm: renderer `alpha` capped at 1, 300 short alpha jobs, 3 idle worker processes (so the freed
slot is taken by whichever worker is fastest, usually not the one that just finished). Gap =
next job's started_at - previous job's ended_at, in the order the slot passed along.
Peer: plain RQ, one worker running the same jobs back to back (its gap between jobs: it has
no caps, so this is its best case). Targets for the farm: p50 <= 20 ms, p99 <= 100 ms.
Run: .venv/bin/python bench/latency.py [--jobs 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from bench.common import farm_burst, private_redis, record, rq_burst  # noqa: E402
from bench.utilization import intervals  # noqa: E402

BIN = Path(sys.executable).parent
DURATION = 0.05


def gaps(spans: list[tuple[float, float]]) -> list[float]:
    spans = sorted(spans)
    return [max(0.0, b[0] - a[1]) * 1000 for a, b in zip(spans, spans[1:], strict=False)]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def run_farm(url: str, n: int, tmp: Path) -> list[float]:
    connection = Redis.from_url(url)
    connection.flushall()
    config = tmp / "farm.toml"
    config.write_text(
        f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{tmp}"\n'
        "[caps]\ntotal = 10\nrenderers = { alpha = 1 }\nwindows = []\n"
        '[plugins]\nalpha = "renderers.demo:DemoRenderer"\n'
    )
    from farm import Farm
    from farm.config import load_config

    farm = Farm(connection, load_config(config), url=url)
    ids = farm.submit_many(
        [{"renderer": "alpha", "params": {"duration": DURATION, "stages": 1}} for _ in range(n)]
    )
    farm_burst(config, 3)
    return gaps(intervals(connection, ids))


def run_rq(url: str, n: int) -> list[float]:
    connection = Redis.from_url(url)
    connection.flushall()
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    ids = [
        j.id
        for j in queue.enqueue_many(
            [
                Queue.prepare_data("bench.noop.sleep", kwargs={"seconds": DURATION}, result_ttl=3600)
                for _ in range(n)
            ]
        )
    ]
    rq_burst(url, "worker", ["default"])
    return gaps(intervals(connection, ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        farm = run_farm(url, args.jobs, Path(tmp))
        peer = run_rq(url, args.jobs)
    print(f"\nstart latency after a slot frees, ms ({args.jobs} jobs of {DURATION * 1000:.0f} ms)")
    for label, values in (("farm (alpha cap 1, 3 workers)", farm), ("plain RQ (1 worker, no caps)", peer)):
        print(
            f"  {label:<32} p50 {pct(values, 50):6.1f}   p90 {pct(values, 90):6.1f}   p99 {pct(values, 99):6.1f}"
            f"   max {max(values):6.1f}"
        )
    p50, p99 = pct(farm, 50), pct(farm, 99)
    verdict = "ok" if p50 <= 20 and p99 <= 100 else "ABOVE target (p50 <= 20, p99 <= 100)"
    print(f"  farm vs targets: {verdict}; ratio p50 farm/peer {p50 / pct(peer, 50):.2f}")
    for q, limit in ((50, 20), (99, 100)):
        record(
            f"start latency after a slot frees: p{q}",
            farm=pct(farm, q),
            peer=pct(peer, q),
            peer_name="plain RQ, 1 worker, no caps (back to back)",
            unit="ms",
            target=f"<= {limit} ms",
            ok=pct(farm, q) <= limit,
            better="lower",
        )


if __name__ == "__main__":
    main()
