"""RQ's own tools keep working on the farm's Redis: results and errors through RQ's Result API,
scheduled retries in RQ's ScheduledJobRegistry, `rq suspend`, `rq info`, and rq-dashboard's
workers view while jobs run (real `rq` CLI, real rq-dashboard)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from redis import Redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from farm import Farm, JobStatus
from tests.util import free_port, wait_for, wait_workers

BIN = Path(sys.executable).parent


def test_results_and_errors_through_rqs_result_api(farm: Farm, connection: Redis, burst):
    good = farm.submit("demo", {"duration": 0, "stages": 2})
    bad = farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"})
    burst()
    job = Job.fetch(good, connection=connection, serializer=JSONSerializer)
    assert job.return_value() == farm.get(good).result
    failed = Job.fetch(bad, connection=connection, serializer=JSONSerializer)
    assert failed.exc_info and "invalid_input" in failed.exc_info and "demo failure" in failed.exc_info


def test_scheduled_retries_are_in_rqs_scheduled_registry(farm: Farm, connection: Redis, burst):
    job_id = farm.submit("demo", {"duration": 0, "fail_with": "api_error"}, max_retries=2)
    burst()
    assert farm.get(job_id).status is JobStatus.SCHEDULED
    registry = ScheduledJobRegistry("medium", connection=connection, serializer=JSONSerializer)
    assert job_id in registry.get_job_ids(cleanup=False)
    farm.cancel(job_id)
    assert job_id not in registry.get_job_ids(cleanup=False)


def rq(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "rq"), *args, "-u", url], capture_output=True, text=True, timeout=60, check=False
    )


def test_rq_suspend_stops_new_starts_and_rq_info_reads_the_farm(farm: Farm, procs, connection, redis_url):
    procs.worker("--processes", "1")
    wait_workers(connection, 1)
    assert rq("suspend", url=redis_url).returncode == 0
    time.sleep(1.5)  # workers read the flag once a second
    job_id = farm.submit("demo", {"duration": 0})
    time.sleep(2)
    assert farm.get(job_id).status is JobStatus.QUEUED
    info = rq("info", "--serializer", "json", url=redis_url)
    assert info.returncode == 0 and "medium" in info.stdout and "1 workers" in info.stdout
    assert rq("resume", url=redis_url).returncode == 0
    assert farm.wait(job_id, timeout=20).status is JobStatus.FINISHED


def test_rq_dashboard_workers_view_works_while_jobs_run(farm: Farm, procs, connection, redis_url, tmp_path):
    procs.worker("--processes", "1")
    job_id = farm.submit("demo", {"duration": 20})
    wait_for(lambda: farm.get(job_id).status is JobStatus.RUNNING, timeout=20, what="a running job")
    port = free_port()
    log = open(tmp_path / "dashboard.log", "wb")  # noqa: SIM115
    dashboard = subprocess.Popen(
        [
            str(BIN / "rq-dashboard"),
            "--redis-url",
            redis_url,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--json",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def workers() -> httpx.Response | None:
            assert dashboard.poll() is None, "rq-dashboard exited:\n" + _tail(tmp_path / "dashboard.log")
            try:
                return httpx.get(f"{base}/0/data/workers.json", timeout=5)
            except httpx.HTTPError:
                return None

        try:
            response = wait_for(workers, timeout=60, what="rq-dashboard")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_tail(tmp_path / 'dashboard.log')}") from None
        assert response.status_code == 200, (tmp_path / "dashboard.log").read_text()[-2000:]
        assert response.json()["workers"], response.text
        queues = httpx.get(f"{base}/0/data/queues.json", timeout=5)
        assert queues.status_code == 200 and "medium" in queues.text
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=10)
        log.close()
        if not farm.get(job_id).status.terminal:
            farm.cancel(job_id)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]
