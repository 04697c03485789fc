"""The work horse: running a job and recording its end, and the mechanics around horses.

``run_job`` is the horse's side (RQ's ``perform_job``): it starts the horse's background loop
(progress, log, lease renewal) and lease guards, runs the job function, and records the run's
end — fenced on its token, retried for a moment, journaled if Redis stays away — then publishes
the outputs if this attempt won. Around it: classify a render's exception, refuse foreign jobs,
and wait for a horse to exit (pidfd, with periodic checks the worker supplies) and reap it.
Nothing here imports or unpickles job data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.exceptions
from pydantic import ValidationError
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue

from .. import endings, keys
from ..files import store
from ..models import ErrorKind
from ..records import decode_call
from ..render import RenderError
from ..rq_classes import DISPATCHER
from . import exchange, journal, lease, rendering

if TYPE_CHECKING:
    from .worker import FarmWorker

log = logging.getLogger("farm.worker")

TRACEBACK_LINES = 12
END_RETRY_FOR = 2.0  # seconds the horse keeps trying to record its end before journaling it


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


def run_job(worker: FarmWorker, job: Job, queue: Queue, execution: Execution) -> bool:
    run = worker._run
    assert run is not None
    cell = worker._lease
    guard = lease.spawn_guard_process(cell) if spawns_subprocesses(worker, run.renderer) else 0
    threading.Thread(
        target=rendering.horse_loop, args=(os.getppid(), job.id), daemon=True, name="farm-horse"
    ).start()
    lease.start_guard_thread(cell)
    try:
        result = job.perform()
    except BaseException as exc:  # the horse must always end its run, whatever happened
        cell.ending()
        kind, message = classify(exc)
        record_end(worker, run, journal.Entry(run, "failed", kind=kind, error=message), execution, job)
        return False
    finally:
        cell.ending()
        lease.reap_guard(guard)
    problem = unstorable(worker, result)
    if problem is not None:
        store.discard(worker.config, run.job_id, run.token)
        entry = journal.Entry(run, "failed", kind=ErrorKind.UNKNOWN, error=problem)
        record_end(worker, run, entry, execution, job)
        return False
    try:  # a run on another box sends its outputs to the store before its end is recorded
        exchange.send(worker.config, rendering.place(), run.job_id, run.token, result)
    except RenderError as exc:
        exchange.discard(worker.config, rendering.place(), run.job_id, run.token)
        record_end(
            worker, run, journal.Entry(run, "failed", kind=exc.kind, error=exc.message), execution, job
        )
        return False
    return record_end(worker, run, journal.Entry(run, "finished", result=result), execution, job)


def unstorable(worker: FarmWorker, result: Any) -> str | None:
    """Why a render's result cannot be stored in Redis, or None."""
    try:
        size = len(json.dumps(result, allow_nan=False).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError, RecursionError) as exc:  # e.g. a result that is not JSON-able
        return f"could not record the render's result: {exc}"
    limit = worker.config.limits.max_result_bytes
    if size > limit:
        return f"the render's result is {size} bytes, over limits.max_result_bytes ({limit})"
    return None


def spawns_subprocesses(worker: FarmWorker, renderer: str) -> bool:
    try:
        return bool(getattr(worker.registry.get(renderer), "subprocesses", True))
    except Exception:  # the render itself will report an unusable renderer
        return False


def record_end(
    worker: FarmWorker, run: endings.Run, entry: journal.Entry, execution: Execution, job: Job
) -> bool:
    """Record the horse's ending of its run (fenced), retrying for a moment if Redis is away,
    then publish the outputs if this attempt won. If Redis stays away, the ending goes to the
    local journal (with the outputs still staged) and the worker replays it later."""
    ok = entry.outcome == "finished"
    bookkeeping = worker._bookkeeping(job, execution, ok)
    give_up = time.monotonic() + END_RETRY_FOR
    while True:
        try:
            if entry.outcome == "finished":
                assert entry.result is not None
                won = endings.finish(worker.connection, worker.config, run, entry.result, bookkeeping)
            else:
                assert entry.kind is not None
                won = (
                    endings.fail(worker.connection, worker.config, run, entry.kind, entry.error, bookkeeping)
                    is not None
                )
            break
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if time.monotonic() >= give_up:
                lines = rendering.closing_lines()
                journal.record(worker.config, dataclasses.replace(entry, log_lines=lines))
                return ok
            time.sleep(0.2)
    if ok and won:
        assert entry.result is not None
        exchange.publish(worker.config, rendering.place(), run.job_id, run.token, entry.result)
    else:
        exchange.discard(worker.config, rendering.place(), run.job_id, run.token)
        if not won:
            log.warning("horse of %s: its run was taken over before it could record its end", run.job_id)
    return ok and won
