"""``/metrics`` of farm serve, read by Prometheus' own parser: the names SPEC §12 promises, values
that follow the farm, a fixed number of Redis round trips at any job count, and the token off
loopback."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from farm import Farm, JobStatus, keys
from farm.serve.metrics import exposition
from tests.serve_helpers import running_server


def scrape(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_follow_the_farm(make_config, connection: Redis, redis_url: str, burst):
    config = make_config(caps={"total": 7, "renderers": {"manim": 2}, "windows": []})
    farm = Farm(connection, config, url=redis_url)
    from farm import caps

    caps.seed(connection, config)
    for _ in range(3):
        farm.submit("demo", {"duration": 0})
    farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"})
    farm.submit("demo", {"duration": 0, "fail_with": "api_error"}, max_retries=1)
    burst()
    queued = farm.submit("demo", {"duration": 0}, priority="low")
    with running_server(config, connection) as serving:
        response = httpx.get(f"{serving.url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    m = scrape(response.text)
    assert m["farm_jobs"][(("priority", "medium"), ("status", "finished"))] == 3
    assert m["farm_jobs"][(("priority", "medium"), ("status", "failed"))] == 1
    assert m["farm_jobs"][(("priority", "medium"), ("status", "scheduled"))] == 1
    assert m["farm_jobs"][(("priority", "low"), ("status", "queued"))] == 1
    assert m["farm_cap"][(("renderer", "total"),)] == 7 and m["farm_cap"][(("renderer", "manim"),)] == 2
    assert m["farm_failures_total"][(("error_kind", "invalid_input"),)] == 1
    assert m["farm_retries_total"][()] == 1
    assert m["farm_job_duration_seconds_count"][(("renderer", "demo"),)] == 3
    assert m["farm_job_duration_seconds_bucket"][(("le", "+Inf"), ("renderer", "demo"))] == 3
    assert m["farm_workers_alive"][()] == 0  # the burst worker has gone
    assert "farm_scheduler_heartbeat_age_seconds" not in m  # no scheduler ever beat here
    assert all(name in m for name in ("farm_running", "farm_retries_total", "farm_failures_total"))
    assert farm.get(queued).status is JobStatus.QUEUED


def test_a_scrape_costs_the_same_round_trips_at_any_job_count(config, connection: Redis, redis_url: str):
    farm = Farm(connection, config, url=redis_url)

    def round_trips() -> int:
        before = int(connection.info("stats")["total_commands_processed"])
        exposition(connection, config)
        return int(connection.info("stats")["total_commands_processed"]) - before - 1

    farm.submit_many([{"renderer": "demo", "params": {}}] * 10)
    few = round_trips()
    farm.submit_many([{"renderer": "demo", "params": {}}] * 2000)
    assert round_trips() == few


def test_metrics_need_the_token_off_loopback(config, connection: Redis):
    with running_server(config, connection) as serving:
        app_url = serving.url
        assert httpx.get(f"{app_url}/metrics", timeout=10).status_code == 200  # loopback
    from starlette.testclient import TestClient

    from farm.serve.app import create_app

    client = TestClient(create_app(config, connection, "t" * 32), client=("192.0.2.7", 5000))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 32}).status_code == 200


def test_the_grafana_dashboard_only_uses_metrics_farm_serve_exposes(config, connection: Redis):
    import json
    import re
    from pathlib import Path

    connection.set(keys.SCHEDULER_HEARTBEAT, connection.time()[0])  # so every family is exposed
    dashboard = json.loads(Path("deploy/grafana/farm-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(farm_[a-z_]+)\b", target["expr"])
    }
    exposed = {f.name for f in text_string_to_metric_families(exposition(connection, config).decode())}
    suffixes = ("_bucket", "_count", "_sum", "_total")
    assert all(
        any(name == e or name == e + s for s in ("", *suffixes))
        for name in used
        for e in [_base(name, exposed)]
    )


def _base(name: str, exposed: set[str]) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_total"):
        if name.endswith(suffix) and name[: -len(suffix)] in exposed:
            return name[: -len(suffix)]
    assert name in exposed, name
    return name
