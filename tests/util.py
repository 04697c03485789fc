"""Small helpers shared by the test tiers (no fixtures here: see conftest.py): waiting on conditions,
required tools, config files, and in-process burst workers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis import Redis

from farm.config import FarmConfig

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of an executable; skip the test without it, except in CI where a skip is a failure."""
    found = shutil.which(name)
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but is not on PATH")
        pytest.skip(f"{name} not installed")
    return found


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


FAST_CONFIG: dict[str, Any] = {
    "retry": {"base_delay": 1.0, "max_delay": 4.0, "jitter": 0.0},
    "scheduler": {"interval": 0.2, "sweep_interval": 1.0, "worker_timeout": 3.0},
    "worker": {"heartbeat_interval": 0.5, "cancel_poll": 0.1, "shutdown_grace": 2.0},
    "caps": {"windows": []},
}


def write_toml(path: Path, data: dict[str, Any]) -> None:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + "}"
        raise TypeError(v)

    lines = []
    for section, body in data.items():
        if isinstance(body, dict):
            lines.append(f"[{section}]")
            lines.extend(f'"{k}" = {value(v)}' for k, v in body.items())
        else:
            lines.insert(0, f"{section} = {value(body)}")
    path.write_text("\n".join(lines) + "\n")


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def run_burst(config: FarmConfig, redis_url: str, name: str | None = None) -> None:
    """One in-process burst worker: runs until nothing is left that could start."""
    from farm import caps
    from farm.connection import connect_redis
    from farm.worker.worker import FarmWorker

    connection = connect_redis(redis_url, config)
    caps.seed(connection, config)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        FarmWorker(connection=connection, config=config, name=name).work(burst=True, logging_level="WARNING")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        connection.close()


def wait_workers(connection: Redis, count: int, timeout: float = 15.0) -> None:
    wait_for(lambda: connection.zcard("farm:heartbeats") >= count, timeout, what=f"{count} workers")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
