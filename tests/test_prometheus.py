"""A real Prometheus server scrapes ``farm serve``'s ``/metrics`` as the README configures it, and
answers PromQL queries over the farm's names (jobs by status, caps, the run-duration histogram)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis import Redis

from farm import Farm, caps
from tests.serve_helpers import running_server
from tests.util import free_port, require_tool, wait_for

SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: farm
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
"""


def query(base: str, promql: str) -> list[dict[str, Any]]:
    try:
        response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.HTTPError:
        return []
    if response.status_code != 200:
        return []
    return response.json()["data"]["result"]


def test_prometheus_scrapes_the_farm_and_answers_queries(
    make_config, connection: Redis, redis_url, burst, tmp_path: Path
):
    prometheus = require_tool("prometheus")
    config = make_config(caps={"total": 6, "renderers": {"manim": 2}, "windows": []})
    farm = Farm(connection, config, url=redis_url)
    caps.seed(connection, config)
    for _ in range(2):
        farm.submit("demo", {"duration": 0})
    farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"})
    burst()
    with running_server(config, connection) as serving:
        target = urlsplit(serving.url).netloc
        (tmp_path / "prometheus.yml").write_text(SCRAPE_CONFIG.format(target=target))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            up = wait_for(lambda: query(base, 'up{job="farm"} == 1'), timeout=60, what="a good scrape")
            assert up, (tmp_path / "prometheus.log").read_text()[-2000:]
            finished = wait_for(lambda: query(base, 'farm_jobs{status="finished"}'), timeout=20, what="jobs")
            assert sum(float(r["value"][1]) for r in finished) == 2
            cap = query(base, 'farm_cap{renderer="manim"}')
            assert [float(r["value"][1]) for r in cap] == [2]
            failures = query(base, "sum(farm_failures_total)")
            assert [float(r["value"][1]) for r in failures] == [1]
            runs = query(base, 'sum(farm_job_duration_seconds_count{renderer="demo"})')
            assert [float(r["value"][1]) for r in runs] == [2]  # finished runs
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
