"""Shared by the benchmarks: a private redis-server, a farm config, and timing helpers.

Benchmarks compare the farm with its peer (plain RQ) in the same run on the same Redis and print
ratios; they assert nothing about absolute times.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from farm.cli.embedded import start_scratch_server
from farm.config import FarmConfig, parse_config


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a unix socket; yields its URL."""
    proc, url = start_scratch_server(Path(tempfile.mkdtemp(prefix="farm-bench-")))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait()


def bench_config(url: str, tmp: Path | None = None, **sections: Any) -> FarmConfig:
    tmp = tmp or Path(tempfile.mkdtemp(prefix="farm-bench-data-"))
    data: dict[str, Any] = {
        "redis": {"url": url},
        "paths": {"data_dir": str(tmp)},
        "caps": {"windows": []},
        "scheduler": {"worker_timeout": 5.0},
        "worker": {"heartbeat_interval": 1.0},
    }
    for name, body in sections.items():
        data[name] = {**data.get(name, {}), **body}
    return parse_config(data)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def median_rate(run: Callable[[], float], rounds: int) -> float:
    return statistics.median(run() for _ in range(rounds))


def report(title: str, rows: list[tuple[str, float, float]], target: float | None = None) -> None:
    """rows: (label, farm value, plain RQ's value); higher is better."""
    report_peers(title, [(label, ours, {"plain RQ": peer}) for label, ours, peer in rows], target)


def report_peers(
    title: str,
    rows: list[tuple[str, float, dict[str, float | None]]],
    target: float | None = None,
    unit: str = "jobs/s",
) -> None:
    """rows: (label, farm value, {peer name: value}); higher is better. The target applies to the
    first peer (the one SPEC §11 names); the others are shown for context."""
    print(f"\n{title}")
    for label, ours, peers in rows:
        print(f"  {label}: farm {ours:10.1f}")
        for index, (name, peer) in enumerate(peers.items()):
            if peer is None:
                print(f"    vs {name:<32} (not measured)")
                continue
            ratio = ours / peer if peer else float("inf")
            verdict = ""
            if target is not None and index == 0:
                verdict = "  ok" if ratio >= target else f"  BELOW target {target}"
            print(f"    vs {name:<32} {peer:10.1f}   ratio {ratio:5.2f}{verdict}")
            record(
                f"{title.split(',')[0]}: {label}",
                farm=ours,
                peer=peer,
                peer_name=name,
                unit=unit,
                target=f"ratio >= {target:g}" if target is not None and index == 0 else None,
                ok=ratio >= target if target is not None and index == 0 else None,
                better="higher",
            )


def record(figure: str, **values: Any) -> None:
    """Append one figure as a JSON line to ``$FARM_BENCH_JSON`` (set by bench/report.py)."""
    path = os.environ.get("FARM_BENCH_JSON")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"figure": figure, **values}) + "\n")


ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def rq_burst(url: str, command: str, queues: list[str], *options: str) -> None:
    """Plain RQ's CLI in burst mode with the JSON serializer: ``rq_burst(url, "worker-pool",
    ["default"], "-n", "2")`` runs until those queues are empty."""
    argv = [
        str(BIN / "rq"),
        command,
        *options,
        "--burst",
        "-u",
        url,
        "--serializer",
        "rq.serializers.JSONSerializer",
    ]
    subprocess.run(
        [*argv, *queues],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def farm_command(*args: str) -> list[str]:
    """argv of ``farm ARGS`` running this tree's farm (the ``farm`` console script would import
    the installed one, which is another tree when the benchmarks run from an exported copy)."""
    return [sys.executable, "-m", "farm", *args]


def farm_env(config: Path) -> dict[str, str]:
    return {**os.environ, "FARM_CONFIG": str(config), "PYTHONPATH": str(ROOT)}


def farm_burst(config: Path, processes: int) -> None:
    """``farm worker --processes N --burst`` with the given config file."""
    subprocess.run(
        farm_command("worker", "--processes", str(processes), "--burst"),
        check=True,
        cwd=ROOT,
        env=farm_env(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
