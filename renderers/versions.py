"""What identifies a renderer's tool, for the render cache's key (``Renderer.tool_version``).

``version_line`` runs a tool's version command once per process and executable file (an
executable replaced in place is asked again), within a short timeout; it never raises: a tool
that is missing, fails or stays silent gives ``None`` and the caller falls back to a stable
string naming the executable. ``runs_this_python`` tells whether a console script runs this very
Python (then its package's version can be read in-process instead). ``identity`` names an
executable file by path, size and mtime; ``digest`` hashes a JSON-able value canonically. Used by
the manim, ffmpeg, command and http renderers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

VERSION_TIMEOUT = 15.0  # seconds; `manim --version` imports manim (~2 s warm)

_lock = threading.Lock()
_lines: dict[tuple[str, ...], str | None] = {}


def locate(executable: str, path: str | None = None) -> str | None:
    """Where ``executable`` is found as a child's argv[0] would be (``path``: the child's PATH)."""
    return shutil.which(executable, path=path)


def _stat_key(found: str) -> tuple[str, ...]:
    try:
        info = os.stat(found)
    except OSError:
        return (found,)
    return (found, str(info.st_ino), str(info.st_size), str(info.st_mtime_ns))


def identity(executable: str, path: str | None = None) -> str:
    """``<path> <size> <mtime>`` of the file ``executable`` names (symlinks followed for size and
    mtime), or ``<executable> missing``. Whole-second mtime: stable across copies and boxes."""
    found = locate(executable, path)
    if found is None:
        return f"{executable} missing"
    try:
        info = os.stat(found)
    except OSError:
        return f"{found} unreadable"
    return f"{found} {info.st_size} {int(info.st_mtime)}"


def version_line(argv: Sequence[str], *, timeout: float | None = None) -> str | None:
    """The first non-blank line ``argv`` prints (stdout, else stderr) when it exits 0; ``None``
    when it cannot run, fails, times out or prints nothing. Cached per process and executable
    file; a timeout is not cached (the next call tries again)."""
    found = locate(argv[0])
    if found is None:
        return None
    key = (*_stat_key(found), *argv[1:])
    with _lock:
        if key in _lines:
            return _lines[key]
    try:
        done = subprocess.run(
            [found, *argv[1:]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=VERSION_TIMEOUT if timeout is None else timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    except OSError:
        line = None
    else:
        text = (done.stdout.strip() or done.stderr.strip()).decode("utf-8", "replace")
        line = text.splitlines()[0].strip() if done.returncode == 0 and text else None
    with _lock:
        _lines[key] = line
    return line


def runs_this_python(script: str) -> bool:
    """Does the console script ``script`` run this very Python environment (its ``#!`` names a
    python in the folder of ``sys.executable``)? Then its package is the one importable here."""
    try:
        with open(script, "rb") as file:
            first = file.readline(1024)
    except OSError:
        return False
    words = first[2:].split() if first.startswith(b"#!") else []
    if len(words) != 1 or not os.path.basename(words[0]).startswith(b"python"):
        return False  # no shebang, or `/usr/bin/env python3`: not known to be this environment
    try:
        return os.path.samefile(os.path.dirname(words[0]), os.path.dirname(sys.executable))
    except (OSError, ValueError):
        return False


def digest(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys, no spaces), in hex."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
