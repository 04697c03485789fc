"""The autoscaling worker pool (``farm worker --workers MIN:MAX``), with real pools and Redis.

What scale.lua counts as work that could start now is checked directly (no workers); the pools'
sizes are sampled every 50 ms from the farm's heartbeats (a worker process is alive and registered
from its first heartbeat to its deregistration) and from the pool's published record; caps are
checked by replaying farm:events."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import click
import pytest
from redis import Redis

from farm import Farm, JobStatus
from farm.config import ConfigError, parse_config
from farm.live.roster import list_pools
from farm.live.snapshot import take_snapshot
from farm.worker.scaling import PoolSize, Scaler
from tests import faults
from tests.events import read_events, replay
from tests.test_cli import farm_cli
from tests.util import wait_for

IDLE_EXIT = 1.0
PLUGINS = {"alpha": "renderers.demo:DemoRenderer"}


@pytest.fixture
def scale_config(make_config):
    return make_config(
        plugins=PLUGINS,
        caps={"total": 10, "renderers": {}, "windows": []},
        worker={"idle_exit": IDLE_EXIT},
    )


@pytest.fixture
def sfarm(scale_config, connection: Redis, redis_url: str) -> Farm:
    return Farm(connection, scale_config, url=redis_url, who="tester")


def alive(connection: Redis, prefix: str) -> int:
    """Worker processes of pool ``prefix`` registered now (deregistered ones leave the zset)."""
    return sum(1 for m in connection.zrange("farm:heartbeats", 0, -1) if m.decode().startswith(prefix + "."))


class Sampler:
    """Largest number of live workers seen per pool prefix, and the largest published 'current'."""

    def __init__(self, url: str, prefixes: tuple[str, ...]) -> None:
        self.connection = Redis.from_url(url)
        self.prefixes = prefixes
        self.peak = dict.fromkeys(prefixes, 0)
        self.peak_total = 0
        self.peak_published = dict.fromkeys(prefixes, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            counts = {p: alive(self.connection, p) for p in self.prefixes}
            for p, n in counts.items():
                self.peak[p] = max(self.peak[p], n)
            self.peak_total = max(self.peak_total, sum(counts.values()))
            for pool in list_pools(self.connection):
                if pool.name in self.peak_published:
                    self.peak_published[pool.name] = max(self.peak_published[pool.name], pool.current)
            self._stop.wait(0.05)

    def reset(self) -> None:
        self.peak = dict.fromkeys(self.prefixes, 0)
        self.peak_total = 0

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.connection.close()


@contextlib.contextmanager
def sampling(redis_url: str, *prefixes: str) -> Iterator[Sampler]:
    with Sampler(redis_url, prefixes) as sampler:
        yield sampler


def pool(connection: Redis, name: str):
    return next((p for p in list_pools(connection) if p.name == name), None)


def demo(farm: Farm, n: int, seconds: float, renderer: str = "demo", **options: Any) -> list[str]:
    return [farm.submit(renderer, {"duration": seconds, "stages": 1}, **options) for _ in range(n)]


def finished(farm: Farm, ids: list[str], timeout: float = 30.0) -> None:
    for job_id in ids:
        assert farm.wait(job_id, timeout=timeout).status is JobStatus.FINISHED


def hold_for(seconds: float, check) -> None:
    """``check()`` must stay true for ``seconds`` (a pool that wrongly grows does so within ~1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check()
        time.sleep(0.05)


# -- pure -----------------------------------------------------------------------------------------


def test_pool_sizes_parse_and_configure():
    assert PoolSize.parse("4") == PoolSize(4, 4) and PoolSize(4, 4).fixed and str(PoolSize(4, 4)) == "4"
    assert PoolSize.parse(" 1:4 ") == PoolSize(1, 4) and str(PoolSize(1, 4)) == "1:4"
    assert PoolSize.parse("0:2") == PoolSize(0, 2)
    for bad in ("", "x", "4:1", "0", "0:0", "1:2:3", "-1:2", "1:999"):
        with pytest.raises(ValueError):
            PoolSize.parse(bad)
    worker = parse_config({"worker": {"processes": 1, "max_processes": 6}}).worker
    assert PoolSize.from_config(worker) == PoolSize(1, 6) and worker.idle_exit == 60.0
    assert PoolSize.from_config(parse_config({}).worker) == PoolSize(2, 2)
    assert PoolSize.from_config(
        parse_config({"worker": {"processes": 0, "max_processes": 3}}).worker
    ) == PoolSize(0, 3)
    for bad in ({"processes": 4, "max_processes": 2}, {"processes": 0}):
        with pytest.raises(ConfigError):
            parse_config({"worker": bad})


def test_both_option_spellings_take_min_max():
    from farm.cli.commands import cli

    for command in ("worker", "up", "supervisor-config", "systemd-config"):
        params = {p.name: p for p in cli.commands[command].params}
        option = next(p for p in params.values() if "--workers" in getattr(p, "opts", []))
        assert option.type.convert("1:4", None, None) == PoolSize(1, 4)
        with pytest.raises(click.BadParameter):
            option.type.convert("4:1", None, None)
    worker_opts = next(p for p in cli.commands["worker"].params if "--workers" in p.opts).opts
    assert "--processes" in worker_opts


# -- what counts as work that could start now (scale.lua, no workers) ------------------------------


def look(connection: Redis, config, size: PoolSize = PoolSize(0, 8), workers=(), gone=()):
    return Scaler(connection, config, "probe-pool", size).look(list(workers), list(gone))


def test_eligible_work_counts_only_what_could_start_now(sfarm: Farm, connection: Redis, scale_config):
    demo(sfarm, 3, 1.0)
    assert look(connection, scale_config).eligible == 3
    assert look(connection, scale_config).target == 3 and look(connection, scale_config).add == 3
    # a paused queue does not count
    demo(sfarm, 2, 1.0, priority="low")
    sfarm.pause("low")
    assert look(connection, scale_config).eligible == 3
    sfarm.resume("low")
    assert look(connection, scale_config).eligible == 5
    # a renderer at its cap: its jobs do not count, in the queue or held
    sfarm.set_caps(renderers={"demo": 2})
    assert look(connection, scale_config).eligible == 2
    # the total cap: nothing counts once it is in use
    sfarm.set_caps(total=0)
    assert look(connection, scale_config).eligible == 0
    sfarm.set_caps(total=10, renderers={"demo": None})
    # rq suspend
    connection.set("rq:suspended", 1)
    assert look(connection, scale_config).eligible == 0
    connection.delete("rq:suspended")
    # a queued job that is in no queue (e.g. waiting on a dependency) does not count
    for p in ("high", "medium", "low"):
        connection.delete(f"rq:queue:{p}")
    assert look(connection, scale_config).eligible == 0
    # MAX caps the target; MIN is its floor
    demo(sfarm, 6, 1.0)
    decision = look(connection, scale_config, PoolSize(1, 4))
    assert decision.target == 4 and decision.add == 4
    assert look(connection, scale_config, PoolSize(7, 9)).target == 7


def test_held_jobs_count_only_while_their_renderer_has_a_free_slot(
    sfarm: Farm, connection: Redis, scale_config, burst
):
    sfarm.set_caps(renderers={"alpha": 0})
    ids = demo(sfarm, 3, 0.0, renderer="alpha") + demo(sfarm, 1, 0.0)
    burst()  # runs the demo job, holds the alpha ones (their cap is 0) in farm:held:alpha
    assert connection.zcard("farm:held:alpha") == 3 and connection.llen("rq:queue:medium") == 0
    assert look(connection, scale_config).eligible == 0
    sfarm.set_caps(renderers={"alpha": 2})
    assert look(connection, scale_config).eligible == 2
    sfarm.pause("medium")
    assert look(connection, scale_config).eligible == 0
    sfarm.resume("medium")
    burst()
    finished(sfarm, ids)


def test_the_walk_is_bounded_and_idle_workers_elsewhere_count(sfarm: Farm, connection: Redis, scale_config):
    from farm.worker.scaling import SCAN_BUDGET

    sfarm.set_caps(renderers={"alpha": 0})
    sfarm.submit_many([{"renderer": "alpha", "params": {"duration": 0}}] * (SCAN_BUDGET + 50))
    demo(sfarm, 1, 0.0)  # behind all of them
    # Past the budget nothing is known: with no worker anywhere, one is started (dispatch then
    # moves the capped jobs aside); with any worker alive, none.
    decision = look(connection, scale_config)
    assert decision.eligible == 1 and decision.add == 1
    connection.zadd("farm:heartbeats", {"elsewhere.1": time.time()})
    decision = look(connection, scale_config)
    assert decision.eligible == 0 and decision.add == 0 and decision.idle_elsewhere == 1


def test_idle_and_starting_workers_elsewhere_count(sfarm: Farm, connection: Redis, scale_config):
    demo(sfarm, 3, 1.0)
    connection.zadd("farm:heartbeats", {"elsewhere.1": time.time()})
    # an idle worker elsewhere takes one of the jobs; a lately dead one does not count
    assert look(connection, scale_config, PoolSize(0, 4)).add == 2
    decision = look(connection, scale_config, PoolSize(0, 4), gone=["elsewhere.1"])
    assert decision.add == 3 and decision.starting == 3
    # that look reserved 3 starting workers: another pool starts none for the same jobs
    other = Scaler(connection, scale_config, "other-pool", PoolSize(0, 4)).look([], [])
    assert other.starting_elsewhere == 3 and other.add == 0
    # this pool's own workers that have not registered yet are starting: they count once
    decision = look(connection, scale_config, PoolSize(0, 4), workers=["probe-pool.1"])
    assert decision.starting == 2 and decision.add == 1 and decision.target == 2
    # a worker elsewhere that holds a slot is busy, not idle
    connection.hset("farm:slots", "some-job", "demo\telsewhere.1\t0\tmedium")
    assert look(connection, scale_config, PoolSize(0, 4)).idle_elsewhere == 0


# -- real pools ---------------------------------------------------------------------------------


def test_a_pool_grows_to_the_work_never_past_max_and_shrinks_to_min(
    sfarm: Farm, procs, connection: Redis, redis_url: str
):
    procs.worker("--workers", "1:4", "--name", "auto")
    wait_for(lambda: alive(connection, "auto") == 1, timeout=15, what="the minimum")
    wait_for(lambda: (p := pool(connection, "auto")) and p.current == 1, what="published")
    # the TUI's snapshot carries the pools; the bound on concurrency counts the room to grow
    snapshot = take_snapshot(connection, sfarm.config)
    assert [(p.name, p.current, p.maximum) for p in snapshot.pools] == [("auto", 1, 4)]
    assert snapshot.stats.caps.processes == 4
    with sampling(redis_url, "auto") as sampler:
        ids = demo(sfarm, 3, 2.0)
        wait_for(lambda: alive(connection, "auto") == 3, timeout=10, what="3 workers for 3 jobs")
        finished(sfarm, ids)
        assert sampler.peak["auto"] == 3  # one per job: never more
        ids = demo(sfarm, 7, 2.0)
        wait_for(lambda: alive(connection, "auto") == 4, timeout=10, what="MAX workers")
        record = wait_for(lambda: (p := pool(connection, "auto")) and p.current == 4 and p, what="published")
        assert record.target == 4 and record.minimum == 1 and record.maximum == 4 and record.autoscaling
        shown = farm_cli("workers")
        assert shown.returncode == 0 and "POOL" in shown.stdout and "1:4" in shown.stdout
        listed = json.loads(farm_cli("workers", "--json").stdout)
        assert [(p["name"], p["minimum"], p["maximum"], p["autoscaling"]) for p in listed["pools"]] == [
            ("auto", 1, 4, True)
        ]
        finished(sfarm, ids)
        wait_for(lambda: alive(connection, "auto") == 1, timeout=IDLE_EXIT + 8, what="back to the minimum")
        assert sampler.peak["auto"] == 4 and sampler.peak_published["auto"] == 4
    record = wait_for(lambda: (p := pool(connection, "auto")) and p.current == 1 and p, what="published 1")
    assert record.target == 1 and record.busy == 0 and record.idle == 1
    result = replay(read_events(connection), total=10, caps={})
    assert result.violations == [] and len({e["w"] for e in result.starts}) == 4
    assert "died" not in procs.logs()  # the ones above the minimum exited, none died


def test_a_pool_stays_within_the_caps_and_ignores_capped_or_paused_work(
    sfarm: Farm, procs, connection: Redis, redis_url: str
):
    sfarm.set_caps(total=2)
    procs.worker("--processes", "1:4", "--name", "capped")
    wait_for(lambda: alive(connection, "capped") == 1, timeout=15, what="the minimum")
    with sampling(redis_url, "capped") as sampler:
        ids = demo(sfarm, 6, 1.0)
        finished(sfarm, ids)
        assert sampler.peak["capped"] == 2  # the total cap, not MAX
        # a renderer at its cap: its waiting jobs are held, and start no worker
        sfarm.set_caps(total=10, renderers={"alpha": 1})
        wait_for(lambda: alive(connection, "capped") == 1, timeout=IDLE_EXIT + 8, what="back to 1")
        sampler.reset()
        ids = demo(sfarm, 4, 3.0, renderer="alpha")
        hold_for(2.0, lambda: alive(connection, "capped") == 1)
        sfarm.set_caps(renderers={"alpha": 3})  # now they can start: the pool grows to the cap
        wait_for(lambda: alive(connection, "capped") == 3, timeout=10, what="3 workers at cap 3")
        finished(sfarm, ids)
        assert sampler.peak["capped"] == 3
        # a paused queue
        wait_for(lambda: alive(connection, "capped") == 1, timeout=IDLE_EXIT + 8, what="back to 1")
        sfarm.pause("low")
        ids = demo(sfarm, 3, 1.0, priority="low")
        hold_for(3.0, lambda: alive(connection, "capped") == 1)
        sfarm.resume("low")
        wait_for(lambda: alive(connection, "capped") == 3, timeout=10, what="3 workers once resumed")
        finished(sfarm, ids)
    result = replay(read_events(connection), total=10, caps={})
    assert result.violations == [] and result.max_total == 3


def test_scaling_down_never_stops_a_busy_worker(sfarm: Farm, procs, connection: Redis, redis_url: str):
    procs.worker("--workers", "1:3", "--name", "busy")
    wait_for(lambda: alive(connection, "busy") == 1, timeout=15, what="the minimum")
    with sampling(redis_url, "busy"):
        ids = demo(sfarm, 3, 2.0 + 3 * IDLE_EXIT)  # runs far past idle_exit
        wait_for(lambda: alive(connection, "busy") == 3, timeout=10, what="3 workers")
        # busy past idle_exit: none of them exits while its job runs
        hold_for(2 * IDLE_EXIT + 1, lambda: alive(connection, "busy") == 3)
        finished(sfarm, ids)
    for job_id in ids:
        assert sfarm.get(job_id).attempts == 1
    wait_for(lambda: alive(connection, "busy") == 1, timeout=IDLE_EXIT + 8, what="back to the minimum")
    ends = [e for e in read_events(connection) if e["e"] == "end"]
    assert len(ends) == 3 and {e["s"] for e in ends} == {"finished"}


def test_a_scaled_worker_killed_mid_job_gets_its_job_back(
    sfarm: Farm, procs, connection: Redis, redis_url: str
):
    procs.scheduler()
    procs.worker("--workers", "1:3", "--name", "kill")
    wait_for(lambda: alive(connection, "kill") == 1, timeout=15, what="the minimum")
    first = demo(sfarm, 1, 6.0, max_retries=3)[0]
    wait_for(lambda: sfarm.get(first).status is JobStatus.RUNNING, what="first running")
    second = demo(sfarm, 1, 3.0, max_retries=3)[0]
    name = wait_for(
        lambda: (i := sfarm.get(second)).status is JobStatus.RUNNING and i.worker, timeout=10, what="scaled"
    )
    assert name != sfarm.get(first).worker  # a worker the pool started for it
    pid = next(w.pid for w in sfarm.workers() if w.name == name and w.pid)
    horse = wait_for(lambda: faults.horse_of(pid), what="horse")
    for victim in (pid, horse):
        os.kill(victim, signal.SIGKILL)
    info = sfarm.wait(second, timeout=40)
    assert info.status is JobStatus.FINISHED and info.attempts == 2
    assert sfarm.wait(first, timeout=20).status is JobStatus.FINISHED
    assert replay(read_events(connection), total=10, caps={}).violations == []
    assert f"worker {name} (pid {pid}) died" in procs.logs()


def test_two_pools_start_one_worker_for_one_job(sfarm: Farm, procs, connection: Redis, redis_url: str):
    procs.worker("--workers", "0:3", "--name", "left")
    procs.worker("--workers", "0:3", "--name", "right")
    wait_for(lambda: {p.name for p in list_pools(connection)} == {"left", "right"}, what="both pools")
    with sampling(redis_url, "left", "right") as sampler:
        for _ in range(3):
            job_id = demo(sfarm, 1, 1.5)[0]
            finished(sfarm, [job_id])
            wait_for(
                lambda: alive(connection, "left") + alive(connection, "right") == 0,
                timeout=IDLE_EXIT + 8,
                what="both back to 0",
            )
        assert sampler.peak_total == 1


def test_burst_pools_end_when_the_work_is_done(sfarm: Farm, procs, connection: Redis):
    ids = demo(sfarm, 4, 0.5)
    fixed = procs.worker("--workers", "2", "--burst", "--name", "fixedburst")
    assert fixed.wait(timeout=30) == 0  # its workers quit and are not replaced
    finished(sfarm, ids, timeout=1)
    assert "fixedburst.2: nothing left" in procs.logs() and "fixedburst.3" not in procs.logs()
    ids = demo(sfarm, 4, 1.0)
    scaling = procs.worker("--workers", "0:3", "--burst", "--name", "autoburst")
    assert scaling.wait(timeout=30) == 0
    finished(sfarm, ids, timeout=1)
    used = {e["w"] for e in read_events(connection) if e["e"] == "start" and e["w"].startswith("autoburst.")}
    assert 2 <= len(used) <= 3
    assert list_pools(connection) == []  # a stopped pool takes its record away


def test_jobs_waiting_on_a_dependency_count_once_released(
    sfarm: Farm, procs, connection: Redis, redis_url: str, scale_config
):
    first = demo(sfarm, 1, 3.0)[0]
    waiting = [sfarm.submit("demo", {"duration": 2.5, "stages": 1}, after=[first]) for _ in range(3)]
    assert look(connection, scale_config).eligible == 1  # deferred jobs are in no queue
    Scaler(connection, scale_config, "probe-pool", PoolSize(0, 8)).forget()  # its reservation
    procs.worker("--workers", "1:3", "--name", "deps")
    wait_for(lambda: sfarm.get(first).status is JobStatus.RUNNING, timeout=15, what="first running")
    hold_for(1.5, lambda: alive(connection, "deps") == 1)
    wait_for(lambda: alive(connection, "deps") == 3, timeout=10, what="3 workers once released")
    finished(sfarm, [first, *waiting])
