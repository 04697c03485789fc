"""What the LAN password opens on the embedded Redis: farm work yes; files, modules, flushes, no.

The attack from the security review (CONFIG SET dir + dbfilename + SAVE writes a file anywhere)
is first shown working on an unrestricted server, then refused by the embedded one; the farm,
RQ's worker, ``rq info`` and the RQ calls rq-dashboard makes run as the restricted user with
nothing in the ACL LOG. The password never reaches argv or the server's environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import NoPermissionError, ResponseError
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from farm import Farm, JobStatus
from farm.cli.embedded import EmbeddedRedis, read_admin_url, redis_binary, start_scratch_server
from farm.cli.redis_conf import ADMIN_SECRET_NAME, redis_version, render_config
from tests import test_embedded
from tests.test_embedded import redis_processes, with_redis
from tests.util import free_port, wait_for

embedded_config = test_embedded.embedded_config  # the same fixture: a short data dir, FARM_CONFIG

PASSWORD = "lan-s3cret-4d1f"

# Each must answer NOPERM to a holder of the LAN password (arguments are harmless if one ran).
REFUSED = [
    ("CONFIG", "SET", "dir", "/tmp"),
    ("CONFIG", "GET", "*"),
    ("DEBUG", "SLEEP", "0"),
    ("MODULE", "LOAD", "/nonexistent/module.so"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("SAVE",),
    ("BGSAVE",),
    ("BGREWRITEAOF",),
    ("REPLICAOF", "NO", "ONE"),
    ("SLAVEOF", "NO", "ONE"),
    ("MIGRATE", "127.0.0.1", "1", "k", "0", "100"),
    ("ACL", "SETUSER", "intruder", "on", ">x", "+@all"),
    ("ACL", "LIST"),
    ("SYNC",),
    ("PSYNC", "?", "-1"),
    ("CLIENT", "KILL", "ID", "999999"),
    ("CLIENT", "LIST"),
    ("CLIENT", "PAUSE", "1"),
    ("KEYS", "*"),
    ("SWAPDB", "0", "1"),
    ("RESTORE", "k", "0", "x"),
]


@pytest.fixture
def lan(embedded_config, monkeypatch):
    """An embedded Redis listening on 127.0.0.1 with the LAN password; yields (server, url)."""
    monkeypatch.setenv("FARM_REDIS_PASSWORD", PASSWORD)
    port = free_port()
    server = EmbeddedRedis(with_redis(embedded_config, bind=f"127.0.0.1:{port}"))
    assert server.start() is True
    yield server, f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    server.stop()


def admin(server: EmbeddedRedis) -> Redis:
    return Redis.from_url(server.admin_url)


def write_file_through_redis(client: Redis, directory: Path) -> None:
    """The reported attack: point Redis' dump at any directory and save into it."""
    client.set("payload", "* * * * * root touch /pwned\n")
    client.config_set("dir", str(directory))
    client.config_set("dbfilename", "written-by-redis")
    client.save()


def test_the_file_write_attack_works_on_an_unrestricted_redis(tmp_path):
    # The control: what any password holder could do to the embedded 6.2 server before the ACL.
    proc, url = start_scratch_server(tmp_path / "scratch")
    target = tmp_path / "target"
    target.mkdir()
    try:
        if redis_version(redis_binary()) >= (7, 0, 0):
            with pytest.raises(ResponseError, match="protected config"):
                write_file_through_redis(Redis.from_url(url), target)
        else:
            write_file_through_redis(Redis.from_url(url), target)
            assert (target / "written-by-redis").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_lan_password_cannot_write_files(lan, tmp_path):
    server, url = lan
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(NoPermissionError):
        write_file_through_redis(Redis.from_url(url), target)
    assert list(target.iterdir()) == []
    assert admin(server).config_get("dir") == {"dir": str(server.data_dir)}


@pytest.mark.parametrize("command", REFUSED, ids=lambda c: " ".join(c[:2]))
def test_the_lan_password_is_refused_dangerous_commands(lan, command):
    server, url = lan
    client = Redis.from_url(url)
    client.set("kept", "1")
    with pytest.raises(ResponseError) as refused:
        client.execute_command(*command)
    # Redis 7.x turns DEBUG and MODULE off for everyone (enable-*-command no) before the ACL
    # is consulted; any other error would mean the command ran.
    assert isinstance(refused.value, NoPermissionError) or (
        command[0] in ("DEBUG", "MODULE") and "command not allowed" in str(refused.value)
    ), refused.value
    assert client.get("kept") == b"1"  # nothing was flushed or swapped away


def test_the_lan_password_cannot_shut_the_server_down(lan):
    server, url = lan
    with pytest.raises(NoPermissionError):
        Redis.from_url(url).shutdown(nosave=True)
    assert server.alive() and server.process is not None and server.process.poll() is None


def test_farm_work_runs_as_the_restricted_user_over_tcp(lan, tmp_path):
    server, url = lan
    # Retries due within a second, so the scheduler's part runs too.
    source = server.config.source
    source.write_text(source.read_text() + "[retry]\nbase_delay = 0.5\nmax_delay = 1.0\njitter = 0.0\n")
    ops = admin(server)
    ops.acl_log_reset()
    env = {**os.environ, "FARM_REDIS_URL": url}
    del env["FARM_REDIS_PASSWORD"]  # a teammate's box: only the URL with the password
    logs = [open(tmp_path / f"{name}.log", "wb") for name in ("worker", "scheduler")]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "farm", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        for args, log in zip((["worker", "--processes", "2"], ["scheduler"]), logs, strict=True)
    ]
    try:
        farm = Farm.connect(url, config=server.config)
        wait_for(lambda: farm.stats().workers == 2, timeout=30, what="2 workers")
        done = farm.submit("demo", {"duration": 0.1})
        retried = farm.submit("demo", {"duration": 0.1, "fail_with": "api_error", "fail_attempts": 1})
        assert farm.wait(done, timeout=60).status is JobStatus.FINISHED
        assert farm.wait(retried, timeout=60).status is JobStatus.FINISHED

        # RQ's own tools, as the same user: `rq info` and the reads rq-dashboard makes.
        rq = Path(sys.executable).parent / "rq"
        info = subprocess.run(
            [str(rq), "info", "--serializer", "json", "-u", url], capture_output=True, text=True, timeout=60
        )
        assert info.returncode == 0, info.stderr
        assert "2 workers" in info.stdout
        connection = Redis.from_url(url)
        queues = Queue.all(connection=connection, serializer=JSONSerializer)
        assert queues
        for queue in queues:
            for registry in (FinishedJobRegistry, FailedJobRegistry, StartedJobRegistry):
                registry(queue.name, connection=connection).get_job_count(cleanup=False)
        workers = Worker.all(connection=connection)
        assert len(workers) == 2 and all(w.ip_address.startswith("127.0.0.1") for w in workers)
        assert Job.fetch(done, connection=connection, serializer=JSONSerializer).get_status() == "finished"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in zip(procs, logs, strict=True):
            proc.wait(timeout=30)
            log.close()
    # Nothing was refused along the way, not even the calls whose errors RQ swallows (CLIENT
    # SETNAME, INFO): a missing rule would show up here before it broke anything visible.
    assert ops.acl_log() == []


def test_local_workers_need_no_password_on_the_socket_but_stay_restricted(embedded_config):
    server = EmbeddedRedis(embedded_config)
    assert server.start() is True
    try:
        client = Redis(unix_socket_path=str(server.socket))
        assert client.ping()
        with pytest.raises(NoPermissionError):
            client.flushall()
        with pytest.raises(NoPermissionError):
            client.config_set("dir", "/tmp")
        assert stat.S_IMODE(server.socket.stat().st_mode) & 0o077 == 0
    finally:
        server.stop()


def test_a_server_from_an_older_farm_is_reused_with_a_warning(embedded_config, caplog):
    # What an earlier farm (or someone by hand) left on the socket: no ACL, no redis.conf.
    data = embedded_config.data_dir
    data.mkdir(parents=True)
    old = subprocess.Popen(
        [redis_binary(), "--port", "0", "--unixsocket", str(embedded_config.socket_path), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: EmbeddedRedis(embedded_config).alive(), timeout=15, what="the old server")
        with caplog.at_level("WARNING", logger="farm.embedded"):
            assert EmbeddedRedis(embedded_config).start() is False
        assert "may not be restricted" in caplog.text
    finally:
        old.terminate()
        old.wait(timeout=10)
    caplog.clear()
    server = EmbeddedRedis(embedded_config)
    assert server.start() is True
    with caplog.at_level("WARNING", logger="farm.embedded"):
        assert EmbeddedRedis(embedded_config).start() is False  # its own: reused in silence
    assert caplog.text == ""
    server.stop()


def test_the_password_never_reaches_argv_or_the_environment(lan):
    server, url = lan
    pid = server.process.pid if server.process else 0
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"redis" in cmdline and ps.stdout.strip()
    for seen in (cmdline, ps.stdout.encode(), environ):
        assert PASSWORD.encode() not in seen
    assert PASSWORD not in server.conf.read_text()
    for private in (server.conf, server.data_dir / ADMIN_SECRET_NAME):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert Redis.from_url(url).ping()  # and yet the password opens it


def test_farm_redis_in_the_foreground_keeps_the_password_off_argv_and_environ(embedded_config, monkeypatch):
    monkeypatch.setenv("FARM_REDIS_PASSWORD", PASSWORD)
    port = free_port()
    config_path = embedded_config.source
    config_path.write_text(config_path.read_text() + f'[redis]\nbind = "127.0.0.1:{port}"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm", "redis"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        wait_for(lambda: _pings(url), timeout=30, what="farm redis")
        [server] = redis_processes(embedded_config.socket_path)
        assert _parent(server) == proc.pid  # redis-server runs as its child (it outlives no one)
        for pid in (proc.pid, server):
            assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert PASSWORD.encode() not in Path(f"/proc/{server}/environ").read_bytes()
        with pytest.raises(NoPermissionError):
            Redis.from_url(url).config_get("requirepass")
    finally:
        proc.send_signal(signal.SIGTERM)  # how supervisor stops it
        assert proc.wait(timeout=30) == 0


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pings(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def test_a_restricted_scratch_server_and_its_admin():
    # A data dir with a space, a quote and a non-ASCII letter: redis.conf must quote paths right.
    # (Under /tmp, not tmp_path: a unix socket path must stay under ~107 bytes.)
    parent = Path(tempfile.mkdtemp(prefix="farm-acl-"))
    directory = parent / 'scr atch "ü"'
    proc, url = start_scratch_server(directory, restricted=True)
    try:
        with pytest.raises(NoPermissionError):
            Redis.from_url(url).flushall()
        ops = Redis.from_url(read_admin_url(directory))
        assert ops.flushall()
        assert ops.config_get("dir") == {"dir": str(directory)}
        version = ops.info("server")["redis_version"]
        assert tuple(int(part) for part in str(version).split(".")[:3]) == redis_version(redis_binary())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(parent)


@pytest.mark.parametrize(
    ("version", "present", "absent"),
    [
        ((6, 2, 14), ["+client|setinfo"], ["enable-debug-command", "enable-module-command", "-function"]),
        (
            (7, 0, 15),
            ["enable-debug-command no", "enable-module-command no", "-function"],
            ["+client|setinfo"],
        ),
        ((7, 4, 2), ["enable-debug-command no", "enable-module-command no"], ["+client|setinfo"]),
    ],
)
def test_directives_follow_the_server_version(tmp_path, version, present, absent):
    # 6.2 refuses to start on the 7.x directives, and 7.0 on ACL rules naming unknown subcommands;
    # the real 6.2 server starting in the tests above covers the 6.2 side with the binary.
    text = render_config(version=version, directory=tmp_path, socket=tmp_path / "s", admin_secret="x")
    for needle in present:
        assert needle in text, needle
    for needle in absent:
        assert needle not in text, needle
