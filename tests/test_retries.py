"""Retries through rq-scheduler (JSON, same job id, history kept), error kinds, two schedulers."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from redis import Redis
from rq_scheduler import Scheduler

from farm import ErrorKind, Farm, JobStatus
from farm.config import RetryConfig
from farm.retry import Decision, decide, retry_delay
from farm.rq_classes import FarmJob, FarmQueue
from tests.events import read_events
from tests.util import run_burst


def test_retry_policy_pure():
    policy = RetryConfig()
    assert [retry_delay(n, policy.model_copy(update={"jitter": 0})) for n in (1, 2, 3, 4, 10)] == [
        300,
        600,
        1200,
        2400,
        3600,
    ]
    jittered = [retry_delay(1, policy) for _ in range(200)]
    assert 270 <= min(jittered) < max(jittered) <= 330
    assert decide(ErrorKind.API_ERROR, 1, 3) is Decision.RETRY_LATER
    assert decide(ErrorKind.API_ERROR, 4, 3) is Decision.FAIL
    assert decide(ErrorKind.WORKER_LOST, 1, 3) is Decision.REQUEUE_NOW
    for kind in (ErrorKind.INVALID_INPUT, ErrorKind.NOT_FOUND, ErrorKind.CANCELED):
        assert decide(kind, 1, 3) is Decision.FAIL
    for kind in (ErrorKind.TIMEOUT, ErrorKind.UNKNOWN):
        assert decide(kind, 1, 3) is Decision.RETRY_LATER


def test_retryable_failure_is_scheduled_in_rq_scheduler_as_json(
    farm: Farm, config, redis_url, connection: Redis
):
    job_id = farm.submit("demo", {"duration": 0, "fail_with": "api_error"}, max_retries=2)
    run_burst(config, redis_url)
    info = farm.get(job_id)
    assert info.status is JobStatus.SCHEDULED and info.error_kind is ErrorKind.API_ERROR
    assert info.retry_at is not None and info.wait_reason.startswith("retry at")
    assert 0.5 < (info.retry_at - info.history[0].ended_at).total_seconds() <= 1.5  # base_delay 1 s in tests
    # rq-scheduler sees the same job id and reads it as JSON through the farm's classes.
    scheduler = Scheduler(connection=connection, job_class=FarmJob, queue_class=FarmQueue)
    assert job_id in scheduler
    assert [j.id for j in scheduler.get_jobs()] == [job_id]
    assert connection.hget(f"rq:job:{job_id}", "status") == b"scheduled"
    assert farm.stats().counts[JobStatus.SCHEDULED]["medium"] == 1


def test_retries_run_then_fail_with_history(farm: Farm, procs):
    job_id = farm.submit("demo", {"duration": 0, "fail_with": "timeout"}, max_retries=2)
    procs.scheduler()
    procs.worker("--processes", "1")
    info = farm.wait(job_id, timeout=40)
    assert (info.status, info.error_kind, info.attempts) == (JobStatus.FAILED, ErrorKind.TIMEOUT, 3)
    assert [a.error_kind for a in info.history] == [ErrorKind.TIMEOUT] * 3
    gaps = [(b.started_at - a.ended_at).total_seconds() for a, b in zip(info.history, info.history[1:])]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9  # 1 s, then 2 s (test config), never early


def test_retry_succeeds_on_a_later_attempt(farm: Farm, procs):
    job_id = farm.submit("demo", {"duration": 0, "fail_with": "api_error", "fail_attempts": 1})
    procs.scheduler()
    procs.worker("--processes", "1")
    info = farm.wait(job_id, timeout=30)
    assert (info.status, info.attempts) == (JobStatus.FINISHED, 2)
    assert [a.error_kind for a in info.history] == [ErrorKind.API_ERROR, None]


@pytest.mark.parametrize("kind", ["invalid_input", "not_found"])
def test_non_retryable_kinds_fail_at_once(farm: Farm, config, redis_url, connection: Redis, kind):
    job_id = farm.submit("demo", {"duration": 0, "fail_with": kind}, max_retries=3)
    run_burst(config, redis_url)
    info = farm.get(job_id)
    assert (info.status, info.error_kind.value, info.attempts) == (JobStatus.FAILED, kind, 1)
    assert connection.zcard("rq:scheduler:scheduled_jobs") == 0


def test_manual_retry_gives_a_fresh_retry_budget(farm: Farm, procs):
    job_id = farm.submit("demo", {"duration": 0, "fail_with": "unknown"}, max_retries=1)
    procs.scheduler()
    procs.worker("--processes", "1")
    assert farm.wait(job_id, timeout=30).attempts == 2
    farm.retry(job_id)
    info = farm.wait(job_id, timeout=30)
    assert (info.status, info.attempts, len(info.history)) == (JobStatus.FAILED, 4, 4)


def test_two_schedulers_never_duplicate_a_retry(farm: Farm, procs, connection: Redis):
    ids = farm.submit_many(
        [
            {"renderer": "demo", "params": {"duration": 0, "fail_with": "api_error", "fail_attempts": 2}}
            for _ in range(30)
        ]
    )
    procs.scheduler()
    procs.scheduler()
    procs.worker("--processes", "3")
    for job_id in ids:
        assert farm.wait(job_id, timeout=60).status is JobStatus.FINISHED
    events = read_events(connection)
    retries = Counter(e["job"] for e in events if e["e"] == "retry")
    starts = Counter(e["job"] for e in events if e["e"] == "start")
    assert all(retries[j] == 2 for j in ids), retries
    assert all(starts[j] == 3 for j in ids), starts
    assert all(farm.get(j).attempts == 3 for j in ids)
    # Both schedulers were alive and taking turns.
    assert connection.exists("farm:scheduler:heartbeat")
    time.sleep(0)


def test_promote_is_atomic_under_racing_schedulers(farm: Farm, connection: Redis, redis_url: str):
    import threading

    from farm import transitions
    from farm.scheduler.loop import promote

    ids = farm.submit_many([{"renderer": "demo", "params": {}} for _ in range(40)])
    with connection.pipeline() as pipe:
        for job_id in ids:
            connection.lrem("rq:queue:medium", 0, job_id)
            transitions.write_scheduled(
                pipe, job_id, "medium", time.time() - 1, ErrorKind.API_ERROR, "x", "[]"
            )
        pipe.execute()
    wins: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def scheduler_thread():
        own = Redis.from_url(redis_url)
        barrier.wait()
        for job_id in ids:
            if promote(own, job_id):
                with lock:
                    wins[job_id] += 1

    threads = [threading.Thread(target=scheduler_thread) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(wins[j] == 1 for j in ids), wins
    queue = [m.decode() for m in connection.lrange("rq:queue:medium", 0, -1)]
    assert sorted(queue) == sorted(ids)  # each exactly once
