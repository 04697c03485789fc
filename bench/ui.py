"""What the TUI costs: the farm snapshot (and stats() + one 50-row page) with 1k and with 100k jobs
in Redis (10% queued, 60% finished, 30% failed), against the naive RQ way (Queue.jobs +
registries + Job.fetch_many, as dashboards do) in the same run; and the CPU use (% of a core, while it
idles refreshing) and peak RSS of a running `farm tui` with 100k jobs. Targets: p95 <= 30 ms at
100k and <= 2x the 1k figure; the TUI <= 2 % of a core and <= 80 MB.
Run: .venv/bin/python bench/ui.py [--big 100000] [--skip-tui | --tui-only] [--tui-seconds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
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


TUI_WARMUP = 5.0  # seconds: start-up (imports, first snapshot) is not what idle refreshing costs


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5), counted after "comm)"


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tui_cost(config_path: Path, seconds: float, size: tuple[int, int] = (160, 48)) -> dict[str, float] | None:
    """`farm tui` attached to the populated farm in a pseudo-terminal (nothing else running: the
    farm is idle, the TUI only refreshes): its CPU use over ``seconds`` after a warm-up, as % of
    one core (from /proc/<pid>/stat), and its peak (VmHWM) and final (VmRSS) resident memory."""
    import pty

    columns, lines = size
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(
            {
                "FARM_CONFIG": str(config_path),
                "PYTHONPATH": str(ROOT),
                "TERM": "xterm-256color",
                "COLUMNS": str(columns),
                "LINES": str(lines),
            }
        )
        os.execv(sys.executable, [sys.executable, "-m", "farm", "tui"])
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    drained = 0

    def drain(until: float) -> None:
        nonlocal drained
        while time.monotonic() < until:
            with contextlib.suppress(OSError):
                readable, _, _ = select.select([fd], [], [], 0.2)
                if readable:
                    drained += len(os.read(fd, 65536))

    try:
        drain(time.monotonic() + TUI_WARMUP)
        start_ticks, start = _cpu_ticks(pid), time.monotonic()
        drained = 0
        drain(start + seconds)
        ticks, elapsed = _cpu_ticks(pid) - start_ticks, time.monotonic() - start
        out = {
            "cpu_pct": 100.0 * ticks / ticks_per_s / elapsed,
            "hwm_mb": _status_mb(pid, "VmHWM"),
            "rss_mb": _status_mb(pid, "VmRSS"),
            "out_kb_per_s": drained / 1024 / elapsed,
        }
    except OSError:  # the TUI died: report nothing rather than a wrong figure
        return None
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    return out


CPU_TARGET = 2.0  # % of one core while the TUI idles on a 100k-job farm
RSS_TARGET = 80.0  # MB peak resident


def report_tui(cost: dict[str, float], jobs: int, seconds: float) -> None:
    cpu, hwm = cost["cpu_pct"], cost["hwm_mb"]
    print(f"\nTUI on an idle farm with {jobs} jobs ({seconds:.0f} s after a {TUI_WARMUP:.0f} s warm-up)")
    print(f"  CPU   {cpu:6.2f} % of a core   {'ok' if cpu <= CPU_TARGET else f'ABOVE target {CPU_TARGET} %'}")
    print(
        f"  RSS   {hwm:6.1f} MB peak (VmHWM), {cost['rss_mb']:.1f} MB at the end   "
        f"{'ok' if hwm <= RSS_TARGET else f'ABOVE target {RSS_TARGET:.0f} MB'}"
    )
    print(f"  terminal output {cost['out_kb_per_s']:.1f} kB/s")
    record(
        f"UI: TUI CPU idle with {jobs} jobs",
        farm=cpu,
        peer=None,
        peer_name="-",
        unit="% of a core",
        target=f"<= {CPU_TARGET} %",
        ok=cpu <= CPU_TARGET,
        better="lower",
    )
    record(
        f"UI: TUI RSS with {jobs} jobs",
        farm=hwm,
        peer=None,
        peer_name="-",
        unit="MB",
        target=f"<= {RSS_TARGET:.0f} MB",
        ok=hwm <= RSS_TARGET,
        better="lower",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--skip-tui", action="store_true")
    parser.add_argument("--tui-only", action="store_true", help="populate --big jobs, measure only the TUI")
    parser.add_argument("--tui-seconds", type=float, default=30.0)
    args = parser.parse_args()
    results: dict[int, dict[str, list[float]]] = {}
    cost = None
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        config = bench_config(url, Path(tmp))
        connection = Redis.from_url(url)
        farm = Farm(connection, config, url=url)
        for size in (args.big,) if args.tui_only else (args.small, args.big):
            populate(farm, size)
            if args.tui_only:
                break
            results[size] = {
                "snapshot": timed(lambda: take_snapshot(connection, config), args.rounds),
                "stats+page": timed(lambda: (farm.stats(), farm.list(limit=50)), args.rounds),
                "naive RQ": timed(lambda: naive(connection), 3 if size > 10_000 else 10),
            }
        if not args.skip_tui:
            config_path = Path(tmp) / "farm.toml"
            config_path.write_text(
                f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{tmp}"\n[caps]\nwindows = []\n'
            )
            cost = tui_cost(config_path, args.tui_seconds)
    if results:
        report_data(results, args)
    if cost is not None:
        report_tui(cost, args.big, args.tui_seconds)
    elif not args.skip_tui:
        print("\nTUI: the process died before the measurement ended (see <data_dir>/logs/tui.log)")


def report_data(results: dict[int, dict[str, list[float]]], args: argparse.Namespace) -> None:
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


if __name__ == "__main__":
    main()
