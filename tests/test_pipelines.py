"""Pipelines (submit's after=, job:<id>/<name> references, submit_many DAGs) against a real Redis
and real workers: waiting, release by the dependency's end, transitive cancels, retries that
bring dependents back, refused submits that write nothing, and RQ's own view of waiting jobs."""

from __future__ import annotations

import pytest
from redis import Redis
from rq.job import Job
from rq.registry import DeferredJobRegistry
from rq.serializers import JSONSerializer

from farm import Farm, JobStatus, keys
from farm.errors import InvalidJobError, InvalidTransitionError
from tests.events import read_events


def ended(farm: Farm, job_id: str) -> float:
    info = farm.get(job_id)
    assert info.ended_at is not None
    return info.ended_at.timestamp()


def test_a_job_waits_for_all_its_dependencies(farm: Farm, connection: Redis, burst):
    a = farm.submit("demo", {"duration": 0.3, "stages": 1}, name="scene-a")
    b = farm.submit("demo", {"duration": 0.1, "stages": 1}, name="scene-b")
    c = farm.submit("demo", {"duration": 0, "stages": 1}, name="concat", after=[a, b])
    info = farm.get(c)
    assert info.status is JobStatus.QUEUED and info.after == (a, b)
    assert info.wait_reason == f"after {a[:8]} (queued)" and info.position is None
    assert c in DeferredJobRegistry("medium", connection=connection, serializer=JSONSerializer).get_job_ids()
    assert sorted(Job.fetch(c, connection=connection, serializer=JSONSerializer).dependency_ids) == sorted(
        [a, b]
    )
    assert sorted(farm.dependents(a)) == [c]
    assert farm.stats().counts[JobStatus.QUEUED]["medium"] == 3  # waiting jobs are queued jobs
    burst()
    assert [farm.get(j).status for j in (a, b, c)] == [JobStatus.FINISHED] * 3
    starts = [e["job"] for e in read_events(connection) if e["e"] == "start"]
    ends = [e["job"] for e in read_events(connection) if e["e"] == "end"]
    assert starts.index(c) > 1 and set(ends[:2]) == {a, b}  # c started only after both ended
    assert farm.get(c).started_at.timestamp() >= max(ended(farm, a), ended(farm, b))  # type: ignore[union-attr]
    assert not DeferredJobRegistry("medium", connection=connection).get_job_ids()


def test_a_failure_cancels_the_dependents_transitively_and_its_retry_brings_them_back(
    farm: Farm, connection: Redis, burst
):
    a = farm.submit("demo", {"duration": 0, "fail_with": "invalid_input", "fail_attempts": 1})
    b = farm.submit("demo", {"duration": 0}, after=[a])
    c = farm.submit("demo", {"duration": 0}, after=[b])
    other = farm.submit("demo", {"duration": 0})
    burst()
    assert farm.get(a).status is JobStatus.FAILED
    for job_id in (b, c):
        info = farm.get(job_id)
        assert info.status is JobStatus.CANCELED and info.error == f"dependency {a} failed", info
        assert info.started_at is None and info.attempts == 0  # never started
    assert farm.get(other).status is JobStatus.FINISHED
    with pytest.raises(InvalidTransitionError, match=f"waits for {a}, which is failed"):
        farm.retry(b)  # its dependency needs the retry
    farm.retry(a)
    assert farm.get(b).status is JobStatus.QUEUED and farm.get(b).wait_reason == f"after {a[:8]} (queued)"
    assert farm.get(c).wait_reason == f"after {b[:8]} (queued)" and farm.get(c).error is None
    burst()
    assert [farm.get(j).status for j in (a, b, c)] == [JobStatus.FINISHED] * 3


def test_canceling_a_waiting_job_cancels_the_jobs_after_it(farm: Farm, burst):
    a = farm.submit("demo", {"duration": 0})
    b = farm.submit("demo", {"duration": 0}, after=[a])
    c = farm.submit("demo", {"duration": 0}, after=[b])
    farm.cancel(b)
    assert farm.get(c).status is JobStatus.CANCELED and farm.get(c).error == f"dependency {b} failed"
    burst()
    assert farm.get(a).status is JobStatus.FINISHED
    assert farm.get(b).status is JobStatus.CANCELED and farm.get(c).status is JobStatus.CANCELED


def test_after_a_finished_job_goes_straight_in_line(farm: Farm, burst):
    a = farm.submit("demo", {"duration": 0})
    burst()
    b = farm.submit("demo", {"duration": 0}, after=[a])
    info = farm.get(b)
    assert info.after == (a,) and info.position == 1 and not (info.wait_reason or "").startswith("after")
    burst()
    assert farm.get(b).status is JobStatus.FINISHED


def test_a_dag_in_one_submit_many_by_index(farm: Farm, connection: Redis, burst):
    ids = farm.submit_many(
        [
            {"renderer": "demo", "params": {"duration": 0}, "name": "scene-1"},
            {"renderer": "demo", "params": {"duration": 0}, "name": "scene-2"},
            {"renderer": "demo", "params": {"duration": 0}, "name": "concat", "after": [0, 1]},
            {"renderer": "demo", "params": {"duration": 0}, "name": "thumb", "after": [2]},
        ]
    )
    assert farm.get(ids[2]).after == (ids[0], ids[1]) and farm.get(ids[3]).after == (ids[2],)
    burst()
    assert all(farm.get(j).status is JobStatus.FINISHED for j in ids)
    starts = [e["job"] for e in read_events(connection) if e["e"] == "start"]
    assert starts.index(ids[3]) > starts.index(ids[2]) > max(starts.index(ids[0]), starts.index(ids[1]))


def test_bad_dependencies_are_refused_and_write_nothing(farm: Farm, connection: Redis, burst):
    failed = farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"})
    burst()
    before = connection.zcard(keys.JOBS)
    cases = [
        (lambda: farm.submit("demo", {}, after=["no-such-job"]), "no job 'no-such-job'"),
        (lambda: farm.submit("demo", {}, after=[failed]), f"job {failed} is failed; retry it first"),
        (lambda: farm.submit("demo", {}, after=[0]), "only works in submit_many"),
        (lambda: farm.submit("demo", {}, after="abc"), "after must be a list"),
        (lambda: farm.submit("demo", {}, after=["bad id!"]), "is not a job id"),
        (
            lambda: farm.submit_many(
                [{"renderer": "demo", "after": [1]}, {"renderer": "demo", "after": [0]}]
            ),
            "cycle",
        ),
        (lambda: farm.submit_many([{"renderer": "demo", "after": [0]}]), "cycle"),
        (lambda: farm.submit_many([{"renderer": "demo", "after": [5]}]), "index 5 is not a request"),
        (
            lambda: farm.submit("ffmpeg", {"preset": "thumbnail", "input": "job:/x.mp4", "output": "t.jpg"}),
            "not a job output reference",
        ),
        (
            lambda: farm.submit(
                "ffmpeg", {"preset": "thumbnail", "input": "job:abc/../x", "output": "t.jpg"}
            ),
            "plain relative path",
        ),
    ]
    for call, message in cases:
        with pytest.raises(InvalidJobError, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()
    assert connection.zcard(keys.JOBS) == before


def test_a_reference_waits_for_its_job_and_is_kept_in_the_params(farm: Farm):
    a = farm.submit("demo", {"duration": 0})
    b = farm.submit("ffmpeg", {"preset": "thumbnail", "input": f"job:{a}/clip.mp4", "output": "t.jpg"})
    info = farm.get(b)
    assert info.after == (a,) and info.params["input"] == f"job:{a}/clip.mp4"
    assert info.wait_reason == f"after {a[:8]} (queued)"


def test_the_cli_submits_after_a_prefix_and_shows_both_ends(farm: Farm):
    from tests.test_cli import farm_cli

    a = farm.submit("demo", {"duration": 0}, name="first")
    done = farm_cli("submit", "demo", "-p", "duration=0", "--after", a[:8])
    assert done.returncode == 0, done.stderr
    b = done.stdout.strip()
    assert farm.get(b).after == (a,)
    shown = farm_cli("show", a[:8]).stdout
    assert f"dependents  {b}" in shown
    shown = farm_cli("show", b).stdout
    assert f"after       {a}" in shown and f"waiting     after {a[:8]} (queued)" in shown
    refused = farm_cli("submit", "demo", "--after", "zzzzzzzz")
    assert refused.returncode == 3 and "no job" in refused.stderr and refused.stderr.count("\n") == 1
