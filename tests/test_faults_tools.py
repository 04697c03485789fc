"""The fault-injection tools themselves (tests/faults.py): the probe's record and what is read
from it, the freezable proxy against a real redis-server, and process-tree signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError, TimeoutError

from farm.render import RendererEnv, SimpleContext
from tests import faults
from tests.util import wait_for


def line(
    path: Path, job: str, run: str, ev: str, t: float, *, pid: int = 999_999, role: str = "horse", **extra
):
    faults.append_line(
        path,
        {"job": job, "run": run, "ev": ev, "t": t, "pid": pid, "pst": 1, "role": role, "attempt": 1, **extra},
    )


# -- reading the probe file (pure) ---------------------------------------------------------------


def test_overlap_needs_both_runs_alive_at_once(tmp_path: Path):
    log = tmp_path / "probe.jsonl"
    line(log, "a", "r1", "start", 10.0)
    line(log, "a", "r1", "end", 12.0)
    line(log, "a", "r2", "start", 12.5)  # after r1 ended: no overlap
    line(log, "a", "r2", "end", 14.0)
    line(log, "b", "r3", "start", 10.0)
    line(log, "b", "r3", "beat", 11.0)  # r3 died silently after 11.0 (no end, pid gone)
    line(log, "b", "r4", "start", 11.5)
    line(log, "b", "r4", "end", 13.0)
    line(log, "c", "r5", "start", 10.0)
    line(log, "c", "r5", "beat", 15.0)  # r5 still wrote at 15: it kept running after r6 started
    line(log, "c", "r6", "start", 13.0)
    line(log, "c", "r6", "end", 16.0)
    found = faults.overlaps(faults.read_probe(log, now=100.0))
    assert [(o.job, o.first, o.second) for o in found] == [("c", "r5", "r6")]
    assert found[0].seconds == pytest.approx(2.0)


def test_a_run_without_end_is_running_until_read_unless_a_kill_marker_says_otherwise(tmp_path: Path):
    log = tmp_path / "probe.jsonl"
    me = faults.start_ticks(faults.os.getpid())
    # A run whose process (this one) is alive and wrote no end line: running until read time.
    faults.append_line(
        log,
        {
            "job": "a",
            "run": "r1",
            "ev": "start",
            "t": 10.0,
            "pid": faults.os.getpid(),
            "pst": me,
            "role": "horse",
        },
    )
    line(log, "a", "r2", "start", 50.0)
    line(log, "a", "r2", "end", 55.0)
    read = faults.read_probe(log, now=60.0)
    mine = next(r for r in read.runs if r.run == "r1")
    assert mine.running and mine.finish == 60.0
    assert [(o.start, o.end) for o in faults.overlaps(read)] == [(50.0, 55.0)]
    # A kill marker for a pid ends its run there.
    log2 = tmp_path / "probe2.jsonl"
    line(log2, "b", "r3", "start", 10.0, pid=4242)
    faults.append_line(log2, {"ev": "kill", "pid": 4242, "pst": 1, "t": 12.0})
    line(log2, "b", "r4", "start", 13.0, pid=4343)
    line(log2, "b", "r4", "end", 14.0, pid=4343)
    read2 = faults.read_probe(log2, now=60.0)
    assert faults.overlaps(read2) == []
    assert read2.runs[0].finish == 12.0 and not read2.runs[0].completed


def test_child_keeps_a_run_alive_after_its_horse_died(tmp_path: Path):
    log = tmp_path / "probe.jsonl"
    line(log, "a", "r1", "start", 10.0, pid=1)
    faults.append_line(log, {"ev": "kill", "pid": 1, "pst": 1, "t": 11.0})
    line(log, "a", "r1", "start", 10.1, pid=2, role="child")
    line(log, "a", "r1", "end", 20.0, pid=2, role="child")  # the orphaned child finished its work
    line(log, "a", "r2", "start", 15.0, pid=3)
    line(log, "a", "r2", "end", 25.0, pid=3)
    read = faults.read_probe(log, now=100.0)
    r1 = next(r for r in read.runs if r.run == "r1")
    assert r1.finish == 20.0 and not r1.completed  # the horse never completed
    assert [(o.first, o.second) for o in faults.overlaps(read)] == [("r1", "r2")]


def test_concurrency_and_cap_violations_per_renderer(tmp_path: Path):
    log = tmp_path / "probe.jsonl"
    for i, (renderer, start, end) in enumerate(
        [("probe", 0, 10), ("probe", 1, 5), ("probe", 5, 8), ("probe", 6, 9), ("other", 2, 3)]
    ):
        line(log, f"j{i}", f"r{i}", "start", start, renderer=renderer)
        line(log, f"j{i}", f"r{i}", "end", end, renderer=renderer)
    read = faults.read_probe(log, now=100.0)
    # at 5 one probe ends as another starts (not concurrent); at 6 three probes run.
    assert faults.max_concurrency(read) == {"probe": 3, "*": 3, "other": 1}
    found = faults.cap_violations(read, {"probe": 2}, total=3)
    assert [(v.at, v.renderer, v.running) for v in found] == [(6, "probe", 3)]
    assert faults.cap_violations(read, {"probe": 3}, total=2)[0].renderer == "*"


def test_completed_twice(tmp_path: Path):
    log = tmp_path / "probe.jsonl"
    for run, (s, e) in {"r1": (0, 1), "r2": (2, 3)}.items():
        line(log, "a", run, "start", s)
        line(log, "a", run, "end", e)
    line(log, "b", "r3", "start", 0)
    line(log, "b", "r3", "end", 1)
    assert faults.completed_twice(faults.read_probe(log, now=10)) == {"a": 2}


# -- the probe renderer (in-process, with a real child process) ---------------------------------


@pytest.mark.parametrize("in_child", [False, True])
def test_probe_renderer_records_its_execution(tmp_path: Path, in_child: bool):
    log = tmp_path / "probe.jsonl"
    renderer = faults.ProbeRenderer()
    params = renderer.validate({"seconds": 0.7, "log": str(log), "subprocess": in_child, "job": "x"})
    env = RendererEnv(tmp_path, tmp_path, (tmp_path,), tmp_path)
    ctx = SimpleContext(job_id="job1", staging_dir=tmp_path / "s", env=env, attempt=2)
    result = renderer.render(params, ctx)
    read = faults.read_probe(log)
    assert len(read.runs) == 1
    run = read.runs[0]
    assert (run.job, run.attempt, run.completed, run.running) == ("job1", 2, True, False)
    assert result["probe_run"] == run.run
    assert sorted(p.role for p in run.parts) == (["child", "horse"] if in_child else ["horse"])
    assert 0.6 <= run.finish - run.start < 3
    events = [faults.json.loads(x)["ev"] for x in log.read_text().splitlines()]
    assert "beat" in events


# -- the proxy (real redis-server) ---------------------------------------------------------------


def test_proxy_forwards_freezes_thaws_and_drops(redis_url: str):
    path = redis_url.removeprefix("unix://")
    with faults.TcpProxy(path) as proxy:
        client = Redis.from_url(proxy.url, socket_timeout=0.5)
        assert client.set("k", "v") and client.get("k") == b"v"
        assert proxy.connections == 1
        proxy.freeze()
        with pytest.raises((TimeoutError, ConnectionError)):
            Redis.from_url(proxy.url, socket_timeout=0.5, retry_on_timeout=False).get("k")
        direct = Redis.from_url(redis_url)
        assert direct.get("k") == b"v"  # only the proxied link is frozen
        proxy.thaw()
        later = Redis.from_url(proxy.url, socket_timeout=2)
        assert later.get("k") == b"v"
        raw = faults.socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        raw.sendall(b"PING\r\n")
        assert raw.recv(100) == b"+PONG\r\n"
        proxy.drop()
        assert proxy.connections == 0
        assert raw.recv(100) == b""  # the connection was closed under the client
        raw.close()
        assert later.get("k") == b"v"  # redis-py reconnects through the proxy
        direct.close()


def test_proxy_holds_data_while_frozen_and_delivers_it_on_thaw(redis_url: str):
    path = redis_url.removeprefix("unix://")
    with faults.TcpProxy(path) as proxy:
        client = Redis.from_url(proxy.url, socket_timeout=5)
        client.ping()
        proxy.freeze()
        started = time.monotonic()
        threading = faults.threading
        timer = threading.Timer(0.6, proxy.thaw)
        timer.start()
        assert client.incr("n") == 1  # sent while frozen, answered after the thaw
        assert time.monotonic() - started >= 0.5
        timer.join()


# -- process trees -------------------------------------------------------------------------------


def test_freeze_thaw_and_kill_a_process_tree():
    code = (
        "import subprocess, sys, time;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    root = subprocess.Popen([sys.executable, "-c", code])
    try:
        kid = wait_for(lambda: faults.horse_of(root.pid), timeout=10, what="child")
        stopped = faults.freeze_tree(root.pid)
        assert stopped == [root.pid, kid]
        assert faults.proc_stat(kid)[0] == "T" and faults.proc_stat(root.pid)[0] == "T"
        faults.thaw_tree(stopped)
        wait_for(lambda: faults.proc_stat(kid)[0] != "T", timeout=5)
        pst = faults.start_ticks(kid)
        assert faults.alive(kid, pst) and not faults.alive(kid, (pst or 0) + 1)
        assert faults.kill_tree(root.pid) == [root.pid, kid]
        assert root.wait(timeout=5) == -signal.SIGKILL
        wait_for(lambda: not faults.alive(kid), timeout=5, what="grandchild gone")
    finally:
        if root.poll() is None:
            root.kill()
