"""What `[redis] appendfsync = "always"` costs the submit path, against the default "everysec".

Two embedded Redis servers as `farm up` starts them (AOF on, the restricted default user), one per
policy, each in its own data dir on the same filesystem; the farm's submit path (a `Farm.submit`
loop and `submit_many`, as in bench/submit.py) runs against both in the same run, in alternating
rounds. Prints jobs/s for each and the ratio always/everysec; asserts nothing about times.
"always" fsyncs the AOF before Redis answers a write, so its cost is the disk's fsync latency:
run it with --dir on the disk that holds the farm's data dir (on tmpfs it measures nothing).
Run: .venv/bin/python bench/appendfsync.py [--jobs 1000] [--rounds 5] [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis  # noqa: E402

from bench.common import bench_config, rate  # noqa: E402
from farm import Farm  # noqa: E402
from farm.cli.embedded import EmbeddedRedis  # noqa: E402

PARAMS = {"duration": 0, "stages": 1}
POLICIES = ("everysec", "always")


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (the longest matching mount point)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


class Target:
    """One embedded server with one AOF policy, and a farm client on it."""

    def __init__(self, policy: str, root: Path) -> None:
        data = root / policy
        config = bench_config("", data, redis={"appendfsync": policy})
        self.server = EmbeddedRedis(config)
        self.server.start()
        self.admin = Redis.from_url(self.server.admin_url)  # flushes between rounds
        if self.admin.config_get("appendfsync") != {"appendfsync": policy}:
            sys.exit(f"the {policy} server runs with {self.admin.config_get('appendfsync')}")
        connection = Redis.from_url(self.server.url)  # the restricted default user, as workers use it
        self.farm = Farm(connection, config, url=self.server.url)

    def loop(self, n: int) -> float:
        self.admin.flushall()
        start = time.perf_counter()
        for _ in range(n):
            self.farm.submit("demo", PARAMS)
        return rate(n, time.perf_counter() - start)

    def many(self, n: int) -> float:
        self.admin.flushall()
        start = time.perf_counter()
        self.farm.submit_many([{"renderer": "demo", "params": PARAMS} for _ in range(n)])
        return rate(n, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where the data dirs go (default: $TMPDIR)")
    args = parser.parse_args()
    n = args.jobs
    # Short: each data dir holds a unix socket, whose path must stay under ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="fsync-", dir=args.dir))
    targets: dict[str, Target] = {}
    try:
        for policy in POLICIES:
            targets[policy] = Target(policy, root)
        for target in targets.values():  # warm up both: scripts loaded, AOF file opened
            target.loop(min(n, 200))
        results: dict[str, dict[str, list[float]]] = {p: {"loop": [], "many": []} for p in POLICIES}
        for _ in range(args.rounds):  # alternate so drift in the machine hits both alike
            for policy, target in targets.items():
                results[policy]["loop"].append(target.loop(n))
                results[policy]["many"].append(target.many(n))
    finally:
        for target in targets.values():
            target.server.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nAOF appendfsync cost on the submit path, jobs/s ({n} jobs, median of {args.rounds} rounds)")
    print(f"  data dirs on {filesystem(root)} ({root.parent}); {os.cpu_count()} cores")
    for label, key in (("Farm.submit loop", "loop"), ("Farm.submit_many", "many")):
        everysec = statistics.median(results["everysec"][key])
        always = statistics.median(results["always"][key])
        ratio = always / everysec if everysec else float("inf")
        print(f"  {label:<18} everysec {everysec:9.1f}   always {always:9.1f}   always/everysec {ratio:5.2f}")


if __name__ == "__main__":
    main()
