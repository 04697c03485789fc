"""Run one renderer subprocess: argv list, same process group, streamed lines, cancel and deadline.

Used by the manim, ffmpeg and command renderers. The child stays in the work horse's process
group on purpose: the worker kills that whole group on cancel/timeout, so nothing may escape it.
Inside the horse we also stop the child cooperatively (``ctx.cancelled()``, ``ctx.deadline``) and
kill it, with every descendant we can find in ``/proc``, whenever the Python side gives up.
Every child runs with ``RLIMIT_FSIZE`` = ``ctx.env.max_output_bytes`` (no file it writes grows
past it; see ``file_size_limit``); hitting it is an ``invalid_input`` RenderError.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import resource
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from farm.models import ErrorKind
from farm.render import RenderContext, RenderError

LineCallback = Callable[[str, str], None]
"""Called as ``on_line(line, stream)`` with ``stream`` either ``"stdout"`` or ``"stderr"``."""

MAX_LINE_CHARS = 2000
MAX_BUFFER_CHARS = 65536  # a "line" without a break this long is cut and emitted anyway
DRAIN_GRACE = 2.0  # seconds to keep reading after the child exited (a grandchild may hold the pipe)
_BREAK = re.compile(r"\r\n|\r|\n")
_LIMIT_LOCK = threading.Lock()
# how a tool reports hitting RLIMIT_FSIZE when it survives it: strerror(EFBIG), or a shell
# describing a child killed by SIGXFSZ
_OVER_LIMIT = ("File too large", "File size limit exceeded")


@dataclass(frozen=True)
class ProcResult:
    returncode: int
    tail: tuple[str, ...]  # last lines (stripped, non-blank), oldest first
    seconds: float


class LineSplitter:
    """Incremental bytes → lines; ``\\r`` counts as a line break (tqdm/rich progress bars)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += self._decoder.decode(data)
        parts = _BREAK.split(self._buffer)
        self._buffer = parts.pop()
        if len(self._buffer) > MAX_BUFFER_CHARS:
            parts.append(self._buffer)
            self._buffer = ""
        return parts

    def close(self) -> list[str]:
        rest = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        return _BREAK.split(rest) if rest else []


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` found in ``/proc`` (empty where there is no ``/proc``)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 2 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child and every descendant still attached to it, then reap the child."""
    if proc.poll() is None:
        for pid in [proc.pid, *descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def file_size_limit(max_bytes: int) -> Iterator[None]:
    """Lower this process's ``RLIMIT_FSIZE`` soft limit to ``max_bytes`` while a child is forked.

    Why this and not ``resource.prlimit(child)`` right after Popen: a child forked under the
    lowered limit has it before it runs a single instruction, so neither the tool nor anything it
    starts is ever unbounded, while prlimit after Popen leaves the tool running, and free to
    fork, unlimited for a moment (``preexec_fn`` is unsafe with the horse's threads). The cost:
    for the milliseconds of fork/exec our own writes are bounded too. CPython ignores SIGXFSZ,
    so such a write fails with EFBIG (the horse's flush thread catches OSError) rather than
    killing us, and Popen's ``restore_signals`` gives the child the default SIGXFSZ back. The
    lock keeps two runs in one process from restoring each other's limit.
    """
    with _LIMIT_LOCK:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        wanted = max_bytes
        for bound in (soft, hard):  # never raise a limit set from outside (ulimit -f)
            if bound != resource.RLIM_INFINITY:
                wanted = min(wanted, bound)
        resource.setrlimit(resource.RLIMIT_FSIZE, (wanted, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _earliest(*moments: float | None) -> float | None:
    known = [moment for moment in moments if moment is not None]
    return min(known) if known else None


def run(
    argv: Sequence[str],
    ctx: RenderContext,
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    on_line: LineCallback | None = None,
    quiet_stdout: bool = False,
    timeout: float | None = None,
    tail_lines: int = 40,
    poll_interval: float = 0.1,
    what: str | None = None,
) -> ProcResult:
    """Run ``argv`` to completion, streaming its output; never through a shell.

    Every non-blank line goes to ``ctx.log`` and the tail (unless it came from stdout and
    ``quiet_stdout`` is set, for machine-readable progress) and then to ``on_line``. Cancellation
    and the deadline (``ctx.deadline`` or ``timeout`` seconds, whichever is first) are checked at
    least every ``poll_interval`` seconds; on either, or on any exception raised on the Python
    side, the child is killed before the error propagates. ``pass_fds`` are inherited by the
    child (inputs opened by ``renderers.paths.open_confined``, named ``/proc/self/fd/N``).
    """
    if not argv:
        raise ValueError("empty argv")
    argv = [str(arg) for arg in argv]
    name = what or Path(argv[0]).name
    started = time.monotonic()
    deadline = _earliest(ctx.deadline, started + timeout if timeout is not None else None)
    try:
        with file_size_limit(ctx.env.max_output_bytes):
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                close_fds=True,
                pass_fds=tuple(pass_fds),
            )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise RenderError(ErrorKind.UNKNOWN, f"cannot run {argv[0]!r}: {exc.strerror or exc}") from exc

    tail: deque[str] = deque(maxlen=tail_lines)

    def emit(raw: str, stream: str) -> None:
        line = raw.rstrip()
        if not line.strip():
            return
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + "..."
        if not (quiet_stdout and stream == "stdout"):
            ctx.log(line)
            tail.append(line)
        if on_line is not None:
            on_line(line, stream)

    try:
        _pump(proc, ctx, emit, deadline, poll_interval, name, timeout)
    except BaseException:
        kill_tree(proc)
        raise
    finally:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if proc.returncode == -signal.SIGXFSZ or (
        proc.returncode != 0 and any(marker in line for line in tail for marker in _OVER_LIMIT)
    ):
        raise RenderError(
            ErrorKind.INVALID_INPUT,
            f"{name} exceeded limits.max_output_bytes ({ctx.env.max_output_bytes} bytes): "
            "it tried to write a larger file",
        )
    return ProcResult(proc.returncode, tuple(tail), time.monotonic() - started)


def _pump(
    proc: subprocess.Popen[bytes],
    ctx: RenderContext,
    emit: Callable[[str, str], None],
    deadline: float | None,
    poll_interval: float,
    name: str,
    timeout: float | None,
) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    splitters = {
        proc.stdout.fileno(): ("stdout", LineSplitter()),
        proc.stderr.fileno(): ("stderr", LineSplitter()),
    }
    selector = selectors.DefaultSelector()
    for fd in splitters:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    last_check = 0.0
    exited_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if proc.poll() is None and now - last_check >= poll_interval:
                last_check = now
                if ctx.cancelled():
                    raise RenderError(ErrorKind.CANCELED, f"canceled while {name} was running")
                if deadline is not None and now >= deadline:
                    limit = f" after {timeout:g}s" if timeout is not None and ctx.deadline is None else ""
                    raise RenderError(ErrorKind.TIMEOUT, f"{name} timed out{limit}")
            if not selector.get_map():
                try:
                    proc.wait(timeout=poll_interval)
                    break
                except subprocess.TimeoutExpired:
                    continue
            for key, _ in selector.select(timeout=poll_interval):
                stream, splitter = splitters[key.fd]
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    selector.unregister(key.fd)
                    lines = splitter.close()
                else:
                    lines = splitter.feed(data)
                for line in lines:
                    emit(line, stream)
            if proc.poll() is not None:
                exited_at = exited_at if exited_at is not None else time.monotonic()
                if time.monotonic() - exited_at > DRAIN_GRACE:
                    break  # a background grandchild keeps the pipe open; stop listening
    finally:
        selector.close()
    for stream, splitter in splitters.values():
        for line in splitter.close():
            emit(line, stream)
