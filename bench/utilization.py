"""Utilization under caps: 200 short demo jobs of three renderers, total cap 4, one renderer capped
at 2, on 4 worker processes. Prints makespan / ideal lower bound (target <= 1.10) and cap
violations (target 0), and the same workload on plain `rq worker-pool -n 4` (which has no caps:
it finishes early by overrunning the cap, and its violations are counted the same way).
Run: .venv/bin/python bench/utilization.py [--jobs 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from bench.common import farm_burst, private_redis, record, rq_burst  # noqa: E402
from farm.timeutil import parse_rq_time  # noqa: E402

BIN = Path(sys.executable).parent
TOTAL, CAPPED, CAPPED_LIMIT, PROCESSES = 4, "alpha", 2, 4


def workload(n: int, seed: int) -> list[tuple[str, float, str]]:
    rng = random.Random(seed)
    return [
        (
            rng.choice(["alpha", "alpha", "beta", "demo"]),
            round(rng.uniform(0.2, 0.6), 3),
            rng.choice(["high", "medium", "low"]),
        )
        for _ in range(n)
    ]


def lower_bound(jobs: list[tuple[str, float, str]], total: int, capped_limit: int | None) -> float:
    bound = max(sum(d for _, d, _ in jobs) / total, max(d for _, d, _ in jobs))
    if capped_limit:
        bound = max(bound, sum(d for r, d, _ in jobs if r == CAPPED) / capped_limit)
    return bound


def intervals(connection: Redis, ids: list[str]) -> list[tuple[float, float]]:
    with connection.pipeline() as pipe:
        for job_id in ids:
            pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at")
        rows = pipe.execute()
    out = []
    for start, end in rows:
        s, e = parse_rq_time(start), parse_rq_time(end)
        assert s and e, "a job did not finish"
        out.append((s.timestamp(), e.timestamp()))
    return out


def max_overlap(spans: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda p: (p[0], p[1]))
    best = cur = 0
    for _, delta in points:
        cur += delta
        best = max(best, cur)
    return best


def run_farm(url: str, jobs: list[tuple[str, float, str]], tmp: Path) -> tuple[float, int, int]:
    connection = Redis.from_url(url)
    connection.flushall()
    config = tmp / "farm.toml"
    config.write_text(
        f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{tmp}"\n'
        f"[caps]\ntotal = {TOTAL}\nrenderers = {{ {CAPPED} = {CAPPED_LIMIT} }}\nwindows = []\n"
        '[plugins]\nalpha = "renderers.demo:DemoRenderer"\nbeta = "renderers.demo:DemoRenderer"\n'
    )
    from farm import Farm
    from farm.config import load_config

    farm = Farm(connection, load_config(config), url=url)
    ids = farm.submit_many(
        [{"renderer": r, "params": {"duration": d, "stages": 1}, "priority": p} for r, d, p in jobs]
    )
    farm_burst(config, PROCESSES)
    spans = intervals(connection, ids)
    makespan = max(e for _, e in spans) - min(s for s, _ in spans)
    capped = [span for span, (r, _, _) in zip(spans, jobs, strict=True) if r == CAPPED]
    violations = sum(max(0, n) for n in [max_overlap(spans) - TOTAL, max_overlap(capped) - CAPPED_LIMIT])
    from tests.events import read_events, replay

    replayed = replay(read_events(connection), total=TOTAL, caps={CAPPED: CAPPED_LIMIT})
    return makespan, violations + len(replayed.violations), max_overlap(capped)


def run_rq(url: str, jobs: list[tuple[str, float, str]]) -> tuple[float, int]:
    connection = Redis.from_url(url)
    connection.flushall()
    ids = []
    for priority in ("high", "medium", "low"):
        queue = Queue(priority, connection=connection, serializer=JSONSerializer)
        batch = [
            Queue.prepare_data("bench.noop.sleep", kwargs={"seconds": d}, result_ttl=3600)
            for r, d, p in jobs
            if p == priority
        ]
        ids += [j.id for j in queue.enqueue_many(batch)]
    order = {p: [(r, d) for r, d, q in jobs if q == p] for p in ("high", "medium", "low")}
    ordered_jobs = order["high"] + order["medium"] + order["low"]
    rq_burst(url, "worker-pool", ["high", "medium", "low"], "-n", str(PROCESSES))
    spans = intervals(connection, ids)
    makespan = max(e for _, e in spans) - min(s for s, _ in spans)
    capped = [span for span, (r, _) in zip(spans, ordered_jobs, strict=True) if r == CAPPED]
    return makespan, max_overlap(capped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    jobs = workload(args.jobs, args.seed)
    ideal = lower_bound(jobs, TOTAL, CAPPED_LIMIT)
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        makespan, violations, capped_peak = run_farm(url, jobs, Path(tmp))
        farm_wall = time.perf_counter() - started
        rq_makespan, rq_capped_peak = run_rq(url, jobs)
    rq_ideal = lower_bound(jobs, PROCESSES, None)
    print(
        f"\nutilization: {args.jobs} demo jobs, total cap {TOTAL}, {CAPPED} cap {CAPPED_LIMIT}, {PROCESSES} processes"
    )
    print(
        f"  farm      makespan {makespan:6.2f}s  ideal {ideal:6.2f}s  ratio {makespan / ideal:5.3f}"
        f"  {'ok' if makespan / ideal <= 1.10 else 'ABOVE target 1.10'}   cap violations {violations}"
        f"  (peak {CAPPED} {capped_peak}/{CAPPED_LIMIT}; {farm_wall:.1f}s with worker start-up)"
    )
    print(
        f"  plain RQ  makespan {rq_makespan:6.2f}s  ideal {rq_ideal:6.2f}s  ratio {rq_makespan / rq_ideal:5.3f}"
        f"   no caps: peak {CAPPED} {rq_capped_peak}/{CAPPED_LIMIT} "
        f"({'violates' if rq_capped_peak > CAPPED_LIMIT else 'within'} the cap)"
    )
    record(
        "utilization: makespan / ideal lower bound",
        farm=makespan / ideal,
        peer=rq_makespan / rq_ideal,
        peer_name="plain RQ worker-pool -n 4 (no caps)",
        unit="x",
        target="<= 1.10",
        ok=makespan / ideal <= 1.10,
        better="lower",
    )
    record(
        "utilization: cap violations",
        farm=violations,
        peer=max(0, rq_capped_peak - CAPPED_LIMIT),
        peer_name=f"plain RQ (peak {CAPPED} {rq_capped_peak}/{CAPPED_LIMIT})",
        unit="",
        target="0",
        ok=violations == 0,
        better="lower",
    )


if __name__ == "__main__":
    main()
