"""Workers end to end with a real Redis: order, results, progress, wait, retry, refusing foreign jobs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from farm import ErrorKind, Farm, InvalidTransitionError, JobNotFoundError, JobStatus
from tests.util import run_burst, wait_for, wait_workers


def test_priority_then_fifo(farm: Farm, config, redis_url):
    plan = ["low", "medium", "high", "low", "high", "medium", "high", "low"]
    ids = [farm.submit("demo", {"duration": 0}, priority=p, name=f"{p}-{i}") for i, p in enumerate(plan)]
    run_burst(config, redis_url)
    infos = [farm.get(i) for i in ids]
    assert all(i.status is JobStatus.FINISHED for i in infos)
    started = [i.name for i in sorted(infos, key=lambda i: i.started_at)]
    rank = {"high": 0, "medium": 1, "low": 2}
    expected = [i.name for i in sorted(infos, key=lambda i: (rank[i.priority.value], ids.index(i.id)))]
    assert started == expected


def test_job_runs_to_finished_with_result_progress_and_log(farm: Farm, procs, connection: Redis):
    job_id = farm.submit("demo", {"duration": 1.2, "stages": 4}, name="intro")
    procs.worker()
    seen: set[float] = set()

    def running_progress():
        info = farm.get(job_id)
        if info.status is JobStatus.RUNNING:
            seen.add(info.progress)
            assert info.eta is not None and info.worker
        return info.status.terminal

    wait_for(running_progress, timeout=20, interval=0.05)
    info = farm.get(job_id)
    assert info.status is JobStatus.FINISHED, info
    assert info.progress == 100 and info.stage == "done"
    assert info.result == {"outputs": [], "duration": 1.2, "stages": 4}
    assert info.attempts == 1 and len(info.history) == 1 and info.history[0].error_kind is None
    assert any(0 < p < 100 for p in seen), seen
    log = [line.decode() for line in connection.lrange(f"farm:log:{job_id}", 0, -1)]
    assert log == [
        f"stage {i}/4: {n}" for i, n in zip(range(1, 5), ["prepare", "layout", "animate", "encode"])
    ]
    assert connection.ttl(f"rq:job:{job_id}") > 0
    assert not connection.hlen("farm:slots")


def test_wait_returns_terminal_info_or_times_out(farm: Farm, procs):
    job_id = farm.submit("demo", {"duration": 0.5})
    with pytest.raises(TimeoutError):
        farm.wait(job_id, timeout=0.2)
    procs.worker()
    info = farm.wait(job_id, timeout=20)
    assert info.status is JobStatus.FINISHED
    with pytest.raises(JobNotFoundError):
        farm.wait("no-such-job", timeout=1)


def test_failed_job_then_manual_retry(farm: Farm, config, redis_url):
    job_id = farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"})
    run_burst(config, redis_url)
    info = farm.get(job_id)
    assert (info.status, info.error_kind, info.attempts) == (JobStatus.FAILED, ErrorKind.INVALID_INPUT, 1)
    assert "demo failure" in info.error
    with pytest.raises(InvalidTransitionError):
        farm.cancel(job_id)
    info = farm.retry(job_id)
    assert info.status is JobStatus.QUEUED and info.position == 1
    with pytest.raises(InvalidTransitionError):
        farm.retry(job_id)
    run_burst(config, redis_url)
    info = farm.get(job_id)
    assert info.status is JobStatus.FAILED and info.attempts == 2
    assert [a.number for a in info.history] == [1, 2]
    assert [e.action for e in farm.audit_log()] == ["retry"]


def test_foreign_json_job_is_refused_not_imported(
    farm: Farm, config, redis_url, connection: Redis, tmp_path: Path
):
    marker = tmp_path / "owned-json"
    job = Queue("high", connection=connection, serializer=JSONSerializer).enqueue(
        "os.system", f"touch {marker}"
    )
    run_burst(config, redis_url)
    assert not marker.exists()
    raw = connection.hgetall(f"rq:job:{job.id}")
    assert raw[b"status"] == b"failed"
    assert b"is not the farm dispatcher" in raw[b"farm_error"]


def test_pickled_job_is_refused_never_unpickled(
    farm: Farm, config, redis_url, connection: Redis, tmp_path: Path
):
    marker = tmp_path / "owned-pickle"
    job = Queue("medium", connection=connection).enqueue(os.system, f"touch {marker}")  # RQ's default: pickle
    connection.hset(job.key, "farm_renderer", "demo")  # pretend to be a farm job, even
    ok_id = farm.submit("demo", {"duration": 0}, priority="medium")
    run_burst(config, redis_url)
    assert not marker.exists()
    raw = connection.hgetall(job.key)
    assert raw[b"status"] == b"failed" and b"not JSON" in raw[b"farm_error"]
    assert farm.get(ok_id).status is JobStatus.FINISHED  # the bad job did not block the queue


def test_pool_of_workers(farm: Farm, procs, connection: Redis):
    ids = farm.submit_many([{"renderer": "demo", "params": {"duration": 0.3}} for _ in range(6)])
    procs.worker("--processes", "3")
    wait_workers(connection, 3)
    for job_id in ids:
        assert farm.wait(job_id, timeout=30).status is JobStatus.FINISHED
    workers = farm.workers()
    assert len([w for w in workers if w.alive]) == 3
    assert len({farm.get(i).worker for i in ids}) >= 2


def test_stats_counts_by_status_and_priority(farm: Farm, config, redis_url):
    farm.submit("demo", {"duration": 0}, priority="high")
    farm.submit("demo", {"duration": 0, "fail_with": "not_found"}, priority="low")
    farm.submit("demo", {"duration": 0}, priority="low")
    stats = farm.stats()
    assert stats.counts[JobStatus.QUEUED] == {"high": 1, "medium": 0, "low": 2}
    run_burst(config, redis_url)
    stats = farm.stats()
    assert stats.counts[JobStatus.FINISHED]["high"] == 1
    assert stats.counts[JobStatus.FINISHED]["low"] == 1
    assert stats.counts[JobStatus.FAILED]["low"] == 1
    assert stats.finished_last_hour == 2 and stats.failed_last_hour == 1
    assert stats.renderers["demo"].avg_run is not None


def test_list_is_newest_first_and_paginated(farm: Farm, config, redis_url):
    ids = [farm.submit("demo", {"duration": 0}, priority="low" if i % 2 else "high") for i in range(7)]
    assert [i.id for i in farm.list(limit=3)] == ids[::-1][:3]
    assert [i.id for i in farm.list(limit=3, offset=3)] == ids[::-1][3:6]
    assert {i.id for i in farm.list(priority="low")} == set(ids[1::2])
    run_burst(config, redis_url)
    assert len(farm.list(status="finished")) == 7
    assert len(farm.list(status="finished", priority="high")) == 4
    assert farm.list(status="queued") == []
