"""Runs every benchmark in bench/ (each as a subprocess) and writes BENCHMARKS.md at the repo root:
each figure beside its peer measured in the same run (plain RQ; Celery for submit and dispatch),
the ratio, the SPEC §11 target and whether it is met, the machine, and each benchmark's output.

Chaos runs 8 rounds by default (one of each fault kind); ``--full`` runs 50.
Exit status: 1 if any benchmark exited non-zero (chaos does when an invariant fails), else 0;
BENCHMARKS.md is written either way.
Run: .venv/bin/python bench/report.py [--full] [--only submit,dispatch] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOT_BENCHMARKS = {"__init__", "common", "noop", "celery_peer", "report"}
ORDER = [
    "submit",
    "dispatch",
    "utilization",
    "autoscale",
    "latency",
    "pipeline",
    "cache",
    "recovery",
    "ui",
    "metrics",
    "transfer",
    "chaos",
]


@dataclass
class Outcome:
    name: str
    argv: list[str]
    code: int = 0
    seconds: float = 0.0
    output: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)


def benchmarks() -> list[str]:
    found = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in NOT_BENCHMARKS)
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def run(name: str, args: list[str]) -> Outcome:
    outcome = Outcome(name, [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args])
    with tempfile.NamedTemporaryFile(prefix=f"farm-bench-{name}-", suffix=".jsonl", delete=False) as tmp:
        sink = Path(tmp.name)
    print(f"== {name} {' '.join(args)}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(
        outcome.argv,
        cwd=ROOT,
        env={**os.environ, "FARM_BENCH_JSON": str(sink)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    outcome.seconds = time.monotonic() - started
    outcome.code = proc.returncode
    outcome.output = proc.stdout
    print(proc.stdout, flush=True)
    outcome.records = [json.loads(line) for line in sink.read_text().splitlines() if line.strip()]
    sink.unlink()
    return outcome


# -- the machine ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    from farm.cli.embedded import redis_binary

    redis = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"v=(\S+)", redis)

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    label = os.environ.get(
        "FARM_BENCH_COMMIT"
    )  # when run from an exported tree (git archive), not a checkout
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "farm", "renderers"], cwd=ROOT, capture_output=True, text=True
    )
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Redis": match.group(1) if match else redis.strip(),
        "rq": version("rq"),
        "celery": version("celery"),
        "commit": label
        or commit.stdout.strip() + (" (farm/ or renderers/ modified)" if dirty.stdout.strip() else ""),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load average at start": Path("/proc/loadavg").read_text().split()[0],
    }


# -- writing BENCHMARKS.md -----------------------------------------------------------------------


def number(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,} {unit}".strip()
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def verdict(ok: Any) -> str:
    return "-" if ok is None else ("ok" if ok else "**misses**")


def figures_table(outcomes: list[Outcome]) -> list[str]:
    lines = [
        "| figure | farm | peer (same run) | peer value | farm / peer | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        for rec in outcome.records:
            if rec["figure"].startswith("chaos:"):
                continue
            farm, peer, unit = rec.get("farm"), rec.get("peer"), rec.get("unit", "")
            ratio = "-"
            if isinstance(farm, (int, float)) and isinstance(peer, (int, float)) and peer:
                share = farm / peer
                ratio = f"{share:.2f}" if share >= 0.01 else f"1/{peer / farm:,.0f}" if farm else "0"
                ratio += " (lower is better)" if rec.get("better") == "lower" else ""
            lines.append(
                f"| {rec['figure']} | {number(farm, unit)} | {rec.get('peer_name', '-')} | "
                f"{number(peer, unit)} | {ratio} | {rec.get('target') or '-'} | {verdict(rec.get('ok'))} |"
            )
    return lines


def chaos_table(outcome: Outcome) -> list[str]:
    lines = ["| invariant / figure | value | target | verdict |", "|---|---|---|---|"]
    for rec in outcome.records:
        label = rec["figure"].removeprefix("chaos: ")
        lines.append(f"| {label} | {rec['value']} | {rec['target']} | {verdict(rec.get('ok'))} |")
    return lines


def misses(outcomes: list[Outcome]) -> list[str]:
    out = []
    for outcome in outcomes:
        if outcome.code != 0:
            out.append(f"- `{outcome.name}` exited with {outcome.code} (see its output below).")
        for rec in outcome.records:
            if rec.get("ok") is False:
                value = rec.get("value") if "value" in rec else number(rec.get("farm"), rec.get("unit", ""))
                out.append(f"- {rec['figure']}: {value} (target {rec.get('target')}).")
    return out


def write(path: Path, outcomes: list[Outcome], info: dict[str, str], chaos_rounds: int) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/report.py` (`make bench`). Every figure is measured beside its peer in the same",
        "run on the same private redis-server; ratios matter, absolute numbers depend on the machine",
        "(this one is shared with other work, so expect some noise between runs). Targets are SPEC §11's.",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "## Figures",
        "",
        *figures_table(outcomes),
        "",
    ]
    chaos = next((o for o in outcomes if o.name == "chaos"), None)
    if chaos is not None:
        lines += [
            f"## Chaos ({chaos_rounds} rounds)",
            "",
            "Real faults under a steady submit load (see `bench/chaos.py`): SIGKILL of a worker, a work",
            "horse, the scheduler, a pool's parent; SIGSTOP of a worker, and of a worker with its horse's",
            "tree; kill -9 of Redis (AOF on); a partition of a second worker pool behind a frozen TCP proxy.",
            "Overlaps and cap violations come from the probe renderer's own record of every execution,",
            "independent of Redis; lost ids from Redis and `farm:events`.",
            "",
            *chaos_table(chaos),
            "",
        ]
    missed = misses(outcomes)
    lines += (
        ["## What misses its target", ""] + (missed or ["Nothing: every figure meets its target."]) + [""]
    )
    lines += ["## Output of each benchmark", ""]
    for outcome in outcomes:
        shown = " ".join(Path(a).name if a.endswith(".py") else a for a in outcome.argv[1:])
        lines += [
            f"<details><summary><code>{shown}</code> — {outcome.seconds:.0f} s, exit {outcome.code}</summary>",
            "",
            "```",
            outcome.output.strip(),
            "```",
            "",
            "</details>",
            "",
        ]
    lines += [
        "## Rerun",
        "",
        "```sh",
        "make bench                                   # installs the bench extra (Celery), then this report",
        ".venv/bin/python bench/report.py --full      # chaos with 50 rounds",
        ".venv/bin/python bench/chaos.py --rounds 50  # any benchmark alone",
        "```",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="chaos with 50 rounds (default 8)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    chaos_rounds = 50 if args.full else 8
    extra = {"chaos": ["--rounds", str(chaos_rounds)]}
    names = benchmarks()
    if args.only:
        wanted = args.only.split(",")
        names = [n for n in names if n in wanted]
    info = machine()
    outcomes = [run(name, extra.get(name, [])) for name in names]
    info["at end"] = Path("/proc/loadavg").read_text().split()[0]  # other work on the box shows here
    write(Path(args.out), outcomes, info, chaos_rounds)
    print(f"wrote {args.out}")
    sys.exit(1 if any(o.code != 0 for o in outcomes) else 0)


if __name__ == "__main__":
    main()
