"""Autoscaling: a bursty workload (bursts of demo jobs with idle gaps between them, arriving on a
fixed schedule) on `farm worker --workers MIN:MAX`, a fixed pool of MAX and a fixed pool of MIN,
one after the other against the same Redis, in the same run. Prints each one's makespan (first
submit to last end), mean turnaround (submit to end) and process-seconds (worker processes
alive, integrated over the makespan from the pool's published count, sampled every 0.1 s): the
autoscaling pool should finish close to the fixed MAX pool while using far fewer
process-seconds, and well before the fixed MIN pool.
Run: .venv/bin/python bench/autoscale.py [--bursts 4] [--jobs 12] [--seconds 1] [--gap 15] [--min 1] [--max 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402

from bench.common import farm_command, farm_env, private_redis, record  # noqa: E402
from farm.timeutil import parse_rq_time  # noqa: E402

IDLE_EXIT = 2.0
POOL = "bench"


def write_config(tmp: Path, url: str, total: int) -> Path:
    path = tmp / "farm.toml"
    path.write_text(
        f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{tmp / "data"}"\n'
        f"[caps]\ntotal = {total}\nrenderers = {{}}\nwindows = []\n"
        f"[worker]\nheartbeat_interval = 0.5\nidle_exit = {IDLE_EXIT}\n"
        "[scheduler]\nworker_timeout = 3.0\n"
    )
    return path


class Meter:
    """Integrates the pool's published process count (farm:pool:<name> current) over time."""

    def __init__(self, url: str) -> None:
        from farm.live.roster import list_pools

        self.list_pools = list_pools
        self.connection = Redis.from_url(url)
        self.process_seconds = 0.0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        """The pool's count; a one-process `farm worker` runs no pool: its registration then."""
        found = next((p.current for p in self.list_pools(self.connection) if p.name == POOL), None)
        return found if found is not None else int(self.connection.zcard("farm:heartbeats"))

    def _run(self) -> None:
        last, count = time.monotonic(), self.current()
        while not self._stop.wait(0.1):
            now = time.monotonic()
            self.process_seconds += count * (now - last)
            last, count = now, self.current()
            self.peak = max(self.peak, count)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.connection.close()


def run(url: str, tmp: Path, size: str, args: argparse.Namespace) -> dict[str, float]:
    connection = Redis.from_url(url)
    connection.flushall()
    config_path = write_config(tmp, url, total=args.max)
    from farm import Farm
    from farm.config import load_config

    farm = Farm(connection, load_config(config_path), url=url)
    minimum = int(size.split(":")[0])
    pool = subprocess.Popen(
        farm_command("worker", "--workers", size, "--name", POOL),
        cwd=ROOT,
        env=farm_env(config_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    meter = Meter(url)
    try:
        deadline = time.monotonic() + 30
        while not (connection.zcard("farm:heartbeats") >= minimum and meter.current() == minimum):
            if time.monotonic() > deadline:
                raise SystemExit(f"farm worker --workers {size} did not start")
            time.sleep(0.05)
        meter.start()
        ids: list[str] = []
        started = time.time()
        for burst in range(args.bursts):
            time.sleep(max(0.0, started + burst * args.gap - time.time()))
            ids += farm.submit_many(
                [{"renderer": "demo", "params": {"duration": args.seconds, "stages": 1}}] * args.jobs
            )
        for job_id in ids:
            farm.wait(job_id, timeout=600)
        meter.stop()
        with connection.pipeline() as pipe:
            for job_id in ids:
                pipe.hmget(f"rq:job:{job_id}", "farm_submitted", "ended_at")
            rows = pipe.execute()
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        pool.wait(timeout=60)
    ends = [parse_rq_time(end).timestamp() for _, end in rows]
    turnaround = [end - float(sub) for (sub, _), end in zip(rows, ends, strict=True)]
    connection.close()
    return {
        "makespan": max(ends) - started,
        "turnaround": sum(turnaround) / len(turnaround),
        "process_seconds": meter.process_seconds,
        "peak": meter.peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=12, help="demo jobs per burst")
    parser.add_argument("--seconds", type=float, default=1.0, help="each job's duration")
    parser.add_argument("--gap", type=float, default=15.0, help="seconds between the starts of two bursts")
    parser.add_argument("--min", type=int, default=1)
    parser.add_argument("--max", type=int, default=4)
    args = parser.parse_args()
    sizes = {
        "auto": f"{args.min}:{args.max}",
        "max": str(args.max),
        "min": str(args.min),
    }
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        results = {key: run(url, Path(tmp), size, args) for key, size in sizes.items()}
    print(
        f"\nautoscale: {args.bursts} bursts of {args.jobs} demo jobs ({args.seconds:g} s each), "
        f"{args.gap:g} s apart; idle_exit {IDLE_EXIT:g} s; total cap {args.max}"
    )
    for key, size in sizes.items():
        r = results[key]
        label = f"pool {size}" if key == "auto" else f"fixed {size}"
        print(
            f"  {label:<10} makespan {r['makespan']:6.2f}s  mean turnaround {r['turnaround']:5.2f}s  "
            f"process-seconds {r['process_seconds']:6.1f}  peak processes {r['peak']:.0f}"
        )
    auto = results["auto"]
    for key in ("max", "min"):
        peer = results[key]
        print(
            f"  {sizes['auto']} vs fixed {sizes[key]}: makespan ratio {auto['makespan'] / peer['makespan']:5.2f}  "
            f"process-seconds ratio {auto['process_seconds'] / peer['process_seconds']:5.2f}"
        )
        record(
            f"autoscale: makespan of a bursty workload, pool {sizes['auto']}",
            farm=auto["makespan"],
            peer=peer["makespan"],
            peer_name=f"fixed pool of {sizes[key]}",
            unit="s",
            better="lower",
        )
        record(
            f"autoscale: mean turnaround (submit to end), pool {sizes['auto']}",
            farm=auto["turnaround"],
            peer=peer["turnaround"],
            peer_name=f"fixed pool of {sizes[key]}",
            unit="s",
            better="lower",
        )
        record(
            f"autoscale: process-seconds used, pool {sizes['auto']}",
            farm=auto["process_seconds"],
            peer=peer["process_seconds"],
            peer_name=f"fixed pool of {sizes[key]}",
            unit="s",
            better="lower",
        )


if __name__ == "__main__":
    main()
