"""Submitting: validation before any Redis write, all-or-nothing batches, what lands in Redis."""

from __future__ import annotations

import json

import pytest
from redis import Redis

from farm import Farm, InvalidJobError, JobStatus, Priority, UnknownRendererError
from farm.rq_classes import DISPATCHER, FarmJob


def keyspace(connection: Redis) -> dict[bytes, object]:
    """Every key with its full value: a rejected submit must leave this unchanged."""
    out: dict[bytes, object] = {}
    for key in connection.scan_iter(count=1000):
        kind = connection.type(key)
        if kind == b"string":
            out[key] = connection.get(key)
        elif kind == b"hash":
            out[key] = connection.hgetall(key)
        elif kind == b"list":
            out[key] = connection.lrange(key, 0, -1)
        elif kind == b"set":
            out[key] = connection.smembers(key)
        elif kind == b"zset":
            out[key] = connection.zrange(key, 0, -1, withscores=True)
    return out


BAD_SUBMITS = [
    (("nope", {}), {}, UnknownRendererError, "unknown renderer 'nope'"),
    (("demo", {"bogus": 1}), {}, InvalidJobError, "bogus: unknown parameter"),
    (("demo", {"duration": "long"}), {}, InvalidJobError, "duration"),
    (("demo", {"duration": -1}), {}, InvalidJobError, "duration"),
    (("demo", {"stages": 0}), {}, InvalidJobError, "stages"),
    (("demo", {"fail_with": "kaboom"}), {}, InvalidJobError, "fail_with"),
    (("demo", ["not", "a", "dict"]), {}, InvalidJobError, "params must be a mapping"),
    (("demo", {}), {"priority": "urgent"}, InvalidJobError, "priority"),
    (("demo", {}), {"job_id": "../etc"}, InvalidJobError, "job_id"),
    (("demo", {}), {"job_id": "a:b"}, InvalidJobError, "job_id"),
    (("demo", {}), {"job_id": "x" * 200}, InvalidJobError, "job_id"),
    (("demo", {}), {"timeout": 0}, InvalidJobError, "timeout"),
    (("demo", {}), {"timeout": "10"}, InvalidJobError, "timeout"),
    (("demo", {}), {"max_retries": -1}, InvalidJobError, "max_retries"),
    (("demo", {}), {"name": "a\nb"}, InvalidJobError, "control"),
    (("demo", {}), {"job_type": "no spaces allowed"}, InvalidJobError, "job_type"),
    ((42, {}), {}, UnknownRendererError, "unknown renderer"),
]


@pytest.mark.parametrize(("args", "options", "error", "message"), BAD_SUBMITS)
def test_bad_submit_is_rejected_without_any_redis_write(
    farm: Farm, connection: Redis, args, options, error, message
):
    farm.submit("demo", {"duration": 0})  # something in Redis already, so "unchanged" means something
    before = keyspace(connection)
    with pytest.raises(error) as caught:
        farm.submit(*args, **options)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert keyspace(connection) == before


def test_oversize_params_rejected(make_config, connection: Redis, redis_url: str):
    config = make_config(limits={"max_params_bytes": 1000})
    farm = Farm(connection, config, url=redis_url)
    from farm.render import Registry

    farm.registry = Registry({}, {"big": "tests.helpers:EchoRenderer"})
    before = keyspace(connection)
    with pytest.raises(InvalidJobError, match="more than the limit"):
        farm.submit("big", {"text": "x" * 2000})
    assert keyspace(connection) == before
    farm.submit("big", {"text": "x" * 100})


def test_duplicate_explicit_id_is_rejected(farm: Farm, connection: Redis):
    farm.submit("demo", {}, job_id="render-1")
    before = keyspace(connection)
    with pytest.raises(InvalidJobError, match="already exists"):
        farm.submit("demo", {}, job_id="render-1")
    assert keyspace(connection) == before


def test_submit_many_is_all_or_nothing(farm: Farm, connection: Redis):
    before = keyspace(connection)
    with pytest.raises(InvalidJobError, match="request 2"):
        farm.submit_many(
            [
                {"renderer": "demo", "params": {"duration": 0}},
                {"renderer": "demo", "params": {}},
                {"renderer": "demo", "params": {"duration": "x"}},
            ]
        )
    with pytest.raises(InvalidJobError, match="appears twice"):
        farm.submit_many([{"renderer": "demo", "job_id": "a"}, {"renderer": "demo", "job_id": "a"}])
    with pytest.raises(InvalidJobError, match="unknown keys"):
        farm.submit_many([{"renderer": "demo", "colour": "red"}])
    assert keyspace(connection) == before
    ids = farm.submit_many(
        [{"renderer": "demo", "priority": "low"}, {"renderer": "demo", "job_type": "doubt"}]
    )
    assert [farm.get(i).priority for i in ids] == [Priority.LOW, Priority.HIGH]


def test_stored_job_is_json_and_calls_only_the_dispatcher(farm: Farm, connection: Redis):
    job_id = farm.submit("demo", {"duration": 1.5}, job_type="daily_ca", name="nightly")
    job = FarmJob.fetch(job_id, connection=connection)
    assert job.func_name == DISPATCHER
    assert job.kwargs == {"renderer": "demo", "params": {"duration": 1.5}}
    assert job.origin == "low"
    assert job.timeout == 600
    import zlib

    raw = connection.hget(f"rq:job:{job_id}", "data")
    assert json.loads(zlib.decompress(raw))[0] == DISPATCHER
    assert connection.lrange("rq:queue:low", 0, -1) == [job_id.encode()]
    info = farm.get(job_id)
    assert (info.status, info.name, info.job_type, info.renderer) == (
        JobStatus.QUEUED,
        "nightly",
        "daily_ca",
        "demo",
    )
    assert info.position == 1


@pytest.mark.parametrize(
    ("job_type", "priority", "expected"),
    [
        ("doubt", None, "high"),
        ("topic_short", None, "medium"),
        ("daily_ca", None, "low"),
        ("unheard_of", None, "medium"),
        (None, None, "medium"),
        ("doubt", "low", "low"),
    ],
)
def test_priority_from_job_type(farm: Farm, job_type, priority, expected):
    job_id = farm.submit("demo", {}, job_type=job_type, priority=priority)
    assert farm.get(job_id).priority.value == expected
