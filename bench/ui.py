"""What the TUI costs: the farm snapshot (and stats() + one 50-row page) with 1k and with 100k jobs
in Redis (10% queued, 60% finished, 30% failed), against the naive RQ way (Queue.jobs +
registries + Job.fetch_many, as dashboards do) in the same run; and the RSS of the running TUI
with 100k jobs. Targets: p95 <= 30 ms at 100k and <= 2x the 1k figure; TUI <= 150 MB RSS.
Run: .venv/bin/python bench/ui.py [--big 100000] [--skip-tui]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq.job import Job  # noqa: E402
from rq.registry import FailedJobRegistry, FinishedJobRegistry  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from bench.common import bench_config, private_redis, record  # noqa: E402
from farm import Farm, transitions  # noqa: E402
from farm.live.snapshot import take_snapshot  # noqa: E402
from farm.models import ErrorKind, Priority  # noqa: E402
from farm.rq_classes import FarmQueue  # noqa: E402

BATCH = 5000


def populate(farm: Farm, total: int) -> None:
    """total jobs: 10% queued, 60% finished, 30% failed, spread over the three priorities."""
    connection = farm.connection
    connection.flushall()
    queued = {p: [] for p in ("high", "medium", "low")}
    made = 0
    while made < total:
        n = min(BATCH, total - made)
        priorities = [("high", "medium", "low")[(made + i) % 3] for i in range(n)]
        ids = farm.submit_many(
            [
                {"renderer": "demo", "params": {"duration": 1}, "priority": p, "name": f"job-{made + i}"}
                for i, p in enumerate(priorities)
            ]
        )
        with connection.pipeline(transaction=False) as pipe:
            for i, (job_id, p) in enumerate(zip(ids, priorities, strict=True)):
                slot = (made + i) % 10
                if slot == 0:
                    queued[p].append(job_id)
                elif slot <= 6:
                    transitions.write_finished(pipe, job_id, p, 86400, {"outputs": []}, "[]")
                else:
                    transitions.write_failed(
                        pipe, job_id, p, 604800, ErrorKind.API_ERROR, "HTTP 503 from render service", "[]"
                    )
            pipe.execute()
        made += n
    with connection.pipeline(transaction=False) as pipe:
        for p, ids in queued.items():
            pipe.delete(f"rq:queue:{p}")
            for start in range(0, len(ids), BATCH):
                pipe.rpush(f"rq:queue:{p}", *ids[start : start + BATCH])
        pipe.execute()


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] * 1000


def timed(fn, rounds: int) -> list[float]:
    fn()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def naive(connection: Redis) -> None:
    """The usual dashboard way with RQ's API: every queued job, every registry id, fetch them all."""
    jobs = []
    for p in Priority:
        queue = FarmQueue(p.value, connection=connection)
        jobs += queue.jobs
        for registry in (FinishedJobRegistry, FailedJobRegistry):
            ids = registry(p.value, connection=connection, serializer=JSONSerializer).get_job_ids(
                cleanup=False
            )
            jobs += [j for j in Job.fetch_many(ids, connection=connection, serializer=JSONSerializer) if j]
    sorted(jobs, key=lambda j: j.enqueued_at or j.created_at, reverse=True)[:50]


def tui_rss(url: str, config_path: Path, seconds: float = 8.0) -> float | None:
    """Peak RSS (MB) of `farm tui` attached to the populated farm, in a pseudo-terminal."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(
            {"FARM_CONFIG": str(config_path), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "48"}
        )
        os.execv(sys.executable, [sys.executable, "-m", "farm", "tui"])
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            os.read(fd, 65536)
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            break
        time.sleep(0.2)
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass
    return peak or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--skip-tui", action="store_true")
    args = parser.parse_args()
    results: dict[int, dict[str, list[float]]] = {}
    rss = None
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        config = bench_config(url, Path(tmp))
        connection = Redis.from_url(url)
        farm = Farm(connection, config, url=url)
        for size in (args.small, args.big):
            populate(farm, size)
            results[size] = {
                "snapshot": timed(lambda: take_snapshot(connection, config), args.rounds),
                "stats+page": timed(lambda: (farm.stats(), farm.list(limit=50)), args.rounds),
                "naive RQ": timed(lambda: naive(connection), 3 if size > 10_000 else 10),
            }
        if not args.skip_tui:
            config_path = Path(tmp) / "farm.toml"
            config_path.write_text(f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{tmp}"\n')
            rss = tui_rss(url, config_path)
    small, big = results[args.small], results[args.big]
    print(f"\nUI data cost, p95 ms ({args.rounds} rounds; naive RQ: 3-10 rounds)")
    print(f"  {'':<14}{args.small:>10} jobs{args.big:>12} jobs   big/small   vs naive RQ at {args.big}")
    for name in ("snapshot", "stats+page"):
        a, b = p95(small[name]), p95(big[name])
        verdict = "ok" if b <= 30 and b <= 2 * a else "ABOVE target (<= 30 ms and <= 2x)"
        print(
            f"  {name:<14}{a:>10.1f}     {b:>12.1f}      {b / a:5.2f}x     {p95(big['naive RQ']) / b:8.0f}x faster   {verdict}"
        )
        record(
            f"UI: {name} p95 at {args.big} jobs",
            farm=b,
            peer=p95(big["naive RQ"]),
            peer_name="naive RQ (Queue.jobs + registries + fetch_many)",
            unit="ms",
            target=f"<= 30 ms and <= 2x its {args.small}-job time ({a:.1f} ms)",
            ok=b <= 30 and b <= 2 * a,
            better="lower",
        )
    print(f"  {'naive RQ':<14}{p95(small['naive RQ']):>10.1f}     {p95(big['naive RQ']):>12.1f}")
    if rss is not None:
        print(
            f"  TUI RSS with {args.big} jobs: {rss:.0f} MB   {'ok' if rss <= 150 else 'ABOVE target 150 MB'}"
        )
        record(
            f"UI: TUI RSS with {args.big} jobs",
            farm=rss,
            peer=None,
            peer_name="-",
            unit="MB",
            target="<= 150 MB",
            ok=rss <= 150,
            better="lower",
        )


if __name__ == "__main__":
    main()
