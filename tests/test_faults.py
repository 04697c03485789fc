"""Fault tests with real processes (the fast ones; ``bench/chaos.py`` runs the long mix).

Each fault is checked against the probe renderer's own record of real executions (tests/faults.py),
so a render that ran twice at once is seen even where Redis says all is well: stalled workers and
horses, a partitioned worker, a SIGKILLed horse, a Redis killed under a render, a lost reply to a
submit, and what is left behind afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from farm import ErrorKind, Farm, JobStatus
from farm.errors import FarmUnavailableError
from farm.scheduler.sweep import sweep_once
from farm.worker.housekeeping import clean_host_files
from tests import faults
from tests.events import read_events, replay
from tests.util import wait_for, wait_workers

PLUGINS = {"probe": "tests.faults:ProbeRenderer", "stamp": "tests.helpers:StampRenderer"}


@pytest.fixture
def probe_config(make_config):
    return make_config(
        plugins=PLUGINS, caps={"total": 4, "renderers": {"probe": 1, "stamp": 1}, "windows": []}
    )


@pytest.fixture
def pfarm(probe_config, connection: Redis, redis_url: str) -> Farm:
    return Farm(connection, probe_config, url=redis_url, who="tester")


@pytest.fixture
def stopped() -> Any:
    """Pids a test SIGSTOPped: always continued (then killed by the usual teardown)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def worker_pid(procs, name: str) -> int:
    return procs.by_name[name].pid


def start_worker(procs, name: str, env: dict[str, str] | None = None):
    proc = procs.worker("--processes", "1", "--name", name, env=env)
    procs.by_name = getattr(procs, "by_name", {})
    procs.by_name[name] = proc
    return proc


def running_on(farm: Farm, job_id: str, timeout: float = 20.0, probe: Path | None = None) -> str:
    """The worker running the job, once it runs (and, with ``probe``, once its render started)."""
    info = wait_for(
        lambda: (i := farm.get(job_id)).status is JobStatus.RUNNING and i.worker and i,
        timeout=timeout,
        what=f"{job_id} running",
    )
    if probe is not None:
        wait_for(lambda: probe.exists() and job_id in probe.read_text(), timeout=timeout, what="render")
    return info.worker


def no_double_runs(log: Path) -> faults.ProbeLog:
    probe = faults.read_probe(log)
    assert faults.overlaps(probe) == [], "two executions of one job ran at the same time"
    assert faults.completed_twice(probe) == {}, "a completed render was rendered again"
    return probe


def test_a_stopped_worker_lets_its_horse_finish_and_nothing_runs_twice(
    pfarm: Farm, procs, connection: Redis, tmp_path: Path, stopped
):
    log = tmp_path / "probe.jsonl"
    procs.scheduler()
    start_worker(procs, "a")
    job_id = pfarm.submit("probe", {"seconds": 6, "log": str(log)}, max_retries=3)
    name = running_on(pfarm, job_id, probe=log)
    start_worker(procs, "b")
    os.kill(worker_pid(procs, name), signal.SIGSTOP)
    stopped.append(worker_pid(procs, name))
    # The horse renews the lease itself: nothing is taken over, and it records its own end.
    info = pfarm.wait(job_id, timeout=30)
    assert info.status is JobStatus.FINISHED and info.attempts == 1
    probe = no_double_runs(log)
    assert len(probe.by_job()[job_id]) == 1


def test_a_stopped_worker_and_horse_lose_the_run_and_their_subprocess_is_killed(
    pfarm: Farm, procs, connection: Redis, tmp_path: Path, stopped
):
    log = tmp_path / "probe.jsonl"
    procs.scheduler()
    start_worker(procs, "a")
    job_id = pfarm.submit("probe", {"seconds": 8, "log": str(log), "subprocess": True}, max_retries=3)
    name = running_on(pfarm, job_id, probe=log)
    wpid = worker_pid(procs, name)
    horse = wait_for(lambda: faults.horse_of(wpid), what="horse")
    wait_for(lambda: log.exists() and '"role":"child"' in log.read_text(), what="probe child started")
    start_worker(procs, "b")
    for pid in (wpid, horse):
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
    # The guard process kills the render (its subprocess too) when the lease runs out; the sweep
    # then takes the run over and the other worker renders the job.
    info = pfarm.wait(job_id, timeout=40)
    assert info.status is JobStatus.FINISHED and info.attempts == 2
    assert info.history[0].error_kind is ErrorKind.WORKER_LOST
    for pid in (wpid, horse):
        with contextlib.suppress(ProcessLookupError):  # the guard may have killed the horse
            os.kill(pid, signal.SIGCONT)
    time.sleep(1.5)  # the old worker wakes up to a run that is not its own any more
    probe = no_double_runs(log)
    first = [r for r in probe.by_job()[job_id] if r.attempt == 1]
    assert first and not first[0].completed and not first[0].running
    assert pfarm.get(job_id).status is JobStatus.FINISHED
    assert replay(read_events(connection), total=4, caps={"probe": 1}).violations == []


def test_a_partitioned_worker_kills_its_render_before_the_job_runs_elsewhere(
    pfarm: Farm, procs, connection: Redis, redis_server: str, tmp_path: Path
):
    log = tmp_path / "probe.jsonl"
    with faults.TcpProxy(redis_server.removeprefix("unix://")) as proxy:
        procs.scheduler()
        start_worker(procs, "far", env={"FARM_REDIS_URL": proxy.url})
        job_id = pfarm.submit("probe", {"seconds": 10, "log": str(log), "subprocess": True}, max_retries=3)
        assert running_on(pfarm, job_id) == "far"
        wait_for(lambda: log.exists() and '"role":"child"' in log.read_text(), what="probe child started")
        start_worker(procs, "near")
        proxy.freeze()
        info = wait_for(
            lambda: (i := pfarm.get(job_id)).status is JobStatus.RUNNING and i.worker == "near" and i,
            timeout=30,
            what="job taken over by the near worker",
        )
        assert info.attempts == 2
        proxy.thaw()
        info = pfarm.wait(job_id, timeout=30)
    assert info.status is JobStatus.FINISHED
    no_double_runs(log)
    assert replay(read_events(connection), total=4, caps={"probe": 1}).violations == []


def test_only_the_winning_attempt_is_published(
    pfarm: Farm, procs, connection: Redis, tmp_path: Path, stopped
):
    procs.scheduler()
    start_worker(procs, "a")
    job_id = pfarm.submit("stamp", {"seconds": 4}, max_retries=3)
    name = running_on(pfarm, job_id)
    wpid = worker_pid(procs, name)
    horse = wait_for(lambda: faults.horse_of(wpid), what="horse")
    wait_for(lambda: pfarm.get(job_id).stage == "stamping", what="render started")
    start_worker(procs, "b")
    for pid in (wpid, horse):  # both stopped mid-render: the stale horse would publish on waking
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
    info = pfarm.wait(job_id, timeout=40)
    assert info.status is JobStatus.FINISHED and info.attempts == 2
    for pid in (wpid, horse):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    time.sleep(2)
    output = pfarm.config.output_dir / job_id
    assert (output / "stamp.txt").read_text().startswith("attempt 2 ")
    assert info.result and info.result["outputs"] == [str(output / "stamp.txt")]
    partial = pfarm.config.output_dir / ".partial"
    assert not partial.exists() or not any(partial.iterdir()), "a losing attempt left its staging dir"


def test_a_requeued_job_keeps_its_place_in_line(pfarm: Farm, procs, connection: Redis, tmp_path: Path):
    log = tmp_path / "probe.jsonl"
    start_worker(procs, "a")
    wait_workers(connection, 1)
    ids = [
        pfarm.submit("probe", {"seconds": 1.5, "log": str(log), "job": name}, max_retries=2, name=name)
        for name in "ABCD"
    ]
    running_on(pfarm, ids[0])
    horse = wait_for(lambda: faults.horse_of(worker_pid(procs, "a")), what="horse")
    os.kill(horse, signal.SIGKILL)
    for job_id in ids:
        assert pfarm.wait(job_id, timeout=30).status is JobStatus.FINISHED
    starts = [e["job"] for e in read_events(connection) if e["e"] == "start"]
    assert starts == [ids[0], ids[0], ids[1], ids[2], ids[3]]
    assert pfarm.get(ids[0]).history[0].error_kind is ErrorKind.WORKER_LOST


def test_a_dead_workers_job_is_back_in_line_within_the_lease_and_margin(
    pfarm: Farm, procs, connection: Redis, tmp_path: Path
):
    log = tmp_path / "probe.jsonl"
    procs.scheduler()
    start_worker(procs, "a")
    job_id = pfarm.submit("probe", {"seconds": 30, "log": str(log)}, max_retries=2)
    running_on(pfarm, job_id)
    killed = time.monotonic()
    faults.kill_tree(worker_pid(procs, "a"))
    wait_for(lambda: pfarm.get(job_id).status is JobStatus.QUEUED, timeout=20, what="back in line")
    # lease 5 s + margin 2 s + a scheduler tick; the bar is 15 s with the default config
    assert time.monotonic() - killed < 12
    assert pfarm.get(job_id).position == 1


# -- Redis going away ------------------------------------------------------------------------------


class AofRedis:
    """A redis-server of the test's own, with an append-only file, that can be killed and restarted."""

    def __init__(self, directory: Path) -> None:
        from farm.cli.embedded import redis_binary

        self.directory = directory
        self.socket = directory / "redis.sock"
        self.argv = [
            redis_binary(),
            *("--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"),
            *("--dir", str(directory), "--appendonly", "yes", "--appendfsync", "always", "--save", ""),
        ]
        self.url = f"unix://{self.socket}"
        self.proc: Any = None

    def start(self) -> float:
        import subprocess

        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=15, what="redis up")
        return time.monotonic()

    def answers(self) -> bool:
        client = Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def aof_redis(tmp_path: Path):
    server = AofRedis(tmp_path / "aof")
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


def test_a_render_completed_while_redis_was_down_is_recorded_not_redone(
    make_config, aof_redis: AofRedis, procs, tmp_path: Path
):
    config = make_config(plugins=PLUGINS, redis={"url": aof_redis.url}, caps={"windows": []})
    connection = Redis.from_url(aof_redis.url)
    farm = Farm(connection, config, url=aof_redis.url)
    log = tmp_path / "probe.jsonl"
    procs.scheduler()
    start_worker(procs, "a")
    job_id = farm.submit("probe", {"seconds": 3, "log": str(log)}, max_retries=3)
    running_on(farm, job_id, probe=log)
    aof_redis.kill()
    wait_for(lambda: '"ev":"end"' in log.read_text(), timeout=15, what="render completed")
    journal = config.data_dir / "journal"
    wait_for(lambda: journal.exists() and any(journal.glob("*.json")), timeout=15, what="journaled")
    aof_redis.start()
    info = farm.wait(job_id, timeout=20)
    assert info.status is JobStatus.FINISHED and info.attempts == 1
    time.sleep(3)  # a sweep that wrongly took it over would have requeued it by now
    assert farm.get(job_id).status is JobStatus.FINISHED
    probe = no_double_runs(log)
    assert len(probe.by_job()[job_id]) == 1
    assert not any(journal.glob("*.json"))
    connection.close()


def test_dispatch_resumes_soon_after_redis_answers_again(
    make_config, aof_redis: AofRedis, procs, tmp_path: Path
):
    config = make_config(redis={"url": aof_redis.url}, caps={"windows": []})
    connection = Redis.from_url(aof_redis.url)
    farm = Farm(connection, config, url=aof_redis.url)
    procs.scheduler()
    start_worker(procs, "a")
    assert farm.wait(farm.submit("demo", {"duration": 0}), timeout=20).status is JobStatus.FINISHED
    aof_redis.kill()
    time.sleep(6)  # longer than a lease: everyone is in their retry loop
    answered = aof_redis.start()
    job_id = farm.submit("demo", {"duration": 0})
    info = farm.wait(job_id, timeout=20)
    assert info.status is JobStatus.FINISHED
    assert info.started_at is not None
    # Generous bound for a loaded CI machine; bench/chaos.py measures the real figure (target 2 s).
    assert time.monotonic() - answered < 6
    connection.close()


# -- submits whose reply is lost ------------------------------------------------------------------


class ReplyEater:
    """A TCP relay to Redis that delivers the client's EXEC and then closes the connection instead
    of returning the reply, ``times`` times (after that it relays normally, or refuses everything
    when ``then_refuse``): a submit whose transaction landed but whose answer never came back."""

    def __init__(self, upstream: str, times: int = 1, then_refuse: bool = False) -> None:
        self.upstream, self.times, self.then_refuse = upstream, times, then_refuse
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.times <= 0 and self.then_refuse:
                client.close()
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        up = socket.socket(socket.AF_UNIX)
        up.connect(self.upstream)
        eat = False

        def back() -> None:
            with contextlib.suppress(OSError):
                while data := up.recv(65536):
                    if eat:
                        break
                    client.sendall(data)
            for s in (client, up):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=back, daemon=True).start()
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if b"EXEC" in data and self.times > 0:
                    self.times -= 1
                    eat = True
                up.sendall(data)
                if eat:
                    time.sleep(0.2)
                    break
        for s in (client, up):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_a_submit_whose_reply_was_lost_is_stored_once_and_returns_its_id(config, connection, redis_server):
    eater = ReplyEater(redis_server.removeprefix("unix://"))
    farm = Farm(Redis.from_url(eater.url, socket_timeout=2), config, url=eater.url)
    job_id = farm.submit("demo", {"duration": 0})
    assert connection.lrange("rq:queue:medium", 0, -1) == [job_id.encode()]
    assert connection.hget(f"rq:job:{job_id}", "status") == b"queued"
    eater.close()


def test_a_submit_that_cannot_know_says_so_and_names_the_id(config, connection, redis_server):
    eater = ReplyEater(redis_server.removeprefix("unix://"), then_refuse=True)
    farm = Farm(Redis.from_url(eater.url, socket_timeout=2), config, url=eater.url)
    with pytest.raises(FarmUnavailableError, match="may or may not have been stored") as caught:
        farm.submit("demo", {"duration": 0}, job_id="ghost-1")
    assert "ghost-1" in str(caught.value)
    assert connection.hget("rq:job:ghost-1", "status") == b"queued"  # it did land: the error said so
    eater.close()


def test_a_submit_to_a_dead_redis_is_certainly_not_stored(config, tmp_path):
    farm = Farm(Redis(unix_socket_path=str(tmp_path / "nothing.sock")), config)
    with pytest.raises(FarmUnavailableError, match="nothing was stored"):
        farm.submit("demo", {"duration": 0})


# -- nothing grows without bound ------------------------------------------------------------------

BOUNDED = {
    "farm:caps", "farm:slots", "farm:leases", "farm:held_renderers", "farm:seq", "farm:paused",
    "farm:wake", "farm:jobs", "farm:heartbeats", "farm:scheduler:heartbeat", "farm:sweep:lock",
    "farm:events", "farm:audit", "farm:redis:restarts", "rq:queues", "rq:workers",
    "rq:scheduler:scheduled_jobs", "rq:suspended", "farm:pools", "farm:metrics", "farm:policy",
    "farm:serve", "farm:notify:cursor", "farm:notify:due", "farm:notify:alerts", "farm:notify:log",
    "farm:cache:index",
}  # fmt: skip
BOUNDED_PREFIXES = (
    "rq:queue:", "rq:finished:", "rq:failed:", "rq:canceled:", "rq:wip:", "rq:scheduled:",
    "rq:deferred:", "rq:workers:", "farm:held:", "farm:scheduled:", "rq:scheduler",
)  # fmt: skip
PER_JOB = ("rq:job:", "farm:log:", "farm:owner:", "rq:executions:")


def unbounded_keys(connection: Redis) -> list[str]:
    """Keys without a TTL that belong neither to a live job nor to a known bounded structure."""
    bad = []
    for raw in connection.scan_iter(count=1000):
        key = raw.decode()
        if connection.ttl(key) != -1 or key in BOUNDED or key.startswith(BOUNDED_PREFIXES):
            continue
        job_id = next((key[len(p) :] for p in PER_JOB if key.startswith(p)), None)
        if job_id is not None:
            status = connection.hget(f"rq:job:{job_id}", "status")
            if status in (b"queued", b"started", b"scheduled"):
                continue
        bad.append(key)
    return bad


def test_after_a_soak_every_key_belongs_to_a_live_job_or_a_bounded_structure(
    make_config, connection: Redis, redis_url: str, procs
):
    config = make_config(retention={"finished": 3, "failed": 3, "canceled": 3})
    farm = Farm(connection, config, url=redis_url)
    procs.scheduler()
    procs.worker("--processes", "2")
    ids = [farm.submit("demo", {"duration": 0, "stages": 2}) for _ in range(40)]
    ids += [farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"}) for _ in range(10)]
    ids += [farm.submit("demo", {"duration": 0, "fail_with": "api_error"}, max_retries=1) for _ in range(5)]
    slow = farm.submit("demo", {"duration": 30})
    for job_id in ids:
        farm.wait(job_id, timeout=60)
    farm.cancel(slow)
    assert unbounded_keys(connection) == []
    # Retention (3 s here): the ended jobs, their logs and listing entries all go away.
    wait_for(lambda: not list(connection.scan_iter("rq:job:*")), timeout=30, what="jobs expired")
    assert not list(connection.scan_iter("farm:log:*"))
    sweep_once(connection, config, now=time.time() + 2 * 3600)  # the listing keeps ids an hour longer
    assert connection.zcard("farm:jobs") == 0
    assert unbounded_keys(connection) == []


def test_a_short_jobs_log_expires_with_it(farm: Farm, connection: Redis, burst):
    job_id = farm.submit("demo", {"duration": 0, "stages": 3})
    burst()
    assert farm.get(job_id).status is JobStatus.FINISHED
    assert connection.llen(f"farm:log:{job_id}") > 0
    assert 0 < connection.ttl(f"farm:log:{job_id}") <= farm.config.retention.finished


def test_retention_removes_log_files_of_jobs_that_are_gone(farm: Farm, connection: Redis, burst):
    job_id = farm.submit("demo", {"duration": 0})
    burst()
    log_dir = farm.config.log_dir
    live = log_dir / f"{job_id}.log"
    gone = log_dir / "deadbeef.log"
    gone.write_text("old\n")
    assert live.exists()
    old = time.time() - 7200
    for path in (live, gone):
        os.utime(path, (old, old))
    assert clean_host_files(connection, farm.config) == 1
    assert live.exists() and not gone.exists()


def test_no_false_takeover_warnings_when_horses_finish(farm: Farm, procs, connection: Redis, tmp_path: Path):
    procs.worker("--processes", "2")
    ids = farm.submit_many([{"renderer": "demo", "params": {"duration": 0, "stages": 1}}] * 60)
    for job_id in ids:
        assert farm.wait(job_id, timeout=60).status is JobStatus.FINISHED
    assert "taken over" not in procs.logs()


@pytest.mark.parametrize("ending", ["timeout", "cancel", "horse killed"])
def test_staging_dirs_are_removed_on_every_ending(
    make_config, connection: Redis, redis_url: str, procs, ending
):
    config = make_config(plugins={"fill": "tests.helpers:FillRenderer"})
    farm = Farm(connection, config, url=redis_url)
    worker = procs.worker("--processes", "1")
    job_id = farm.submit("fill", {"seconds": 30}, timeout=3 if ending == "timeout" else 60, max_retries=0)
    partial = config.output_dir / ".partial"
    wait_for(
        lambda: partial.exists() and any(partial.glob(f"{job_id}.*/half.bin")), timeout=20, what="staged"
    )
    if ending == "cancel":
        farm.cancel(job_id)
    elif ending == "horse killed":
        os.kill(wait_for(lambda: faults.horse_of(worker.pid), what="horse"), signal.SIGKILL)
    info = farm.wait(job_id, timeout=30)
    assert info.status in (JobStatus.FAILED, JobStatus.CANCELED)
    wait_for(lambda: not any(partial.iterdir()), timeout=5, what="staging dir removed")
    assert not (config.output_dir / job_id).exists()
