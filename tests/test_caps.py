"""Caps under real concurrency: never exceeded, priority kept, live changes, windows, pause."""

from __future__ import annotations

import random
import threading
import time

import pytest
from redis import Redis

from farm import Farm, JobStatus
from farm.caps import caps_from_hash, windows_field
from farm.models import Window
from farm.timeutil import local_minute_of_day
from tests.events import read_events, replay
from tests.util import run_burst, wait_for, wait_workers

PLUGINS = {"alpha": "renderers.demo:DemoRenderer", "beta": "renderers.demo:DemoRenderer"}
RANK = {"high": 0, "medium": 1, "low": 2}


@pytest.fixture
def caps_farm(make_config, connection: Redis, redis_url: str) -> Farm:
    config = make_config(
        plugins=PLUGINS, caps={"total": 5, "renderers": {"alpha": 2, "beta": 3}, "windows": []}
    )
    return Farm(connection, config, url=redis_url, who="tester")


def _check_order(starts, order: dict[str, int], priority: dict[str, str], renderer_of: dict[str, str]):
    """Among one renderer's jobs (all waiting from the start), starts go by priority, then FIFO."""
    by_renderer: dict[str, list[str]] = {}
    for event in starts:
        by_renderer.setdefault(renderer_of[event["job"]], []).append(event["job"])
    for renderer, jobs in by_renderer.items():
        keys = [(RANK[priority[j]], order[j]) for j in jobs]
        assert keys == sorted(keys), f"{renderer} jobs started out of priority/FIFO order: {keys}"


def test_caps_never_exceeded_and_priority_kept_under_random_cap_changes(
    caps_farm: Farm, procs, connection: Redis
):
    farm = caps_farm
    rng = random.Random(7)
    farm.set_caps(total=5, renderers={"alpha": 2, "beta": 3})  # recorded as the first event
    requests = []
    for _ in range(90):
        requests.append(
            {
                "renderer": rng.choice(["alpha", "alpha", "beta", "demo"]),
                "priority": rng.choice(["high", "medium", "low"]),
                "params": {"duration": round(rng.uniform(0.02, 0.25), 2), "stages": 1},
            }
        )
    ids = farm.submit_many(requests)
    order = {job_id: i for i, job_id in enumerate(ids)}
    priority = {job_id: r["priority"] for job_id, r in zip(ids, requests, strict=True)}
    renderer_of = {job_id: r["renderer"] for job_id, r in zip(ids, requests, strict=True)}

    # Two "hosts" of workers: 7 processes, more than any cap.
    procs.worker("--processes", "4", "--name", "hostA")
    procs.worker("--processes", "3", "--name", "hostB")
    stop = threading.Event()

    def change_caps():
        local = random.Random(11)
        while not stop.wait(0.15):
            farm.set_caps(
                total=local.randint(1, 6),
                renderers={"alpha": local.randint(0, 3), "beta": local.randint(1, 4)},
            )

    changer = threading.Thread(target=change_caps, daemon=True)
    changer.start()
    time.sleep(4)
    stop.set()
    changer.join()
    farm.set_caps(total=6, renderers={"alpha": 2, "beta": 3})
    wait_for(
        lambda: all(farm.get(i).status is JobStatus.FINISHED for i in ids),
        timeout=120,
        interval=0.5,
        what="all jobs finished",
    )

    result = replay(read_events(connection), total=5, caps={"alpha": 2, "beta": 3})
    assert result.violations == []
    assert len(result.starts) == len(ids)
    assert result.max_total >= 3  # the farm really ran things in parallel
    _check_order(result.starts, order, priority, renderer_of)


def test_held_job_keeps_its_place_when_a_slot_frees(caps_farm: Farm, config, redis_url, connection: Redis):
    farm = caps_farm
    farm.set_caps(total=10, renderers={"alpha": 0})
    low = farm.submit("alpha", {"duration": 0}, priority="low", name="low-alpha")
    high = farm.submit("alpha", {"duration": 0}, priority="high", name="high-alpha")
    others = farm.submit_many(
        [{"renderer": "demo", "params": {"duration": 0}, "priority": "medium"} for _ in range(3)]
    )
    run_burst(farm.config, redis_url)  # runs the demo jobs; alpha jobs are held
    assert all(farm.get(i).status is JobStatus.FINISHED for i in others)
    info = farm.get(high)
    assert info.status is JobStatus.QUEUED and info.wait_reason == "alpha cap 0/0" and info.position == 1
    assert farm.get(low).position == 2
    farm.set_caps(renderers={"alpha": 1})
    run_burst(farm.config, redis_url)
    starts = [e["job"] for e in read_events(connection) if e["e"] == "start" and e["r"] == "alpha"]
    assert starts == [high, low]


def test_lowering_a_cap_kills_nothing_and_stops_new_starts(caps_farm: Farm, procs, connection: Redis):
    farm = caps_farm
    farm.set_caps(total=10, renderers={"alpha": 3})
    ids = farm.submit_many(
        [{"renderer": "alpha", "params": {"duration": 2.5, "stages": 5}} for _ in range(5)]
    )
    procs.worker("--processes", "5")
    wait_for(lambda: farm.stats().running_by_renderer.get("alpha") == 3, timeout=20)
    farm.set_caps(renderers={"alpha": 1})
    time.sleep(0.5)
    assert farm.stats().running_by_renderer.get("alpha") == 3  # nothing killed
    wait_for(lambda: farm.get(ids[3]).status is JobStatus.RUNNING, timeout=30)
    result = replay(read_events(connection), total=10, caps={"alpha": 3})
    assert result.violations == []
    stats = farm.stats()
    assert stats.running_by_renderer.get("alpha", 0) <= 1
    assert stats.caps.effective_renderers["alpha"] == 1


def test_raising_a_cap_starts_waiting_jobs_within_a_second(caps_farm: Farm, procs):
    farm = caps_farm
    farm.set_caps(renderers={"alpha": 0})
    job_id = farm.submit("alpha", {"duration": 1})
    procs.worker("--processes", "2")
    wait_workers(farm.connection, 2)
    time.sleep(0.5)
    assert farm.get(job_id).status is JobStatus.QUEUED
    farm.set_caps(renderers={"alpha": 1})
    started = time.monotonic()
    wait_for(lambda: farm.get(job_id).status is JobStatus.RUNNING, timeout=5, interval=0.01)
    assert time.monotonic() - started < 1.0


def test_windows_multiply_caps(caps_farm: Farm, connection: Redis, config, redis_url):
    farm = caps_farm
    minute = local_minute_of_day()
    start, end = (minute - 30) % 1440, (minute + 30) % 1440
    window = Window(
        start=f"{start // 60:02d}:{start % 60:02d}", end=f"{end // 60:02d}:{end % 60:02d}", multiplier=1.5
    )
    connection.hset("farm:caps", mapping={"total": 10, "r:alpha": 4, "windows": windows_field((window,))})
    caps = farm.caps()
    assert (caps.effective_total, caps.effective_renderers["alpha"], caps.window) == (15, 6, window)
    outside = caps_from_hash(
        connection.hgetall("farm:caps"), farm.config, minute_of_day=(minute + 120) % 1440
    )
    assert (outside.effective_total, outside.effective_renderers["alpha"], outside.window) == (10, 4, None)


def test_window_cap_is_enforced_by_dispatch(make_config, connection: Redis, redis_url: str, procs):
    minute = local_minute_of_day()
    start, end = (minute - 30) % 1440, (minute + 30) % 1440
    window = {
        "start": f"{start // 60:02d}:{start % 60:02d}",
        "end": f"{end // 60:02d}:{end % 60:02d}",
        "multiplier": 1.5,
    }
    config = make_config(plugins=PLUGINS, caps={"total": 10, "renderers": {"alpha": 2}, "windows": [window]})
    farm = Farm(connection, config, url=redis_url)
    farm.submit_many([{"renderer": "alpha", "params": {"duration": 3, "stages": 3}} for _ in range(5)])
    procs.worker("--processes", "5")  # seeds caps and windows from the config
    wait_for(lambda: farm.stats().running_by_renderer.get("alpha") == 3, timeout=20)
    time.sleep(0.5)
    assert farm.stats().running_by_renderer["alpha"] == 3  # floor(2 x 1.5), not 2 and not 5
    assert farm.caps().window is not None


def test_pause_and_resume_a_queue(caps_farm: Farm, config, redis_url):
    farm = caps_farm
    farm.pause("high")
    high = farm.submit("demo", {"duration": 0}, priority="high")
    low = farm.submit("demo", {"duration": 0}, priority="low")
    assert farm.get(high).wait_reason == "queue paused"
    run_burst(farm.config, redis_url)
    assert farm.get(low).status is JobStatus.FINISHED
    assert farm.get(high).status is JobStatus.QUEUED
    assert farm.stats().paused == ("high",)
    farm.resume("high")
    run_burst(farm.config, redis_url)
    assert farm.get(high).status is JobStatus.FINISHED
    assert [e.action for e in farm.audit_log()][:2] == ["resume", "pause"]


def test_wait_reasons_positions_and_eta(caps_farm: Farm, procs, connection: Redis):
    farm = caps_farm
    farm.set_caps(total=2, renderers={"alpha": 1})
    running = farm.submit_many(
        [{"renderer": "alpha", "params": {"duration": 8}}, {"renderer": "demo", "params": {"duration": 8}}]
    )
    procs.worker("--processes", "3")
    wait_for(lambda: all(farm.get(i).status is JobStatus.RUNNING for i in running), timeout=20)
    waiting_alpha = farm.submit("alpha", {"duration": 1}, priority="high")
    waiting_demo = farm.submit("demo", {"duration": 1}, priority="low")
    time.sleep(0.3)
    a = farm.get(waiting_alpha)
    assert a.wait_reason == "alpha cap 1/1" and a.position == 1
    d = farm.get(waiting_demo)
    assert d.wait_reason == "total cap 2/2" and d.position == 2
    assert a.eta is not None and d.eta is not None and d.eta >= a.eta
    r = farm.get(running[0])
    assert r.eta is not None and r.eta > r.started_at
