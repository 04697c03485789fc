"""Races and stalls: cancels at the instant a job starts, runs taken over while their worker
stalled, lost dispatch replies, cancels noticed by the renderer itself, odd text in results."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from pathlib import Path

from redis import Redis

from farm import ErrorKind, Farm, JobStatus, endings
from farm.scripts import Idle, Taken, scripts_for
from farm.timeutil import local_minute_of_day, rq_time
from tests.test_recovery import PLUGINS, alive, submit_tree, tree_pids
from tests.util import wait_for, wait_workers


def take(connection: Redis, worker: str = "fake-worker", token: str | None = None) -> Taken | Idle:
    """Run the dispatch script as a worker would (without a worker)."""
    return scripts_for(connection).dispatch(
        worker=worker,
        token=token or uuid.uuid4().hex,
        minute_of_day=local_minute_of_day(),
        started_at=rq_time(),
        default_total=10,
        hold_budget=500,
        lease=5,
        failed_ttl=3600,
    )


def test_cancels_racing_job_starts_never_hurt_the_worker(farm: Farm, procs, connection: Redis):
    worker = procs.worker("--processes", "1")
    wait_workers(connection, 1)
    rng = random.Random(3)
    ids = []
    for _ in range(25):
        job_id = farm.submit("demo", {"duration": 1, "stages": 2})
        time.sleep(rng.uniform(0, 0.01))
        farm.cancel(job_id)
        ids.append(job_id)
    assert worker.poll() is None, "the worker died"
    for job_id in ids:
        assert farm.wait(job_id, timeout=20).status in (JobStatus.CANCELED, JobStatus.FINISHED)
    assert not connection.hlen("farm:slots")


def test_a_run_taken_over_elsewhere_is_killed_on_its_worker(
    make_config, connection: Redis, redis_url: str, procs, tmp_path: Path
):
    farm = Farm(connection, make_config(plugins=PLUGINS), url=redis_url)
    job_id, pid_file = submit_tree(farm, tmp_path)
    worker = procs.worker("--processes", "1")
    horse, child, grandchild = tree_pids(pid_file)
    # What the sweep does when it wrongly judges a stalled worker dead: it ends the run.
    run = endings.Run.from_hash(job_id, connection.hgetall(f"rq:job:{job_id}"))
    assert endings.fail(connection, farm.config, run, ErrorKind.WORKER_LOST, "judged dead") is not None
    wait_for(lambda: not any(alive(p) for p in (horse, child, grandchild)), timeout=3, what="old run killed")
    assert worker.poll() is None
    # The job was put back in line and runs again, once.
    wait_for(
        lambda: farm.get(job_id).attempts == 2 and farm.get(job_id).status is JobStatus.RUNNING, timeout=20
    )


def test_dispatch_is_idempotent_per_token(farm: Farm, connection: Redis):
    farm.submit_many([{"renderer": "demo", "params": {}} for _ in range(3)])
    first = take(connection, token="same-token")
    again = take(connection, token="same-token")
    assert isinstance(first, Taken) and isinstance(again, Taken) and first.job_id == again.job_id
    assert connection.hlen("farm:slots") == 1
    assert connection.llen("rq:queue:medium") == 2


def test_idle_worker_requeues_slots_it_still_holds(farm: Farm, procs, connection: Redis):
    job_id = farm.submit("demo", {"duration": 0})
    procs.worker("--processes", "1", "--name", "w")
    wait_for(lambda: farm.get(job_id).status is JobStatus.FINISHED, timeout=20)
    # A dispatch whose reply was lost: the slot names this (idle) worker, the job looks started.
    farm.pause("low")  # keep the idle worker from taking it before the "lost dispatch" does
    orphan = farm.submit("demo", {"duration": 0}, priority="low")
    connection.lrem("rq:queue:low", 0, orphan)
    connection.hset(
        f"rq:job:{orphan}", mapping={"status": "started", "farm_token": "lost", "worker_name": "w"}
    )
    connection.set(f"farm:owner:{orphan}", "lost")
    connection.hset("farm:slots", orphan, f"demo\tw\t{time.time()}\tlow")
    farm.resume("low")
    wait_for(
        lambda: farm.get(orphan).status is JobStatus.FINISHED, timeout=20, what="orphan requeued and run"
    )


def test_cancel_noticed_by_the_renderer_ends_canceled_not_failed(farm: Farm, connection: Redis):
    job_id = farm.submit("demo", {}, max_retries=3)
    take(connection)
    run = endings.Run.from_hash(job_id, connection.hgetall(f"rq:job:{job_id}"))
    assert endings.fail(connection, farm.config, run, ErrorKind.CANCELED, "canceled") is not None
    assert farm.get(job_id).status is JobStatus.CANCELED


def test_pending_cancel_is_never_turned_into_a_retry_or_requeue(farm: Farm, connection: Redis):
    for end in ("fail", "requeue"):
        job_id = farm.submit("demo", {}, max_retries=3)
        take(connection)
        connection.hset(f"rq:job:{job_id}", "farm_cancel", "tester")
        run = endings.Run.from_hash(job_id, connection.hgetall(f"rq:job:{job_id}"))
        if end == "fail":
            endings.fail(connection, farm.config, run, ErrorKind.API_ERROR, "HTTP 503")
        else:
            endings.requeue(connection, farm.config, run)
        info = farm.get(job_id)
        assert (info.status, info.error_kind) == (JobStatus.CANCELED, ErrorKind.CANCELED), end


def test_results_with_undecodable_text_are_stored(farm: Farm, connection: Redis):
    job_id = farm.submit("demo", {})
    take(connection)
    run = endings.Run.from_hash(job_id, connection.hgetall(f"rq:job:{job_id}"))
    name = os.fsdecode(b"clip-\xff.mp4")  # a non-UTF-8 file name, as os.listdir returns it
    assert endings.finish(connection, farm.config, run, {"outputs": [name]})
    info = farm.get(job_id)
    assert info.status is JobStatus.FINISHED and info.result["outputs"][0].startswith("clip-")


def test_farm_up_restarts_a_dead_worker_pool(tmp_path: Path, monkeypatch):
    import subprocess
    import sys

    from tests.test_embedded import redis_processes

    data = Path("/tmp") / f"farm-up-{os.getpid()}-{time.monotonic_ns()}"
    config = tmp_path / "farm.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{data}"\n[scheduler]\nworker_timeout = 3.0\n'
        "[worker]\nheartbeat_interval = 0.5\n"
    )
    monkeypatch.setenv("FARM_CONFIG", str(config))
    monkeypatch.delenv("FARM_REDIS_URL", raising=False)
    up = subprocess.Popen(
        [sys.executable, "-m", "farm", "up", "--no-tui", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        farm = wait_for(lambda: _connect(), timeout=30, what="farm up")
        wait_for(lambda: farm.stats().workers == 1, timeout=30)
        pool = _child_running(up.pid, "worker")
        os.kill(pool, signal.SIGKILL)
        wait_for(lambda: _child_running(up.pid, "worker") not in (None, pool), timeout=15, what="restart")
        job_id = farm.submit("demo", {"duration": 0})
        assert farm.wait(job_id, timeout=30).status is JobStatus.FINISHED
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=60)
        for pid in redis_processes(data / "redis.sock"):
            os.kill(pid, signal.SIGKILL)


def _connect() -> Farm | None:
    from farm import FarmUnavailableError

    try:
        return Farm.connect()
    except FarmUnavailableError:
        return None


def _child_running(parent: int, word: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and word.encode() in cmd:
            return int(entry.name)
    return None
