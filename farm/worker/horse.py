"""Mechanics around the work horse: classify a render's exception, refuse foreign jobs, and wait
for a horse to exit (pidfd, with periodic checks the worker supplies) and reap it.

The worker (``farm.worker``) decides policy (timeouts, cancels, shutdown); this module only
knows processes and payloads. Nothing here imports or unpickles job data.
"""

from __future__ import annotations

import os
import select
import time
import traceback
from collections.abc import Callable

from pydantic import ValidationError

from .. import keys
from ..jobinfo import decode_call
from ..models import ErrorKind
from ..render import RenderError
from ..rq_classes import DISPATCHER

TRACEBACK_LINES = 12


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """ErrorKind and message for an exception raised by a render."""
    if isinstance(exc, RenderError):
        return exc.kind, exc.message
    if isinstance(exc, ValidationError):
        return ErrorKind.INVALID_INPUT, str(exc).splitlines()[0]
    if isinstance(exc, FileNotFoundError):
        return ErrorKind.NOT_FOUND, str(exc)
    tail = "".join(traceback.format_exception(exc)[-TRACEBACK_LINES:])
    return ErrorKind.UNKNOWN, f"{type(exc).__name__}: {exc}\n{tail}"


def refusal(raw: dict[bytes, bytes]) -> str | None:
    """Why a dequeued job must not run, or None. Never imports or unpickles anything."""
    func_name, kwargs = decode_call(raw.get(b"data"))
    if func_name is None:
        return "refused: job payload is not JSON (the farm never unpickles job data)"
    if func_name != DISPATCHER:
        return f"refused: job function {func_name!r} is not the farm dispatcher"
    if not raw.get(keys.F_RENDERER.encode()):
        return "refused: not a farm job (no renderer)"
    if set(kwargs) != {"renderer", "params"}:
        return "refused: malformed farm job arguments"
    return None


def watch(
    pid: int, deadline: float, every: float, check: Callable[[float], str | None]
) -> tuple[str | None, int | None]:
    """Wait for the horse ``pid`` to exit, calling ``check(now)`` at least every ``every`` seconds.

    Returns (reason, status): reason is "timeout" at ``deadline`` or whatever ``check`` returned
    (the horse is then still running: the caller kills it); status is the wait status when this
    function had to reap the horse itself (no pidfd), else None.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    try:
        poller = select.poll()
        if fd >= 0:
            poller.register(fd, select.POLLIN)
        nap = 0.005
        while True:
            now = time.monotonic()
            if fd >= 0:
                if poller.poll(max(0.0, min(every, deadline - now)) * 1000):
                    return None, None
            else:  # no pidfd: poll waitpid with a growing sleep
                reaped, status = os.waitpid(pid, os.WNOHANG)
                if reaped:
                    return None, status
                time.sleep(nap)
                nap = min(nap * 2, every)
            now = time.monotonic()
            if now >= deadline:
                return "timeout", None
            reason = check(now)
            if reason is not None:
                return reason, None
    finally:
        if fd >= 0:
            os.close(fd)


def reap(pid: int) -> int:
    """Wait for ``pid`` and return its wait status (0 if it is already gone)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def describe_exit(status: int) -> str:
    return f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
