"""The farm's published policy: the render host's rules reach every submitter, whatever its own
file says, and per-submitter limits hold."""

from __future__ import annotations

import subprocess
import sys

import pytest
from redis import Redis

from farm import Farm, InvalidJobError, JobStatus, policy
from farm.config import parse_config


def test_publishing_is_versioned_and_only_changes_bump_the_version(connection: Redis):
    host = parse_config({"retry": {"max_retries": 0}, "queues": {"job_types": {"promo": "high"}}})
    assert policy.read(connection) is None
    assert policy.publish(connection, host) == 1
    assert policy.publish(connection, host) == 1  # unchanged: same version
    worker_box = parse_config({"retry": {"max_retries": 7}})
    assert policy.publish(connection, worker_box, only_if_absent=True) == 1  # the host's stays
    changed = parse_config({"retry": {"max_retries": 1}})
    assert policy.publish(connection, changed) == 2
    published = policy.read(connection)
    assert published is not None and published.version == 2
    assert published.sections["retry"]["max_retries"] == 1


def test_a_submitters_own_file_cannot_change_the_farms_rules(connection: Redis, redis_url: str, tmp_path):
    host = parse_config(
        {
            "retry": {"max_retries": 0},
            "timeouts": {"default": 123},
            "queues": {"job_types": {"promo": "high"}},
            "limits": {"max_retries": 2},
            "renderers": {
                "command": {"templates": {"echo": {"argv": ["echo", "{x}"], "vars": {"x": "str"}}}}
            },
        }
    )
    policy.publish(connection, host)
    local = tmp_path / "farm.toml"
    local.write_text(
        '[retry]\nmax_retries = 9\n[timeouts]\ndefault = 999\n[queues]\njob_types = { promo = "low" }\n'
    )
    farm = Farm.connect(redis_url, config=local)
    job_id = farm.submit("demo", {"duration": 0}, job_type="promo")
    info = farm.get(job_id)
    assert (info.max_retries, info.timeout, info.priority.value) == (0, 123, "high")
    with pytest.raises(InvalidJobError, match="max_retries"):
        farm.submit("demo", {}, max_retries=5)  # within the farm's limits only
    # A template defined only on the render host is known to the teammate.
    assert farm.submit("command", {"template": "echo", "vars": {"x": "hi"}})


def test_with_nothing_published_the_api_uses_defaults_and_doctor_says_so(redis_url: str, monkeypatch):
    farm = Farm.connect(redis_url)
    assert farm.policy is None and farm.config.retry.max_retries == 3
    monkeypatch.setenv("FARM_REDIS_URL", redis_url)
    monkeypatch.delenv("FARM_CONFIG", raising=False)
    out = subprocess.run([sys.executable, "-m", "farm", "doctor"], capture_output=True, text=True, timeout=60)
    assert "nothing published yet" in out.stdout


def test_per_submitter_limits(make_config, connection: Redis, redis_url: str):
    config = make_config(limits={"per_submitter_per_hour": 3})
    policy.publish(connection, config)
    ana = Farm.connect(redis_url, who="ana@laptop")
    bo = Farm.connect(redis_url, who="bo@desk")
    ana.submit_many([{"renderer": "demo", "params": {}}] * 2)
    ana.submit("demo", {})
    with pytest.raises(InvalidJobError, match="per_submitter_per_hour"):
        ana.submit("demo", {})
    assert bo.submit("demo", {})  # another submitter has their own budget
    assert all(i.by in ("ana@laptop", "bo@desk") for i in ana.list())
    assert len([i for i in ana.list() if i.status is JobStatus.QUEUED]) == 4
