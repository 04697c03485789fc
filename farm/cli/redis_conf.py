"""The embedded Redis' ``redis.conf``: who may do what, and the directives its version knows.

Called by ``farm.embedded`` before each start. Teammates' ``redis://:PASSWORD@host:port/0``
opens the ``default`` user; its rules (``acl_rules``) keep what the farm, RQ's worker and
scheduler, ``rq info`` and rq-dashboard send, and take away what would let a password holder
write files (CONFIG SET dir + SAVE), load modules, flush, replicate or shut the server down.
They were settled by running the test suite and those tools as that user with ACL LOG empty.
The ``farm-admin`` user (secret generated into the data dir) is for operators and tests.
The file is written atomically and is mode 0600 from its creation: it holds password hashes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import secrets
import subprocess
import tempfile
from pathlib import Path

from ..errors import FarmError

MIN_VERSION = (6, 2, 0)  # ACL pub/sub channel rules (&*) and CLIENT INFO, which RQ's worker reads
ADMIN_USER = "farm-admin"
ADMIN_SECRET_NAME = "redis-admin.secret"

# Commands the default user may never run. `-@dangerous` already covers all of them on 6.2 and
# 7.x; they are named again so a recategorisation in a later Redis cannot reopen them.
# fmt: off
ACL_DENIED = (
    "config", "debug", "module", "flushall", "flushdb", "shutdown", "save", "bgsave", "bgrewriteaof",
    "replicaof", "slaveof", "migrate", "acl", "monitor", "sync", "psync", "keys",
)
# fmt: on

# The @dangerous commands the farm and RQ do need back: RQ reads the server version from INFO
# and its workers name their connection and read their address (CLIENT SETNAME, CLIENT INFO).
# On 6.2 CLIENT is one @dangerous command; on 7.x these subcommands are not @dangerous at all.
ACL_ALLOWED_BACK = ("info", "client|setname", "client|getname", "client|id", "client|info")


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


def write_private(path: Path, text: str) -> None:
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


def new_admin_secret(directory: Path) -> str:
    secret = secrets.token_hex(32)
    write_private(directory / ADMIN_SECRET_NAME, secret + "\n")
    return secret
