"""The TUI's snapshot: right rows in the right order, bounded Redis round trips."""

from __future__ import annotations

from redis import Redis

from farm import Farm, JobStatus
from farm.live.snapshot import take_snapshot
from tests.util import run_burst


class CountingConnection:
    """Counts round trips (commands and pipeline executions) made through a Redis client."""

    def __init__(self, inner: Redis) -> None:
        self.inner = inner
        self.trips = 0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name == "pipeline":

            def pipeline(*args, **kwargs):
                pipe = attr(*args, **kwargs)
                original = pipe.execute

                def execute(*a, **k):
                    self.trips += 1
                    return original(*a, **k)

                pipe.execute = execute
                return pipe

            return pipeline
        if callable(attr):

            def call(*args, **kwargs):
                self.trips += 1
                return attr(*args, **kwargs)

            return call
        return attr


def test_rows_order_and_counts(farm: Farm, config, redis_url, connection: Redis):
    done = farm.submit("demo", {"duration": 0}, name="done")
    bad = farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"}, name="bad")
    run_burst(config, redis_url)
    farm.set_caps(renderers={"demo": 0})
    low = farm.submit("demo", {}, priority="low", name="low")
    high1 = farm.submit("demo", {}, priority="high", name="high1")
    high2 = farm.submit("demo", {}, priority="high", name="high2")
    snap = take_snapshot(connection, config)
    names = [r.name for r in snap.rows]
    assert names[:3] == ["high1", "high2", "low"]
    assert set(names[3:]) == {"done", "bad"}
    queued = {r.name: r for r in snap.rows if r.status is JobStatus.QUEUED}
    assert [queued[n].position for n in ("high1", "high2", "low")] == [1, 2, 3]
    assert queued["high1"].wait_reason == "demo cap 0/0"
    assert snap.stats.counts[JobStatus.QUEUED]["high"] == 2
    assert "no workers alive" in snap.alerts
    failed = next(r for r in snap.rows if r.id == bad)
    assert failed.error_kind.value == "invalid_input" and "\n" not in failed.error
    assert {done, low, high1, high2} <= {r.id for r in snap.rows}
    assert snap.audit[0].action == "caps"


def test_round_trips_do_not_grow_with_history(farm: Farm, config, connection: Redis):
    counting = CountingConnection(connection)
    take_snapshot(counting, config)
    small = counting.trips
    farm.submit_many([{"renderer": "demo", "params": {}} for _ in range(300)])
    farm.set_caps(renderers={"demo": 0})
    counting.trips = 0
    snap = take_snapshot(counting, config)
    assert counting.trips == small
    assert len(snap.rows) == 40 and snap.stats.counts[JobStatus.QUEUED]["medium"] == 300
