"""A run's lease: the proof that its work horse is alive, renewed while it renders, self-fencing.

dispatch.lua grants a lease when it starts a run (``farm:leases``: job id -> expiry on the Redis
server's clock). The work horse renews it every ``lease / 4`` seconds through ``lua/lease.lua``,
which only extends a lease whose run still owns the job (``farm:owner:<job>``). The sweep takes a
run over only once its lease expired ``scheduler.lease_margin`` seconds ago, on the same clock.

Self-fencing: the lease's *local* deadline lives in a ``LeaseCell``, a few bytes of memory the
worker shares with its horses (created before any fork). It is the monotonic time at which the
last successful renewal was *sent* plus the lease, so it always falls before the server's expiry,
and so before any takeover. Whoever sees it pass while the run still renders SIGKILLs the horse's
whole process group:
- a guard thread in the horse (Redis unreachable, the worker stopped: the horse notices itself);
- the worker's monitor (the horse stopped, or stuck in a system call);
- a guard process beside the horse, for renderers that start subprocesses: it is what stops
  ffmpeg or manim when the worker and the horse are both stopped.
Once the render has returned, the cell says ENDING and nobody kills: publishing the outputs and
recording the end are fenced on the run's token, so a late horse can no longer hurt anyone.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import struct
import threading
import time

from redis import Redis

from ..scripts import scripts_for

IDLE, RENDERING, ENDING = 0, 1, 2
GUARD_EVERY = 0.05  # seconds between the guards' looks at the cell
_LAYOUT = struct.Struct("=ddq")  # lease deadline, hard deadline (job timeout backstop), state


class LeaseCell:
    """Shared memory between a worker and the horses it forks: when the running render must die."""

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, _LAYOUT.size)  # anonymous and shared: survives fork() as one page

    def _read(self) -> tuple[float, float, int]:
        deadline, hard, state = _LAYOUT.unpack_from(self._mem, 0)
        return deadline, hard, state

    def arm(self, deadline: float, hard_deadline: float) -> None:
        _LAYOUT.pack_into(self._mem, 0, deadline, hard_deadline, RENDERING)

    def extend(self, deadline: float) -> None:
        _, hard, state = self._read()
        _LAYOUT.pack_into(self._mem, 0, deadline, hard, state)

    def revoke(self) -> None:
        """The run lost its lease (taken over, or ended by someone else): kill it now."""
        self.extend(0.0)

    def ending(self) -> None:
        deadline, hard, _ = self._read()
        _LAYOUT.pack_into(self._mem, 0, deadline, hard, ENDING)

    def idle(self) -> None:
        _LAYOUT.pack_into(self._mem, 0, 0.0, 0.0, IDLE)

    @property
    def state(self) -> int:
        return self._read()[2]

    @property
    def deadline(self) -> float:
        return self._read()[0]

    def expired(self, now: float | None = None) -> bool:
        """True while a render runs past its lease or its hard deadline."""
        deadline, hard, state = self._read()
        now = time.monotonic() if now is None else now
        return state == RENDERING and now >= min(deadline, hard)


def renew(connection: Redis, job_id: str, token: str, seconds: float) -> bool:
    """Extend the run's lease by ``seconds`` from now (server clock); False when the run no longer
    owns the job. Raises RedisError when Redis cannot say."""
    return scripts_for(connection).renew_lease(job_id, token, seconds)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def start_guard_thread(cell: LeaseCell) -> threading.Thread:
    """In the horse: kill our own process group the moment the lease runs out."""

    def guard() -> None:
        while True:
            if cell.expired():
                kill_group(os.getpgid(0))
            time.sleep(GUARD_EVERY)

    thread = threading.Thread(target=guard, daemon=True, name="farm-lease-guard")
    thread.start()
    return thread


def spawn_guard_process(cell: LeaseCell) -> int:
    """Fork a tiny watcher into the horse's process group: it kills the group when the lease runs
    out even if the horse itself is stopped, and dies with the render. Returns its pid (0 in the
    child never returns). It touches nothing but the cell and signals: no Redis, no locks."""
    horse = os.getpid()
    group = os.getpgid(0)
    pid = os.fork()
    if pid:
        return pid
    try:
        while cell.state == RENDERING:
            if cell.expired() or os.getppid() != horse:  # lease gone, or the horse died mid-render
                kill_group(group)
            time.sleep(GUARD_EVERY)
    finally:
        os._exit(0)


def reap_guard(pid: int) -> None:
    if pid > 0:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
