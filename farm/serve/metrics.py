"""``/metrics`` of ``farm serve``: the farm in Prometheus' exposition format (prometheus-client).

Every scrape reads Redis in a fixed number of round trips, whatever the history: the live state
(``live/state.py``: counts from list and sorted-set sizes, caps, slots, workers, the scheduler's
heartbeat) and the lifetime counters the farm keeps in ``farm:metrics`` (run durations as a
histogram by renderer, failures by error kind, retries), written with each run's ending.

    farm_jobs{status,priority}              gauge      jobs in each status (kept ones)
    farm_running{renderer}                  gauge      runs holding a slot
    farm_cap{renderer}                      gauge      effective caps; renderer="total" is the farm-wide cap
    farm_job_duration_seconds{renderer}     histogram  run time of finished jobs
    farm_failures_total{error_kind}         counter    runs that ended failed
    farm_retries_total                      counter    failed runs put back in line (now or later)
    farm_workers_alive                      gauge
    farm_scheduler_heartbeat_age_seconds    gauge      (absent when the scheduler never beat)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis

from .. import keys
from ..config import FarmConfig
from ..live.state import read_state, stats_from_state
from ..records import number_map
from ..transitions import DURATION_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class FarmCollector(Collector):
    """Collects the farm's metrics from Redis at each scrape."""

    def __init__(self, connection: Redis, config: FarmConfig) -> None:
        self.connection = connection
        self.config = config

    def collect(self) -> Iterator[Metric]:
        state = read_state(self.connection, self.config)
        stats = stats_from_state(state)
        counters = number_map(self.connection.hgetall(keys.METRICS))

        jobs = GaugeMetricFamily("farm_jobs", "Jobs by status and priority", labels=["status", "priority"])
        for status, row in stats.counts.items():
            for priority, count in row.items():
                jobs.add_metric([status.value, priority.value], count)
        yield jobs

        running = GaugeMetricFamily("farm_running", "Runs holding a cap slot", labels=["renderer"])
        caps = GaugeMetricFamily(
            "farm_cap", 'Effective caps (renderer="total" is the farm-wide cap)', labels=["renderer"]
        )
        caps.add_metric(["total"], stats.caps.effective_total)
        for name, renderer in stats.renderers.items():
            running.add_metric([name], renderer.running)
            if renderer.cap is not None:
                caps.add_metric([name], renderer.cap)
        yield running
        yield caps

        yield from self._durations(counters)

        failures = CounterMetricFamily("farm_failures", "Runs that ended failed", labels=["error_kind"])
        for field, value in sorted(counters.items()):
            if field.startswith("failures:"):
                failures.add_metric([field.split(":", 1)[1]], value)
        yield failures
        yield CounterMetricFamily(
            "farm_retries", "Failed runs put back in line", value=counters.get("retries", 0)
        )
        yield GaugeMetricFamily("farm_workers_alive", "Workers with a recent heartbeat", value=stats.workers)
        if stats.scheduler_heartbeat_age is not None:
            yield GaugeMetricFamily(
                "farm_scheduler_heartbeat_age_seconds",
                "Seconds since the scheduler's last tick",
                value=stats.scheduler_heartbeat_age,
            )

    def _durations(self, counters: dict[str, float]) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            "farm_job_duration_seconds", "Run time of finished jobs", labels=["renderer"]
        )
        renderers = sorted({f.split(":")[1] for f in counters if f.startswith("duration:")})
        for renderer in renderers:
            cumulative = 0.0
            buckets = []
            for bound in (*DURATION_BUCKETS, math.inf):
                le = "+Inf" if bound == math.inf else f"{bound:g}"
                cumulative += counters.get(f"duration:{renderer}:{le}", 0)
                buckets.append((le, cumulative))
            histogram.add_metric([renderer], buckets, counters.get(f"duration_sum:{renderer}", 0.0))
        yield histogram


def exposition(connection: Redis, config: FarmConfig) -> bytes:
    """One scrape's text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(connection, config))
    return generate_latest(registry)
