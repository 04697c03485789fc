"""``farm redis``: the embedded Redis as a foreground program for supervisor and systemd, stopping
after this host's workers.

``redis-server`` runs as this process's child, in a session of its own (a signal sent to this
program's process group does not reach it) and set to get SIGTERM if this process dies, even by
SIGKILL (Redis then flushes its AOF and exits: no orphan server). On SIGTERM or SIGINT this
process first lets this host's workers drain — ``supervisorctl stop all`` signals every program at
once, Redis first — and only then stops Redis: while workers of this host that are shutting down
are still registered, and until their processes and their pool have exited, it waits (at most
``drain_limit`` seconds), so their running jobs finish or are requeued and recorded in Redis, not
left to a journal or a takeover. A second signal stops
Redis at once. If ``redis-server`` exits by itself, so does this process, with its status.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
from redis import Redis
from redis.exceptions import RedisError
from rq.worker import Worker

from ..config import FarmConfig
from ..connection import no_retry
from ..live.roster import list_workers
from .embedded import EmbeddedRedis

log = logging.getLogger("farm.redis")

DRAIN_MARGIN = 20.0  # seconds past worker.shutdown_grace a drain may last (a requeue, an exit)
REDIS_STOP_SECONDS = 15.0  # for redis-server to flush its AOF and exit after SIGTERM
SETTLE = 2.0  # seconds in which the workers' own stop signals may still be on their way
POLL = 0.2


def drain_limit(config: FarmConfig) -> float:
    """The longest ``farm redis`` waits for this host's workers on a stop; supervisor's
    ``stopwaitsecs`` and systemd's ``TimeoutStopSec`` for it are this plus REDIS_STOP_SECONDS."""
    return config.worker.shutdown_grace + DRAIN_MARGIN


def local_workers(connection: Redis, config: FarmConfig, host: str) -> list[tuple[int | None, bool]]:
    """This host's live workers: (pid, shutting down?) each."""
    alive = [w for w in list_workers(connection, config) if w.alive and w.host == host]
    if not alive:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for info in alive:
            pipe.hexists(Worker.redis_worker_namespace_prefix + info.name, "shutdown_requested_date")
        flags = pipe.execute()
    return [(info.pid, bool(flag)) for info, flag in zip(alive, flags, strict=True)]


def _proc(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process of this box, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _is_farm_worker(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"farm" in part for part in argv) and b"worker" in argv


class Processes:
    """Worker processes of this box (and their pool) seen draining, until they have exited: a
    worker deregisters before its process ends, and its pool ends after it."""

    def __init__(self) -> None:
        self.started: dict[int, int] = {}  # pid -> start time (a reused pid is another process)

    def track(self, pid: int | None) -> None:
        if pid is None or pid in self.started or not _is_farm_worker(pid):
            return
        stat = _proc(pid)
        if stat is None:
            return
        self.started[pid] = stat[2]
        parent = stat[1]
        parent_stat = _proc(parent)
        if parent > 1 and parent_stat is not None and _is_farm_worker(parent):
            self.started.setdefault(parent, parent_stat[2])

    def running(self) -> int:
        count = 0
        for pid, started in self.started.items():
            stat = _proc(pid)
            count += stat is not None and stat[2] == started and stat[0] not in ("Z", "X")
        return count


def drain(
    connection: Redis,
    config: FarmConfig,
    *,
    host: str | None = None,
    limit: float | None = None,
    settle: float = SETTLE,
    forced: Callable[[], bool] = lambda: False,
) -> str:
    """Wait while this host's workers drain; returns why the wait ended. For ``settle`` seconds
    any live worker counts (its stop signal may not have arrived yet). Once a worker is seen
    shutting down (a ``stop all``), Redis waits for every worker shutting down, then for their
    processes and pools to exit; if none is (``supervisorctl stop farm-redis`` alone), it
    stops after ``settle`` seconds, not the whole drain limit."""
    host = host or socket.gethostname()
    limit = drain_limit(config) if limit is None else limit
    started = time.monotonic()
    processes = Processes()
    announced = False
    while True:
        try:
            workers = local_workers(connection, config, host)
        except RedisError as exc:
            return f"redis error ({exc})"
        for pid, stopping in workers:
            if stopping:
                processes.track(pid)
        draining = any(stopping for _, stopping in workers) or processes.running()
        if not draining and (not workers or time.monotonic() - started >= settle):
            return "workers not stopping" if workers else "no worker draining"
        if forced():
            return "second signal"
        if time.monotonic() - started >= limit:
            return f"gave up after {limit:g}s"
        if draining and not announced:
            log.info("farm redis: waiting for the workers of %s to finish or requeue their jobs", host)
            announced = True
        time.sleep(POLL)


def run_foreground(config: FarmConfig) -> int:
    """Run the embedded Redis until a stop signal (or its own exit); returns the exit status."""
    server = EmbeddedRedis(config)
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        signals.append(signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal is not a stop
    proc = server.spawn_foreground()
    click.echo(f"embedded Redis on {server.url} (pid {proc.pid})", err=True)
    while proc.poll() is None and not stop.wait(POLL):
        pass
    if proc.poll() is not None:
        log.error("redis-server exited with %s", proc.returncode)
        return proc.returncode or 1
    connection = Redis.from_url(
        server.admin_url, socket_timeout=2, socket_connect_timeout=2, retry=no_retry()
    )
    try:
        why = drain(connection, config, forced=lambda: len(signals) > 1)
    finally:
        connection.close()
    log.info("farm redis: stopping Redis (%s)", why)
    proc.terminate()
    try:
        proc.wait(timeout=REDIS_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return 0
