"""Signals to workers never lose a job; an unreachable Redis fails fast with a clear error."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from redis import Redis

from farm import Farm, FarmUnavailableError, JobStatus
from tests.util import wait_for


def _running(farm: Farm, job_id: str) -> bool:
    return farm.get(job_id).status is JobStatus.RUNNING


def test_sigterm_lets_a_short_job_finish(farm: Farm, procs, connection: Redis):
    job_id = farm.submit("demo", {"duration": 1.0, "stages": 2})
    worker = procs.worker()
    wait_for(lambda: _running(farm, job_id), timeout=20)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    info = farm.get(job_id)
    assert info.status is JobStatus.FINISHED and info.attempts == 1


def test_sigterm_requeues_a_long_job_after_the_grace(farm: Farm, procs, connection: Redis):
    job_id = farm.submit("demo", {"duration": 30, "stages": 30})
    worker = procs.worker()
    wait_for(lambda: _running(farm, job_id), timeout=20)
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert time.monotonic() - started < 10  # grace is 2 s in the test config
    info = farm.get(job_id)
    assert info.status is JobStatus.QUEUED and info.attempts == 0 and info.position == 1
    assert not connection.hlen("farm:slots")
    procs.worker()
    wait_for(lambda: _running(farm, job_id), timeout=20)  # and it runs again


def test_second_signal_requeues_at_once(farm: Farm, procs, connection: Redis):
    job_id = farm.submit("demo", {"duration": 30, "stages": 30})
    worker = procs.worker()
    wait_for(lambda: _running(farm, job_id), timeout=20)
    worker.send_signal(signal.SIGTERM)
    time.sleep(1.2)  # RQ ignores a second signal within 1 s (pool + terminal both send one)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert farm.get(job_id).status is JobStatus.QUEUED


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "url",
    [
        f"redis://127.0.0.1:{_closed_port()}/0",
        "unix:///nonexistent/redis.sock",
        "redis://10.255.255.1:6379/0",  # unroutable: exercises the connect timeout
    ],
)
def test_unreachable_redis_raises_within_3s(url, config):
    start = time.monotonic()
    with pytest.raises(FarmUnavailableError) as err:
        Farm.connect(url, config=config)
    assert time.monotonic() - start < 3
    assert "\n" not in str(err.value)


def test_cli_exit_code_4_when_unavailable(config):
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "farm", "stats"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "FARM_REDIS_URL": url},
        timeout=30,
    )
    assert out.returncode == 4
    assert out.stderr.startswith("farm: error: cannot reach Redis") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr
    assert time.monotonic() - start < 6
