"""Running the farm under a process supervisor: worker children die with their pool, and the
generated supervisord config starts as printed and stops without losing or redoing a render
(a real ``supervisord`` and ``supervisorctl`` on a private unix socket)."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from farm import Farm, JobStatus
from farm.worker.pool import die_with_parent
from tests.faults import alive, children, completed_twice, read_probe
from tests.util import require_tool, wait_for, wait_workers, write_toml

PR_GET_PDEATHSIG = 2
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROGRAMS = ("farm-redis", "farm-serve", "farm-scheduler", "farm-worker")


def test_die_with_parent_sets_the_signal_and_sees_a_dead_parent():
    import ctypes

    pid = os.fork()
    if pid == 0:  # the child: its real parent passes, and the signal is set; a stranger does not
        code = 0
        try:
            libc = ctypes.CDLL(None)
            code |= 0 if die_with_parent(os.getppid(), signal.SIGTERM) else 1
            value = ctypes.c_int()
            libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
            code |= 0 if value.value == signal.SIGTERM else 2
            code |= 0 if not die_with_parent(os.getppid() + 1_000_000) else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_pool_children_die_with_the_pool(procs, connection: Redis):
    """SIGKILL of the pool process: its workers get SIGTERM from the kernel, deregister and exit
    (before, they were orphaned, kept taking jobs, and doctor counted them twice)."""
    pool = procs.worker("--workers", "2")
    wait_workers(connection, 2)
    kids = wait_for(lambda: (k := [p for p in children(pool.pid) if alive(p)]) and len(k) == 2 and k)
    try:
        os.kill(pool.pid, signal.SIGKILL)
        pool.wait(timeout=10)
        wait_for(lambda: not any(alive(k) for k in kids), timeout=3, what="the pool's workers to exit")
        wait_for(lambda: connection.zcard("farm:heartbeats") == 0, timeout=3, what="workers deregistered")
    finally:
        for kid in kids:  # the fixture kills the pool's group, which a dead pool no longer leads
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)


# -- the generated supervisord config, under a real supervisord ------------------------------------


class Supervised:
    """A supervisord running ``farm supervisor-config``'s output, on a private socket."""

    def __init__(self, tmp_path: Path, workers: int = 2, grace: float = 4.0) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="farm-sv-"))  # short: unix socket paths are limited
        self.data = self.base / "data"
        self.site = tmp_path / "site"  # where the config is generated: its directory=
        self.site.mkdir()
        self.probe = self.base / "probe.log"
        self.config_path = self.site / "farm.toml"
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            serve_port = free.getsockname()[1]
        write_toml(
            self.config_path,
            {
                "plugins": {"probe": "tests.faults:ProbeRenderer"},
                "paths": {"data_dir": str(self.data), "input_roots": [str(self.base)]},
                "worker": {"heartbeat_interval": 0.5, "shutdown_grace": grace, "cancel_poll": 0.1},
                "scheduler": {"interval": 0.2, "sweep_interval": 1.0, "worker_timeout": 3.0},
                "serve": {"port": serve_port},
            },
        )
        self.workers = workers
        self.conf = self.base / "supervisord.conf"
        self.log = self.base / "supervisord.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def generate(self) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "farm", "--config", str(self.config_path), "supervisor-config",
             "--workers", str(self.workers)],
            capture_output=True, text=True, cwd=self.site, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        (self.base / "farm.conf").write_text(out.stdout)
        self.conf.write_text(
            f"[unix_http_server]\nfile={self.base}/supervisor.sock\n"
            f"[supervisord]\nlogfile={self.log}\npidfile={self.base}/supervisord.pid\nnodaemon=true\n"
            f"user={pwd.getpwuid(os.getuid()).pw_name}\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[supervisorctl]\nserverurl=unix://{self.base}/supervisor.sock\n"
            f"[include]\nfiles={self.base}/farm.conf\n"
        )
        return out.stdout

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the programs import the probe renderer
        for name in ("FARM_CONFIG", "FARM_REDIS_URL"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        wait_for(lambda: self.states() == {p: "RUNNING" for p in PROGRAMS}, timeout=60, what="all RUNNING")

    def ctl(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return out.stdout

    def states(self) -> dict[str, str]:
        lines = [line.split() for line in self.ctl("status", timeout=30).splitlines()]
        return {parts[0]: parts[1] for parts in lines if len(parts) >= 2 and parts[0].startswith("farm-")}

    def farm(self) -> Farm:
        """A handle once Redis answers (RUNNING means started, not yet answering)."""
        from farm.errors import FarmUnavailableError

        def connect() -> Farm | None:
            try:
                return Farm.connect(config=self.config_path)
            except FarmUnavailableError:
                return None

        return wait_for(connect, timeout=30, interval=0.2, what="the farm's Redis")

    def pid(self, program: str) -> int:
        return int(self.ctl("pid", program, timeout=30).strip())

    def events(self) -> list[str]:
        """supervisord's log lines about programs stopping, in order."""
        return [line for line in self.log.read_text().splitlines() if "stopped:" in line or "killing" in line]

    def logs(self, *names: str) -> str:
        """The tails of the programs' logs, for failure messages."""
        parts = []
        for name in names:
            path = self.data / "logs" / f"{name}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {name}.log\n" + "\n".join(text.splitlines()[-25:]))
        return "\n".join(parts)

    def leftovers(self) -> list[int]:
        """Processes still running from this farm (its data dir or config is on their command line)."""
        marks = (str(self.data).encode(), str(self.config_path).encode())
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    cmd = (entry / "cmdline").read_bytes()
                    if any(mark in cmd for mark in marks) and alive(int(entry.name)):
                        pids.append(int(entry.name))
        return pids

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("shutdown", timeout=120)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    require_tool_in(BIN, "supervisord")
    sv = Supervised(tmp_path)
    yield sv
    sv.close()


def require_tool_in(directory: Path, name: str) -> None:
    if not (directory / name).exists():
        require_tool(name)  # skips (fails in CI) without it


def test_generated_config_starts_as_printed_on_a_fresh_host(supervised: Supervised):
    log_dir = supervised.data / "logs"
    assert not supervised.data.exists()
    text = supervised.generate()
    assert log_dir.is_dir()  # supervisord opens stdout_logfile before it starts a program
    programs = re.findall(r"^\[program:(farm-[a-z]+)\]", text, re.M)
    assert programs == list(PROGRAMS)  # in priority order; farm serve is a program of its own
    priorities = [int(p) for p in re.findall(r"^priority=(\d+)$", text, re.M)]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)
    for key in ("stopasgroup=true", "killasgroup=true", f"directory={supervised.site.resolve()}"):
        assert text.count(key) == len(PROGRAMS), key
    assert "worker --workers 2" in text and text.count("stdout_logfile=") == len(PROGRAMS)
    supervised.start()
    assert Path(f"/proc/{supervised.pid('farm-worker')}/cwd").resolve() == supervised.site.resolve()
    farm = supervised.farm()
    wait_for(lambda: len([w for w in farm.workers() if w.alive]) == 2, timeout=30, what="2 workers")
    job_id = farm.submit("probe", {"seconds": 0.1, "log": str(supervised.probe)})
    assert farm.wait(job_id, timeout=30).status is JobStatus.FINISHED
    assert {p.name for p in log_dir.iterdir()} >= {f"{n.removeprefix('farm-')}.log" for n in PROGRAMS}


def test_stop_all_drains_the_workers_before_redis_stops(supervised: Supervised):
    """``supervisorctl stop all`` signals every program at once, Redis first. A render that ends
    within the grace is recorded finished, one that does not is requeued; both in Redis (nothing
    left to a journal), Redis stops after the workers, nothing is SIGKILLed or left behind, and
    after ``start all`` no completed render is rendered again."""
    supervised.generate()
    supervised.start()
    farm = supervised.farm()
    short = farm.submit("probe", {"seconds": 2.0, "log": str(supervised.probe)})
    long = farm.submit("probe", {"seconds": 120.0, "log": str(supervised.probe)})
    wait_for(
        lambda: {farm.get(short).status, farm.get(long).status} == {JobStatus.RUNNING},
        timeout=30,
        what="2 running",
    )
    farm.close()
    supervised.ctl("stop", "all")
    assert set(supervised.states().values()) == {"STOPPED"}
    events = supervised.events()
    order = [line.split("stopped: ")[1].split()[0] for line in events if "stopped:" in line]
    assert order.index("farm-worker") < order.index("farm-redis"), (
        events,
        supervised.logs("redis", "worker"),
    )
    assert not [line for line in events if "killing" in line or "SIGKILL" in line], events
    assert supervised.leftovers() == []
    journal = supervised.data / "journal"
    assert not journal.exists() or not any(journal.iterdir())  # recorded in Redis, not kept aside
    runs = read_probe(supervised.probe).by_job()
    assert [r.completed for r in runs[short]] == [True] and [r.completed for r in runs[long]] == [False]

    supervised.ctl("start", "all")
    farm = supervised.farm()
    info = farm.get(short)
    assert info.status is JobStatus.FINISHED and info.attempts == 1
    wait_for(lambda: len(read_probe(supervised.probe).by_job()[long]) == 2, timeout=30, what="long job again")
    assert farm.get(long).status is JobStatus.RUNNING
    assert completed_twice(read_probe(supervised.probe)) == {}
    assert [r.completed for r in read_probe(supervised.probe).by_job()[short]] == [True]
    farm.cancel(long)  # a quicker teardown


def redis_servers(data: Path) -> list[int]:
    mark = str(data).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes()
                if b"redis-server" in cmd and mark in cmd and alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


def test_farm_redis_stops_soon_when_no_worker_drains_and_never_leaves_redis_behind(make_config, procs):
    """``supervisorctl stop farm-redis`` alone (idle workers, not stopping): Redis stops within
    the settle time, not the whole drain limit. ``farm redis`` SIGKILLed: its redis-server gets
    SIGTERM from the kernel and exits (no orphan server holding the socket)."""
    data = Path(tempfile.mkdtemp(prefix="farm-rf-"))
    try:
        make_config(redis={"url": ""}, paths={"data_dir": str(data)}, worker={"shutdown_grace": 30.0})
        farm_redis = procs.start("redis", log_name="redis")
        url = f"unix://{data}/redis.sock"
        client = Redis.from_url(url)
        wait_for(lambda: _pings(client), timeout=30, what="farm redis")
        procs.worker("--workers", "1")
        wait_workers(client, 1)
        started = time.monotonic()
        farm_redis.send_signal(signal.SIGTERM)
        assert farm_redis.wait(timeout=30) == 0
        assert time.monotonic() - started < 10  # the drain limit is 50 s here
        wait_for(lambda: not redis_servers(data), timeout=10, what="redis-server to exit")

        farm_redis = procs.start("redis", log_name="redis")
        wait_for(lambda: _pings(client), timeout=30, what="farm redis again")
        assert redis_servers(data)
        farm_redis.kill()
        farm_redis.wait(timeout=10)
        wait_for(lambda: not redis_servers(data), timeout=5, what="the orphaned redis-server to exit")
    finally:
        for pid in redis_servers(data):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(data, ignore_errors=True)


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
