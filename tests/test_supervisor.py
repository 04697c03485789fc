"""Running the farm under a process supervisor: worker children die with their pool, and the
generated supervisord config starts as printed and stops without losing or redoing a render
(a real ``supervisord`` and ``supervisorctl`` on a private unix socket)."""

from __future__ import annotations

import contextlib
import os
import signal

from redis import Redis

from farm.worker.pool import die_with_parent
from tests.faults import alive, children
from tests.util import wait_for, wait_workers

PR_GET_PDEATHSIG = 2


def test_die_with_parent_sets_the_signal_and_sees_a_dead_parent():
    import ctypes

    pid = os.fork()
    if pid == 0:  # the child: its real parent passes, and the signal is set; a stranger does not
        code = 0
        try:
            libc = ctypes.CDLL(None)
            code |= 0 if die_with_parent(os.getppid(), signal.SIGTERM) else 1
            value = ctypes.c_int()
            libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
            code |= 0 if value.value == signal.SIGTERM else 2
            code |= 0 if not die_with_parent(os.getppid() + 1_000_000) else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_pool_children_die_with_the_pool(procs, connection: Redis):
    """SIGKILL of the pool process: its workers get SIGTERM from the kernel, deregister and exit
    (before, they were orphaned, kept taking jobs, and doctor counted them twice)."""
    pool = procs.worker("--workers", "2")
    wait_workers(connection, 2)
    kids = wait_for(lambda: (k := [p for p in children(pool.pid) if alive(p)]) and len(k) == 2 and k)
    try:
        os.kill(pool.pid, signal.SIGKILL)
        pool.wait(timeout=10)
        wait_for(lambda: not any(alive(k) for k in kids), timeout=3, what="the pool's workers to exit")
        wait_for(lambda: connection.zcard("farm:heartbeats") == 0, timeout=3, what="workers deregistered")
    finally:
        for kid in kids:  # the fixture kills the pool's group, which a dead pool no longer leads
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
