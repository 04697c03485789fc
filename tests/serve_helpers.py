"""Helpers for the ``farm serve`` tests: a real server (uvicorn in a thread, or ``python -m
farm.serve`` in a subprocess) on a free port against the session's Redis, and jobs as the farm
would leave them in Redis (owned by a run, finished by one)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis import Redis

from farm import keys
from farm.config import FarmConfig
from farm.files import store, transfer
from farm.files.token import read_token
from farm.serve import server
from tests.util import wait_for


@dataclass
class Serving:
    url: str
    token: str
    config: FarmConfig

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def raw(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> int:
        """Send ``path`` exactly as written (no client normalizing ``..``); returns the status."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for key, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
                conn.putheader(key, value)
            conn.endheaders(body)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


@contextlib.contextmanager
def running_server(config: FarmConfig, connection: Redis) -> Iterator[Serving]:
    """``run_server`` in a thread on a free port until the block ends."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run_server(config, port=0, stop=stop)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="farm-serve-test")
    thread.start()
    url = wait_for(lambda: errors or transfer.serve_url(connection), timeout=15, what="farm serve to publish")
    if errors:
        raise errors[0]
    try:
        yield Serving(str(url), read_token(config), config)
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "farm serve did not stop"


@contextlib.contextmanager
def server_process(
    config_path: Path, connection: Redis, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``python -m farm.serve`` on a free port; SIGKILLed at the end if still running."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "farm.serve", "--config", str(config_path), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != "FARM_TOKEN"},
        )
    try:
        url = wait_for(
            lambda: proc.poll() is not None or transfer.serve_url(connection), timeout=30, what="farm serve"
        )
        assert proc.poll() is None, log.read_text()
        yield proc, str(url)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def write_file(path: Path, size: int, seed: int = 0) -> str:
    """A file of ``size`` pseudo-random bytes (written in chunks); returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * (1024 * 1024 // 32)
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = block[: min(left, len(block))]
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def make_job(connection: Redis, job_id: str, **fields: Any) -> None:
    """A job hash with these fields (dicts and lists stored as JSON, as the farm does)."""
    mapping = {"status": "queued", keys.F_RENDERER: "demo"}
    mapping.update({k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in fields.items()})
    connection.hset(keys.job(job_id), mapping=mapping)


def own(connection: Redis, job_id: str, run_token: str) -> None:
    """The run ``run_token`` owns the job (it is rendering it)."""
    connection.set(keys.owner(job_id), run_token)
    connection.hset(keys.job(job_id), "status", "started")


def finish(connection: Redis, job_id: str, run_token: str, result: dict[str, Any]) -> None:
    """The run's end is recorded as the job's (it won), as the horse's ending leaves it."""
    connection.delete(keys.owner(job_id))
    connection.hset(
        keys.job(job_id),
        mapping={"status": "finished", keys.F_ENDED_BY: run_token, keys.F_RESULT: json.dumps(result)},
    )


def remote_result(
    staging: Path, job_id: str, names: list[str], elsewhere: str = "/elsewhere/out"
) -> dict[str, Any]:
    """The result a worker on another box records: its own paths, the files' checksums."""
    files = store.describe(staging, names)
    return {
        "outputs": [f"{elsewhere}/{job_id}/{name}" for name in names],
        "output_dir": f"{elsewhere}/{job_id}",
        "files": files,
        "sizes": {f["name"]: f["size"] for f in files},
        "renderer_note": "kept as is",
    }
