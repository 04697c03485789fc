"""Faults with real processes: SIGKILLed workers and horses, timeouts, cancels — nothing lost,
no orphans, never two copies of a job at once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from redis import Redis

from farm import ErrorKind, Farm, JobStatus
from farm.scheduler.sweep import sweep_once
from tests.events import read_events, replay
from tests.util import wait_for, wait_workers

PLUGINS = {"tree": "tests.helpers:TreeRenderer"}


@pytest.fixture
def tree_farm(make_config, connection: Redis, redis_url: str) -> Farm:
    config = make_config(plugins=PLUGINS)
    return Farm(connection, config, url=redis_url, who="tester")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def tree_pids(pid_file: Path) -> tuple[int, int, int]:
    """(horse, child, grandchild) pids once the tree renderer has written them."""
    wait_for(
        lambda: (
            pid_file.exists()
            and pid_file.with_name(pid_file.name + ".horse").exists()
            and pid_file.read_text().strip()
        ),
        timeout=20,
        what="tree pids",
    )
    child, grandchild = map(int, pid_file.read_text().split())
    horse = int(pid_file.with_name(pid_file.name + ".horse").read_text())
    return horse, child, grandchild


def submit_tree(farm: Farm, tmp_path: Path, name: str = "t", **options) -> tuple[str, Path]:
    pid_file = tmp_path / f"{name}.pids"
    return farm.submit("tree", {"seconds": 60, "pid_file": str(pid_file)}, **options), pid_file


def test_sigkill_worker_job_back_in_line_within_30s(
    tree_farm: Farm, procs, tmp_path: Path, connection: Redis
):
    farm = tree_farm
    job_id, pid_file = submit_tree(farm, tmp_path, max_retries=2)
    procs.scheduler()
    worker = procs.worker("--processes", "1")
    horse, child, grandchild = tree_pids(pid_file)
    killed_at = time.monotonic()
    os.kill(worker.pid, signal.SIGKILL)
    wait_for(lambda: farm.get(job_id).status is JobStatus.QUEUED, timeout=30, what="job back in line")
    recovered_in = time.monotonic() - killed_at
    info = farm.get(job_id)
    assert info.error_kind is ErrorKind.WORKER_LOST and info.attempts == 1 and info.position == 1
    assert recovered_in < 30
    # The orphaned horse noticed its worker died and took its process tree down.
    wait_for(lambda: not any(alive(p) for p in (horse, child, grandchild)), timeout=5, what="tree gone")
    pid_file.unlink()
    procs.worker("--processes", "1")
    wait_for(lambda: farm.get(job_id).status is JobStatus.RUNNING, timeout=20)
    assert farm.get(job_id).attempts == 2
    assert replay(read_events(connection), total=10, caps={}).violations == []


def test_worker_and_horse_both_killed_without_retries_fail_as_worker_lost(
    tree_farm: Farm, procs, tmp_path: Path
):
    farm = tree_farm
    job_id, pid_file = submit_tree(farm, tmp_path, max_retries=0)
    procs.scheduler()
    worker = procs.worker("--processes", "1")
    horse, _child, _grandchild = tree_pids(pid_file)
    os.kill(worker.pid, signal.SIGKILL)  # worker first, so it cannot record the horse's death itself
    os.kill(horse, signal.SIGKILL)
    info = farm.wait(job_id, timeout=30)
    assert (info.status, info.error_kind) == (JobStatus.FAILED, ErrorKind.WORKER_LOST)


def test_sigkill_horse_requeues_and_cleans_its_tree(
    tree_farm: Farm, procs, tmp_path: Path, connection: Redis
):
    farm = tree_farm
    job_id, pid_file = submit_tree(farm, tmp_path, max_retries=1)
    worker = procs.worker("--processes", "1")
    horse, child, grandchild = tree_pids(pid_file)
    pid_file.unlink()
    os.kill(horse, signal.SIGKILL)
    # The worker survives, records worker_lost and puts the job back at the front; it runs again.
    new_horse, _, _ = tree_pids(pid_file)
    assert new_horse != horse
    info = farm.get(job_id)
    assert info.status is JobStatus.RUNNING and info.attempts == 2
    assert info.history[0].error_kind is ErrorKind.WORKER_LOST and "signal 9" in info.history[0].error
    wait_for(lambda: not alive(child) and not alive(grandchild), timeout=5, what="old tree gone")
    assert worker.poll() is None
    assert replay(read_events(connection), total=10, caps={}).violations == []


def test_timeout_kills_the_whole_process_tree(tree_farm: Farm, procs, tmp_path: Path):
    farm = tree_farm
    job_id, pid_file = submit_tree(farm, tmp_path, timeout=2, max_retries=0)
    procs.worker("--processes", "1")
    horse, child, grandchild = tree_pids(pid_file)
    info = farm.wait(job_id, timeout=20)
    assert (info.status, info.error_kind) == (JobStatus.FAILED, ErrorKind.TIMEOUT)
    assert "timed out after 2s" in info.error
    wait_for(lambda: not any(alive(p) for p in (horse, child, grandchild)), timeout=3, what="no survivors")


def test_cancel_running_job_kills_its_tree_within_2s(
    tree_farm: Farm, procs, tmp_path: Path, connection: Redis
):
    farm = tree_farm
    job_id, pid_file = submit_tree(farm, tmp_path)
    procs.worker("--processes", "1")
    horse, child, grandchild = tree_pids(pid_file)
    start = time.monotonic()
    info = farm.cancel(job_id)
    assert info.status is JobStatus.CANCELED and info.error_kind is ErrorKind.CANCELED
    wait_for(lambda: not any(alive(p) for p in (horse, child, grandchild)), timeout=2, what="tree gone")
    assert time.monotonic() - start < 2.5
    assert not connection.hlen("farm:slots")
    # Canceled jobs can be retried (the idle worker may already have picked it up again).
    assert farm.retry(job_id).status in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert [e.action for e in farm.audit_log()][:2] == ["retry", "cancel"]


def test_cancel_queued_and_scheduled_jobs_never_run(farm: Farm, procs, connection: Redis):
    queued = farm.submit("demo", {"duration": 0})
    scheduled = farm.submit("demo", {"duration": 0, "fail_with": "api_error"})
    from tests.util import run_burst

    farm.cancel(queued)
    run_burst(farm.config, farm.url)
    assert farm.get(scheduled).status is JobStatus.SCHEDULED
    assert farm.cancel(scheduled).status is JobStatus.CANCELED
    assert connection.zcard("rq:scheduler:scheduled_jobs") == 0
    procs.scheduler()
    time.sleep(1.5)
    starts = [e["job"] for e in read_events(connection) if e["e"] == "start"]
    assert queued not in starts and starts.count(scheduled) == 1


def test_sweep_frees_orphaned_slots_and_ends_stuck_runs(farm: Farm, config, connection: Redis):
    now = time.time()
    # A slot whose job no longer exists, held by a worker that is gone.
    connection.hset("farm:slots", "ghost", f"demo\tgone-worker\t{now - 60}\tmedium")
    # A run stuck far past its timeout on a worker that still heartbeats.
    stuck = farm.submit("demo", {"duration": 0}, timeout=5)
    connection.lrem("rq:queue:medium", 0, stuck)
    connection.hset(
        f"rq:job:{stuck}",
        mapping={"status": "started", "farm_token": "tok", "farm_attempts": 1, "worker_name": "busy-worker"},
    )
    connection.set(f"farm:owner:{stuck}", "tok")
    connection.hset("farm:slots", stuck, f"demo\tbusy-worker\t{now - 100}\tmedium")
    connection.zadd("farm:heartbeats", {"busy-worker": now})
    report = sweep_once(connection, config, now)
    assert report.freed == ["ghost"] and report.timed_out == [stuck]
    assert not connection.hlen("farm:slots")
    info = farm.get(stuck)
    assert info.status is JobStatus.SCHEDULED and info.error_kind is ErrorKind.TIMEOUT
    assert sweep_once(connection, config, now).timed_out == []  # nothing to do twice


def test_two_sweeps_recover_a_dead_workers_jobs_exactly_once(
    tree_farm: Farm, procs, tmp_path: Path, connection: Redis
):
    farm = tree_farm
    jobs = [submit_tree(farm, tmp_path, name=f"t{i}", max_retries=1) for i in range(3)]
    pool = procs.worker("--processes", "3")
    wait_workers(connection, 3)
    for _, pid_file in jobs:
        tree_pids(pid_file)
    os.killpg(pool.pid, signal.SIGKILL)  # the pool and all its workers; the horses follow
    procs.scheduler()
    procs.scheduler()
    for job_id, _ in jobs:
        wait_for(lambda j=job_id: farm.get(j).status is JobStatus.QUEUED, timeout=30)
    time.sleep(2)  # more sweeps from both schedulers: nothing may happen twice
    stops = [e for e in read_events(connection) if e["e"] == "stop"]
    assert sorted(e["job"] for e in stops) == sorted(j for j, _ in jobs)
    assert all(farm.get(j).attempts == 1 for j, _ in jobs)
