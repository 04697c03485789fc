"""The embedded Redis and `farm up --no-tui`: fresh machine, reuse after a crash, clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis

from farm import Farm, JobStatus
from farm.cli.embedded import EmbeddedRedis
from farm.config import parse_config
from farm.errors import ConfigError, FarmError
from tests.util import wait_for, write_toml


@pytest.fixture
def embedded_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A short data dir: unix socket paths are limited to ~107 bytes.
    data = Path(os.environ.get("TMPDIR", "/tmp")) / f"farm-emb-{os.getpid()}-{time.monotonic_ns()}"
    body = {
        "paths": {"data_dir": str(data), "input_roots": [str(tmp_path)]},
        "scheduler": {"interval": 0.2, "sweep_interval": 1.0, "worker_timeout": 3.0},
        "worker": {"heartbeat_interval": 0.5, "shutdown_grace": 1.0},
    }
    path = tmp_path / "farm.toml"
    write_toml(path, body)
    monkeypatch.setenv("FARM_CONFIG", str(path))
    monkeypatch.delenv("FARM_REDIS_URL", raising=False)
    config = parse_config(body).model_copy(update={"source": path})
    yield config
    for pid in redis_processes(config.socket_path):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(data, ignore_errors=True)  # it holds an admin secret and a password hash


def redis_processes(socket: Path) -> list[int]:
    """redis-servers of that data dir: its socket is in their process title, its redis.conf in
    their command line until Redis sets the title."""
    marks = (str(socket).encode(), str(socket.parent / "redis.conf").encode())
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"redis" in cmd and any(mark in cmd for mark in marks):
                pids.append(int(entry.name))
    return pids


def test_embedded_redis_socket_aof_and_reuse(embedded_config):
    server = EmbeddedRedis(embedded_config)
    assert server.start() is True
    mode = stat.S_IMODE(server.socket.stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)
    assert stat.S_IMODE(embedded_config.data_dir.stat().st_mode) == 0o700
    admin = Redis.from_url(server.admin_url)
    aof = admin.config_get("append*")
    assert (aof["appendonly"], aof["appendfilename"], aof["appendfsync"]) == ("yes", "farm.aof", "everysec")
    client = Redis(unix_socket_path=str(server.socket))
    client.set("survives", "restart")
    # A second starter (e.g. `farm up` after the first was SIGKILLed) reuses it: never two servers,
    # and the admin secret still opens the running one.
    assert EmbeddedRedis(embedded_config).start() is False
    assert len(redis_processes(server.socket)) == 1
    assert Redis.from_url(EmbeddedRedis(embedded_config).admin_url).acl_whoami() == "farm-admin"
    server.stop()
    assert not server.alive()
    assert EmbeddedRedis(embedded_config).start() is True
    assert Redis(unix_socket_path=str(server.socket)).get("survives") == b"restart"


def test_stale_socket_file_is_replaced(embedded_config):
    embedded_config.data_dir.mkdir(parents=True, exist_ok=True)
    embedded_config.socket_path.write_text("stale")
    server = EmbeddedRedis(embedded_config)
    assert server.start() is True and server.alive()
    server.stop()


def test_farm_redis_refuses_a_second_server(embedded_config):
    server = EmbeddedRedis(embedded_config)
    server.start()
    out = subprocess.run([sys.executable, "-m", "farm", "redis"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "already running" in out.stderr
    server.stop()


def with_redis(config, **changes):
    return config.model_copy(update={"redis": config.redis.model_copy(update=changes)})


def test_tcp_bind_needs_a_password(embedded_config, monkeypatch):
    monkeypatch.delenv("FARM_REDIS_PASSWORD", raising=False)
    config = with_redis(embedded_config, bind="127.0.0.1:6399")
    with pytest.raises(ConfigError, match="needs a password"):
        EmbeddedRedis(config).argv()
    assert not (config.data_dir / "redis.conf").exists()  # refused before writing anything
    monkeypatch.setenv("FARM_REDIS_PASSWORD", "s3cret")
    server = EmbeddedRedis(config)
    assert server.argv()[1:] == [str(server.conf)]  # everything else is in redis.conf
    assert "s3cret" not in server.conf.read_text()  # only its SHA-256


def test_a_failed_start_says_why_in_one_line(embedded_config, monkeypatch):
    import socket as sockets

    monkeypatch.setenv("FARM_REDIS_PASSWORD", "s3cret")
    with sockets.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = EmbeddedRedis(with_redis(embedded_config, bind=f"127.0.0.1:{busy.getsockname()[1]}"))
        with pytest.raises(FarmError) as failed:
            server.start()
    message = str(failed.value)
    assert "\n" not in message and "Address already in use" in message, message
    assert server.process is None and not server.alive()


def test_appendfsync_always_reaches_the_server(embedded_config):
    server = EmbeddedRedis(with_redis(embedded_config, appendfsync="always"))
    assert server.start() is True
    assert Redis.from_url(server.admin_url).config_get("appendfsync") == {"appendfsync": "always"}
    server.stop()


def test_farm_up_no_tui_demo_end_to_end(embedded_config):
    up = subprocess.Popen(
        [sys.executable, "-m", "farm", "up", "--no-tui", "--demo", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        server = EmbeddedRedis(embedded_config)
        wait_for(server.alive, timeout=30, what="embedded redis")
        farm = Farm.connect(config=embedded_config)  # as a teammate would, from another process
        job_id = farm.submit("demo", {"duration": 0.2}, job_type="doubt", name="from-teammate")
        assert farm.wait(job_id, timeout=60).status is JobStatus.FINISHED
        wait_for(lambda: farm.stats().finished_last_hour >= 2, timeout=60, what="demo jobs finishing")
        ls = subprocess.run([sys.executable, "-m", "farm", "ls"], capture_output=True, text=True, timeout=30)
        assert "from-teammate" in ls.stdout and "finished" in ls.stdout
        assert farm.stats().workers == 2 and farm.stats().scheduler_alive
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "stopped" in output
    assert not server.alive()
    assert redis_processes(server.socket) == []
    # Nothing lost: restart Redis and check every job is queued (requeued) or ended.
    server.start()
    farm = Farm.connect(config=embedded_config)
    stats = farm.stats()
    assert stats.running == 0
    for info in farm.list(limit=1000):
        assert info.status in (JobStatus.QUEUED, JobStatus.FINISHED, JobStatus.FAILED, JobStatus.SCHEDULED), (
            info
        )
    server.stop()


def _children(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (from /proc: farm up's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["terminal-closed", "killed"])
def test_farm_ups_processes_never_outlive_it(embedded_config, sig):
    """A closed terminal (SIGHUP) stops the farm as Ctrl-C does; even a SIGKILLed farm up leaves
    no scheduler, farm serve or workers behind to run beside the next one (its Redis stays, for
    the next farm up to reuse)."""
    up = subprocess.Popen(
        [sys.executable, "-m", "farm", "up", "--no-tui", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = EmbeddedRedis(embedded_config)
    try:
        farm = Farm.connect(config=embedded_config) if wait_for(server.alive, timeout=30) else None
        assert farm is not None
        wait_for(lambda: farm.stats().workers == 1 and farm.stats().scheduler_alive, timeout=30, what="up")
        children = [pid for pid in _children(up.pid) if not redis_processes(server.socket).count(pid)]
        assert len(children) == 3, children  # scheduler, farm serve, the worker pool
        up.send_signal(sig)
        output, _ = up.communicate(timeout=60)
        wait_for(lambda: not any(_alive(pid) for pid in children), timeout=30, what="its children gone")
        if sig == signal.SIGHUP:
            assert up.returncode == 0 and "stopped" in output, output
    finally:
        if up.poll() is None:
            up.kill()
        server.stop()


def test_embedded_redis_on_the_lan_with_a_password(embedded_config, monkeypatch):
    import socket as sockets

    with sockets.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FARM_REDIS_PASSWORD", "s3cret")
    config = with_redis(embedded_config, bind=f"127.0.0.1:{port}")
    server = EmbeddedRedis(config)
    assert server.start() is True
    assert EmbeddedRedis(config).start() is False  # found, though it wants a password
    assert Farm.connect(f"redis://:s3cret@127.0.0.1:{port}/0", config=config).stats().workers == 0
    monkeypatch.delenv("FARM_REDIS_PASSWORD")
    from farm import FarmUnavailableError

    with pytest.raises(FarmUnavailableError):
        Farm.connect(f"redis://127.0.0.1:{port}/0", config=config)
    server.stop()
