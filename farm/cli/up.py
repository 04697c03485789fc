"""``farm up``: the all-in-one on the render host — Redis (if none is configured), the scheduler,
N workers and the TUI (or a headless wait) — and a clean stop of all of them.

Children run in their own sessions so a Ctrl-C in the terminal reaches only this process, which
then stops them in order: workers get SIGTERM (finish the job, or requeue it after a short
grace), then a second SIGTERM (requeue now); the scheduler next; the embedded Redis last.
While it runs, it supervises them all like supervisord would: a child that dies is started again,
the embedded Redis too (within a second, with a short backoff), each with a log line; Redis
restarts are counted in ``farm:redis:restarts`` so the TUI header can show them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import caps, keys, policy
from ..config import ANY_ADDRESS, REDIS_URL_ENV, FarmConfig
from ..connection import connect_redis, redact
from ..errors import FarmError
from .embedded import EmbeddedRedis

if TYPE_CHECKING:
    from ..worker.scaling import PoolSize

log = logging.getLogger("farm.up")

WORKER_GRACE = 3.0  # seconds for running jobs to finish before they are requeued
STOP_TIMEOUT = 10.0
CHILD_RESTART_GAP = 1.0  # seconds between restarts of one child
SUPERVISE_EVERY = 0.25  # seconds between looks at the children and the embedded Redis
REDIS_BACKOFF = (0.0, 0.5, 1.0, 2.0)  # waits before successive restarts of a Redis that keeps dying


class RedisKeeper:
    """Restarts ``farm up``'s embedded Redis when it dies (kill -9, OOM), with a short backoff and a
    log line, and records each restart in Redis for the TUI. AOF persistence means nothing is lost."""

    def __init__(self, embedded: EmbeddedRedis, config: FarmConfig) -> None:
        self.embedded = embedded
        self.config = config
        self.restarts = 0
        self._failures = 0
        self._next_try = 0.0

    def dead(self) -> bool:
        proc = self.embedded.process
        if proc is not None:
            return proc.poll() is not None  # poll() also reaps it: no zombie left behind
        return not self.embedded.alive()  # a server this farm up reused rather than started

    def check(self) -> None:
        if not self.dead() or time.monotonic() < self._next_try:
            return
        proc = self.embedded.process
        status = proc.returncode if proc is not None else "unknown"
        log.error("embedded Redis exited (status %s); restarting it", status)
        try:
            self.embedded.start()
        except FarmError as exc:
            self._failures += 1
            wait = REDIS_BACKOFF[min(self._failures, len(REDIS_BACKOFF) - 1)]
            self._next_try = time.monotonic() + wait
            log.error("embedded Redis did not restart (%s); next try in %.1fs", exc, wait)
            return
        self._failures = 0
        self.restarts += 1
        log.warning("embedded Redis restarted on %s (restart %d)", self.embedded.url, self.restarts)
        try:
            connection = connect_redis(self.embedded.url, self.config)
            with connection.pipeline() as pipe:
                pipe.hincrby(keys.REDIS_RESTARTS, "count", 1)
                pipe.hset(keys.REDIS_RESTARTS, "last", repr(time.time()))
                pipe.execute()
            connection.close()
        except FarmError as exc:
            log.warning("could not record the Redis restart: %s", exc)


class Children:
    """The processes ``farm up`` started, and how to stop them without losing a job."""

    def __init__(self, config: FarmConfig, url: str) -> None:
        self.config = config
        self.url = url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.argvs: dict[str, tuple[str, ...]] = {}
        self.started_at: dict[str, float] = {}
        self.stopping = False

    def _argv(self, *args: str) -> list[str]:
        argv = [sys.executable, "-m", "farm"]
        if self.config.source:
            argv += ["--config", str(self.config.source)]
        return argv + list(args)

    def start(self, name: str, *args: str) -> None:
        self.argvs[name] = args
        self.started_at[name] = time.monotonic()
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.config.log_dir / f"{name}.log"
        env = {**os.environ, REDIS_URL_ENV: self.url}
        with open(log_path, "ab") as out:
            self.procs[name] = subprocess.Popen(
                self._argv(*args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_follow(os.getpid()),
            )

    def restart_dead(self) -> None:
        """Like supervisor would: a scheduler or worker pool that died is started again (its log
        says why); jobs of dead workers are recovered by the sweep meanwhile."""
        for name, args in list(self.argvs.items()):
            if time.monotonic() - self.started_at.get(name, 0.0) < CHILD_RESTART_GAP:
                continue  # a child that dies at once is retried once a second, not in a tight loop
            if not self.stopping and not self.alive(name):
                log.error(
                    "%s exited with %s; restarting it (see %s)",
                    name,
                    self.procs[name].returncode,
                    self.config.log_dir / f"{name}.log",
                )
                self.start(name, *args)

    def supervise(
        self, stop: threading.Event, redis: RedisKeeper | None = None, every: float = SUPERVISE_EVERY
    ) -> None:
        while not stop.wait(every):
            if redis is not None and not self.stopping:
                redis.check()
            self.restart_dead()

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def _signal(self, name: str, sig: int) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)

    def _wait(self, name: str, timeout: float) -> bool:
        proc = self.procs.get(name)
        if proc is None:
            return True
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self) -> None:
        self.stopping = True
        if "worker" in self.procs:
            self._signal("worker", signal.SIGTERM)
            if not self._wait("worker", WORKER_GRACE):
                self._signal("worker", signal.SIGTERM)  # second signal: requeue running jobs now
                if not self._wait("worker", STOP_TIMEOUT):
                    log.warning("workers did not stop; killing them (the sweep will requeue their jobs)")
                    self._kill_group("worker")
        for name in [n for n in self.procs if n != "worker"]:
            self._signal(name, signal.SIGTERM)
            if not self._wait(name, STOP_TIMEOUT):
                self._kill_group(name)

    def _kill_group(self, name: str) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _follow(parent: int) -> Callable[[], None]:
    """Run in a child between fork and exec: it gets SIGTERM (a clean stop: workers finish or
    requeue their jobs) when ``farm up`` dies, even by SIGKILL, instead of living on beside the
    next ``farm up``'s children. (The embedded Redis is left: the next ``farm up`` reuses it.)"""
    from ..worker.pool import PR_SET_PDEATHSIG

    try:  # resolved here, not in the child: a fork of a threaded process should only call prctl
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None

    def follow() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return follow


def start_farm(config: FarmConfig, workers: PoolSize | int) -> tuple[str, EmbeddedRedis | None, Children]:
    embedded = None
    if not (os.environ.get(REDIS_URL_ENV) or config.redis.url):
        embedded = EmbeddedRedis(config)
        started = embedded.start()
        log.info("%s embedded Redis on %s", "started" if started else "reusing", embedded.url)
    url = config.redis_url() if embedded is None else embedded.url
    connection = connect_redis(url, config)
    caps.seed(connection, config)
    policy.publish(connection, config)  # this is the render host: its config is the farm's
    connection.close()
    children = Children(config, url)
    children.start("scheduler", "scheduler")
    children.start("serve", "serve")
    children.start("worker", "worker", "--workers", str(workers))
    return url, embedded, children


def banner(config: FarmConfig, url: str) -> list[str]:
    """Every URL the farm serves, for the operator to hand out (passwords redacted)."""
    lines = [f"Redis       {redact(url)}"]
    if config.redis.bind:
        host, _, port = config.redis.bind.rpartition(":")
        shown = socket.gethostname() if host in ANY_ADDRESS else host
        lines.append(f"Redis (LAN) redis://:***@{shown}:{port}/0   (password: ${config.redis.password_env})")
    lines.append(f"farm serve  {config.serve_url()}   (token: `farm token`)")
    return lines


def run_up(
    config: FarmConfig,
    workers: PoolSize | int,
    demo: bool,
    tui: bool,
    run_ui: Callable[[FarmConfig, str], None] | None = None,
) -> None:
    url, embedded, children = start_farm(config, workers)
    stop_demo = threading.Event()
    feeder = None
    if demo:
        from .demo import feed_forever

        feeder = threading.Thread(
            target=feed_forever, args=(config, url, stop_demo), daemon=True, name="demo-feeder"
        )
        feeder.start()
    keeper = RedisKeeper(embedded, config) if embedded is not None else None
    supervisor = threading.Thread(
        target=children.supervise, args=(stop_demo, keeper), daemon=True, name="supervise"
    )
    supervisor.start()
    try:
        if tui:
            with _hangup_stops():
                (run_ui or load_ui())(config, url)
        else:
            print(
                f"farm up: {workers} workers{' (scaling with the work)' if ':' in str(workers) else ''}, "
                f"scheduler, farm serve{', demo jobs' if demo else ''}; "
                f"logs in {config.log_dir}. Ctrl-C stops.",
                *(f"  {line}" for line in banner(config, url)),
                sep="\n",
                flush=True,
            )
            _wait_for_interrupt()
    finally:
        stop_demo.set()
        supervisor.join(timeout=5)
        if feeder is not None:
            feeder.join(timeout=5)
        print("farm up: stopping workers (running jobs finish or go back in line)...", flush=True)
        children.stop()
        if embedded is not None:
            embedded.stop()
        print("farm up: stopped.", flush=True)


def load_ui(name: str = "tui") -> Callable[..., None]:
    """A UI's entry point. The UI is a plugin (entry point group ``farm.ui``: ``tui`` is
    ``app.app:run_tui``, ``web`` is ``app.web:run_web``, registered by this distribution), so
    ``farm/`` depends on no UI code and importing the teammate API never loads Textual."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="farm.ui", name=name):
        ui: Callable[[FarmConfig, Any], None] = entry.load()
        return ui
    raise FarmError(f"the {name} UI is not installed (no 'farm.ui' entry point {name!r}): reinstall farm")


@contextlib.contextmanager
def _hangup_stops() -> Iterator[None]:
    """While the UI runs: a closed terminal (SIGHUP, whose default would end this process at
    once and leave the farm's processes running) ends the UI like ``q``, and the farm stops."""

    def on_hangup(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGHUP, on_hangup)
    try:
        yield
    except KeyboardInterrupt:
        log.warning("farm up: the terminal went away; stopping the farm")
    finally:
        signal.signal(signal.SIGHUP, previous)


def _wait_for_interrupt() -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    # SIGHUP: the terminal (or ssh session) went away; stop as cleanly as for Ctrl-C.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
