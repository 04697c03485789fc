"""Someone with Redis access writes garbage: the farm keeps serving, and fails what it cannot read.

Each stored field is corrupted in turn on a queued job; workers and the scheduler (real
processes) must stay up, a normal job must still finish, and the corrupt job must end failed
with ``invalid_input`` and an error naming the field. The readers behind the API, the CLI and the
TUI snapshot must not raise on any of it either.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from redis import Redis

from farm import ErrorKind, Farm, JobStatus
from farm.live.snapshot import take_snapshot
from farm.scheduler.sweep import sweep_once
from tests.util import wait_for, wait_workers

CORRUPTIONS = [
    ("farm_attempts", "abc"),
    ("farm_max_retries", "[]"),
    ("farm_history", "5"),
    ("farm_submitted", "yesterday"),
    ("timeout", "soon"),
    ("farm_renderer", "demo\tevil"),
    ("farm_retry_base", "-3"),
    ("farm_result", "{not json"),
    ("farm_error_kind", "catastrophe"),
    ("farm_priority", "urgent"),
    ("farm_job_type", "doubt\n"),
    ("enqueued_at", "the other day"),
    ("created_at", "not a date"),
    ("result_ttl", "forever"),
]
# Fields the dispatch rewrites when the job starts: a corrupt value there harms only the readers
# (which must show the job anyway), and the job may run normally.
REWRITTEN_AT_START = [
    ("farm_progress", "half"),
    ("farm_line", "first"),
    ("farm_retry_at", "nan"),
    ("farm_stage", "\x1b[2J"),
]


@pytest.fixture
def live_farm(farm: Farm, procs, connection: Redis) -> Farm:
    procs.scheduler()
    procs.worker("--processes", "2")
    wait_workers(connection, 2)
    return farm


def corrupt_queued(farm: Farm, connection: Redis, field: str, value: str) -> str:
    farm.pause("medium")
    job_id = farm.submit("demo", {"duration": 0})
    connection.hset(f"rq:job:{job_id}", field, value)
    # While it waits, every reader shows it.
    assert farm.get(job_id).id == job_id
    assert job_id in [i.id for i in farm.list(limit=20)]
    assert job_id in [r.id for r in take_snapshot(connection, farm.config).rows]
    farm.resume("medium")
    return job_id


def test_each_corrupt_field_fails_its_job_and_the_farm_keeps_serving(
    live_farm: Farm, connection: Redis, procs
):
    farm = live_farm
    wrong = {}
    for field, value in CORRUPTIONS:
        job_id = corrupt_queued(farm, connection, field, value)
        info = farm.wait(job_id, timeout=20)
        ok = info.status is JobStatus.FAILED and info.error_kind is ErrorKind.INVALID_INPUT
        if not (ok and info.error and "corrupt job record" in info.error and field in info.error):
            wrong[field] = (info.status.value, info.error)
        # ...and the next normal job still runs.
        assert farm.wait(farm.submit("demo", {"duration": 0}), timeout=20).status is JobStatus.FINISHED
    assert wrong == {}
    for field, value in REWRITTEN_AT_START:
        info = farm.wait(corrupt_queued(farm, connection, field, value), timeout=20)
        assert info.status is JobStatus.FINISHED or field in (info.error or ""), (field, info)
    assert all(p.poll() is None for p in procs.procs), "a farm process died"
    logs = procs.logs()
    assert "quitting" not in logs and "Traceback" not in logs
    assert not connection.hlen("farm:slots")


def test_a_corrupt_retry_is_failed_by_the_scheduler(live_farm: Farm, connection: Redis):
    farm = live_farm
    job_id = farm.submit("demo", {"duration": 0, "fail_with": "api_error"}, max_retries=3)
    wait_for(lambda: farm.get(job_id).status is JobStatus.SCHEDULED, timeout=20, what="retry scheduled")
    connection.hset(f"rq:job:{job_id}", "farm_attempts", "many")
    info = farm.wait(job_id, timeout=20)
    assert info.status is JobStatus.FAILED and "corrupt job record: farm_attempts" in (info.error or "")
    assert farm.wait(farm.submit("demo", {"duration": 0}), timeout=20).status is JobStatus.FINISHED


def test_corrupt_farm_structures_do_not_stop_dispatch_or_the_readers(
    live_farm: Farm, connection: Redis, procs, tmp_path
):
    farm = live_farm
    connection.hset("farm:caps", "total", "lots")  # read as the default total
    connection.hset("farm:caps", "windows", "1-2-x,9999-1-1.5,nonsense")
    connection.hset("farm:slots", "ghost", "garbage")  # no job, no tabs, no time
    connection.hset("farm:slots", "ghost2", "demo\tw\tnot-a-time\tlow")
    connection.hset(f"farm:stats:{int(time.time() // 60)}", "finished", "several")
    connection.lpush("farm:audit", b"\xff\xfe not json")
    connection.zadd("farm:heartbeats", {b"\xff\xfeweird": time.time()})
    connection.sadd("farm:held_renderers", "bad\trenderer")
    connection.set("farm:scheduler:heartbeat", "soon")
    assert farm.wait(farm.submit("demo", {"duration": 0}), timeout=20).status is JobStatus.FINISHED
    # Every reader keeps working on the corrupt data.
    farm.stats()
    farm.caps()
    farm.list(limit=50)
    farm.list(status="running")
    farm.workers()
    farm.audit_log()
    take_snapshot(connection, farm.config)
    sweep_once(connection, farm.config, time.time() + 60)
    assert not connection.hexists("farm:slots", "ghost")
    # A corrupt job shows up in listings with defaults, not a traceback.
    bad = corrupt_queued(farm, connection, "farm_progress", "half")
    farm.wait(bad, timeout=20)
    for args in (["ls"], ["show", bad], ["stats"], ["caps"]):
        done = subprocess.run(
            [sys.executable, "-m", "farm", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert all(p.poll() is None for p in procs.procs)


def test_a_running_job_whose_record_is_corrupted_is_failed_when_its_worker_dies(
    farm: Farm, connection: Redis, procs
):
    procs.scheduler()
    worker = procs.worker("--processes", "1")
    job_id = farm.submit("demo", {"duration": 30}, max_retries=3)
    wait_for(lambda: farm.get(job_id).status is JobStatus.RUNNING, timeout=20)
    connection.hset(f"rq:job:{job_id}", "farm_history", "[[[")
    procs.stop_all()  # the worker and its horse die; the scheduler too
    procs.procs.clear()
    procs.scheduler()
    del worker
    info = farm.wait(job_id, timeout=30)
    assert info.status is JobStatus.FAILED
    assert info.error == "corrupt job record: farm_history"
