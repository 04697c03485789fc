"""Fault-injection tools shared by the fault tests and ``bench/chaos.py`` (no pytest fixtures here).

- ``ProbeRenderer``: a renderer that appends every *real* execution to a file of JSON lines
  (start, a beat every ``BEAT`` seconds, end), optionally from a child subprocess too. The file is
  evidence independent of Redis: ``read_probe`` turns it into runs, and ``overlaps``,
  ``cap_violations`` and ``completed_twice`` say whether a job ran twice at once, whether more
  renders ran than the caps allow, and whether a completed render was done again.
  Registered through config: ``plugins = { probe = "tests.faults:ProbeRenderer" }``.
- ``TcpProxy``: a TCP relay in front of Redis that can ``freeze()`` (stop forwarding, keep the
  sockets open: a frozen network link), ``thaw()`` and ``drop()`` (close every connection).
- Process trees from /proc: ``children``, ``horse_of``, ``freeze_tree``, ``thaw_tree``,
  ``kill_tree``, ``alive``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from farm.models import ErrorKind
from farm.render import Params, RenderContext, Renderer, RenderError

BEAT = 0.5  # seconds between a running probe's beat lines
STEP = 0.05  # the probe's unit of work; a frozen probe does no work, so it resumes where it stopped

# -- processes -----------------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time in clock ticks) of a process, or None if there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[2] if stat else None


def alive(pid: int, pst: int | None = None) -> bool:
    """Is ``pid`` running (not a zombie) and, given its start time ``pst``, the same process?"""
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return pst is None or stat[2] == pst


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                out.append(int(entry.name))
    return sorted(out)


def horse_of(worker_pid: int) -> int | None:
    """The work horse of an RQ worker: its only child while it runs a job."""
    kids = [p for p in children(worker_pid) if alive(p)]
    return kids[0] if kids else None


def freeze_tree(pid: int) -> list[int]:
    """SIGSTOP ``pid`` and every descendant, top-down (a stopped process cannot fork past the scan).
    Returns the pids stopped."""
    stopped: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop(0)
        try:
            os.kill(current, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        stopped.append(current)
        frontier.extend(children(current))
    return stopped


def thaw_tree(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and every descendant (frozen first, so none escapes by forking or by being
    reparented before it is seen). Returns the pids killed."""
    pids = freeze_tree(pid)
    for current in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(current, signal.SIGKILL)
    return pids


# -- the probe renderer --------------------------------------------------------------------------


def append_line(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """One JSON line in one write(2) on an O_APPEND descriptor: lines from many processes never mix."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def mark(path: str | os.PathLike[str], event: str, pid: int, **extra: Any) -> None:
    """A marker from the fault injector, e.g. ``mark(log, "kill", pid)`` just before SIGKILLing
    ``pid``: a run without an end line then ends at the marker instead of "unknown"."""
    append_line(path, {"ev": event, "pid": pid, "pst": start_ticks(pid), "t": time.time(), **extra})


# The probe's child: stdlib only, so it starts fast and needs no import path. Same work loop as
# the horse (keep the two in step): work advances by at most 2 steps per wake-up, so a process
# that was frozen still has its remaining work to do after SIGCONT, like a real render.
CHILD_CODE = r"""
import json, os, sys, time
path, base, seconds, beat, step = sys.argv[1], json.loads(sys.argv[2]), *map(float, sys.argv[3:6])
with open(f"/proc/{os.getpid()}/stat") as f:
    pst = int(f.read().rsplit(")", 1)[1].split()[19])
def put(ev):
    rec = dict(base, ev=ev, role="child", pid=os.getpid(), pst=pst, t=time.time())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())
    finally:
        os.close(fd)
put("start")
done, last = 0.0, time.monotonic()
next_beat = last + beat
while done < seconds:
    time.sleep(min(step, seconds - done))
    now = time.monotonic()
    done, last = done + min(now - last, 2 * step), now
    if now >= next_beat:
        put("beat")
        next_beat = now + beat
put("end")
"""


class ProbeParams(Params):
    seconds: float = Field(2.0, ge=0, le=3600, description="seconds of (simulated) work")
    log: str = Field(description="file the probe appends its JSON lines to")
    subprocess: bool = Field(False, description="do the work in a child process (which logs too)")
    job: str | None = Field(None, max_length=200, description="a label copied into every line")


def _current_renderer() -> str:
    """The name the farm registered this renderer under (config plugins may map several names to
    this class); "probe" outside a worker."""
    with contextlib.suppress(Exception):
        from rq import get_current_job

        job = get_current_job()
        if job is not None:
            return str(job.kwargs.get("renderer") or "probe")
    return "probe"


class ProbeRenderer(Renderer):
    """Works for ``seconds`` and writes start/beat/end lines; see the module docstring."""

    name = "probe"
    Params = ProbeParams

    def render(self, params: ProbeParams, ctx: RenderContext) -> dict[str, Any]:
        base = {
            "job": ctx.job_id,
            "attempt": ctx.attempt,
            "run": uuid.uuid4().hex[:12],
            "renderer": _current_renderer(),
            "label": params.job,
        }
        pid = os.getpid()
        pst = start_ticks(pid)

        def put(event: str) -> None:
            append_line(
                params.log, {**base, "ev": event, "role": "horse", "pid": pid, "pst": pst, "t": time.time()}
            )

        put("start")
        if params.subprocess:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CHILD_CODE,
                    params.log,
                    json.dumps(base),
                    repr(params.seconds),
                    repr(BEAT),
                    repr(STEP),
                ]
            )
            next_beat = time.monotonic() + BEAT
            while child.poll() is None:
                time.sleep(STEP)
                if ctx.cancelled():
                    child.kill()
                    child.wait()
                    raise RenderError(ErrorKind.CANCELED, "canceled")
                if time.monotonic() >= next_beat:
                    put("beat")
                    next_beat = time.monotonic() + BEAT
            if child.returncode != 0:
                raise RenderError(ErrorKind.UNKNOWN, f"probe child exited with {child.returncode}")
        else:
            work(params.seconds, lambda: put("beat"), ctx.cancelled)
        put("end")
        return {"outputs": [], "probe_run": base["run"]}


def work(seconds: float, beat: Callable[[], None], cancelled: Callable[[], bool]) -> None:
    """``seconds`` of simulated work in ``STEP`` units (see CHILD_CODE), beating every ``BEAT``."""
    done, last = 0.0, time.monotonic()
    next_beat = last + BEAT
    while done < seconds:
        time.sleep(min(STEP, seconds - done))
        now = time.monotonic()
        done, last = done + min(now - last, 2 * STEP), now
        if cancelled():
            raise RenderError(ErrorKind.CANCELED, "canceled")
        if now >= next_beat:
            beat()
            next_beat = now + BEAT


# -- reading the probe file ----------------------------------------------------------------------


@dataclass
class Execution:
    """One process's part of a run: the horse, or its child."""

    job: str
    run: str
    role: str
    pid: int
    pst: int | None
    attempt: int
    renderer: str
    start: float
    end: float | None = None  # its end line: the work completed
    last_seen: float = 0.0  # its last line of any kind
    killed_at: float | None = None  # a kill marker for its pid
    finish: float = 0.0  # where its interval ends (see read_probe)
    running: bool = False  # no end line and still alive when the file was read


@dataclass
class Run:
    """One execution of a job: the horse and its child together."""

    job: str
    run: str
    attempt: int
    renderer: str
    start: float
    finish: float
    completed: bool  # the horse wrote its end line
    running: bool
    parts: list[Execution] = field(default_factory=list)


@dataclass
class Overlap:
    job: str
    first: str  # run ids
    second: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class CapViolation:
    at: float
    renderer: str  # "*" for the total cap
    running: int
    cap: int


@dataclass
class ProbeLog:
    runs: list[Run]
    markers: list[dict[str, Any]]
    read_at: float

    def by_job(self) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = defaultdict(list)
        for run in self.runs:
            out[run.job].append(run)
        return out


def read_probe(path: str | os.PathLike[str], now: float | None = None) -> ProbeLog:
    """Runs from a probe file. An execution's interval ends at its end line; without one, at its
    kill marker; else, if its process is still alive, at ``now`` (it is still running); else at its
    last line (it died some time after: the interval is a lower bound of what it really ran)."""
    now = time.time() if now is None else now
    executions: dict[tuple[str, str, int], Execution] = {}
    kills: dict[tuple[int, int | None], float] = {}
    markers: list[dict[str, Any]] = []
    text = Path(path).read_text() if Path(path).exists() else ""
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash mid-write (cannot happen with O_APPEND, but be safe)
        event = rec.get("ev")
        if "job" not in rec:
            markers.append(rec)
            if event == "kill":
                kills.setdefault((rec["pid"], rec.get("pst")), rec["t"])
            continue
        key = (rec["run"], rec["role"], rec["pid"])
        ex = executions.get(key)
        if ex is None:
            ex = executions[key] = Execution(
                job=rec["job"],
                run=rec["run"],
                role=rec["role"],
                pid=rec["pid"],
                pst=rec.get("pst"),
                attempt=rec.get("attempt", 0),
                renderer=rec.get("renderer", "probe"),
                start=rec["t"],
            )
        ex.start = min(ex.start, rec["t"])
        ex.last_seen = max(ex.last_seen, rec["t"])
        if event == "end":
            ex.end = rec["t"]
    for ex in executions.values():
        killed = kills.get((ex.pid, ex.pst), kills.get((ex.pid, None)))
        ex.killed_at = killed if killed is not None and killed >= ex.start else None
        if ex.end is not None:
            ex.finish = ex.end
        elif ex.killed_at is not None:
            ex.finish = max(ex.killed_at, ex.last_seen)
        elif alive(ex.pid, ex.pst):
            ex.finish, ex.running = now, True
        else:
            ex.finish = ex.last_seen
    grouped: dict[str, list[Execution]] = defaultdict(list)
    for ex in executions.values():
        grouped[ex.run].append(ex)
    runs = []
    for run_id, parts in grouped.items():
        horse = [p for p in parts if p.role == "horse"]
        first = horse[0] if horse else parts[0]
        runs.append(
            Run(
                job=first.job,
                run=run_id,
                attempt=first.attempt,
                renderer=first.renderer,
                start=min(p.start for p in parts),
                finish=max(p.finish for p in parts),
                completed=any(p.end is not None for p in horse),
                running=any(p.running for p in parts),
                parts=parts,
            )
        )
    runs.sort(key=lambda r: r.start)
    return ProbeLog(runs=runs, markers=markers, read_at=now)


def overlaps(log: ProbeLog, tolerance: float = 0.0) -> list[Overlap]:
    """Pairs of runs of one job whose intervals intersect by more than ``tolerance`` seconds."""
    out = []
    for job, runs in log.by_job().items():
        for i, a in enumerate(runs):
            for b in runs[i + 1 :]:
                start, end = max(a.start, b.start), min(a.finish, b.finish)
                if end - start > tolerance:
                    out.append(Overlap(job, a.run, b.run, start, end))
    return out


def concurrency_points(runs: Iterable[Run]) -> list[tuple[float, int, Run]]:
    """(time, +1/-1, run) sorted so that an end at the same instant as a start comes first."""
    points = []
    for run in runs:
        points.append((run.start, 1, run))
        points.append((run.finish, -1, run))
    points.sort(key=lambda p: (p[0], p[1]))
    return points


def max_concurrency(log: ProbeLog) -> dict[str, int]:
    """The most runs of each renderer (and "*" for all) seen running at once."""
    best: dict[str, int] = defaultdict(int)
    current: dict[str, int] = defaultdict(int)
    for _, delta, run in concurrency_points(log.runs):
        for name in (run.renderer, "*"):
            current[name] += delta
            best[name] = max(best[name], current[name])
    return dict(best)


def cap_violations(log: ProbeLog, caps: dict[str, int], total: int | None = None) -> list[CapViolation]:
    """Each start that took a renderer (or, with ``total``, the farm) over its cap."""
    out = []
    current: dict[str, int] = defaultdict(int)
    for at, delta, run in concurrency_points(log.runs):
        for name in (run.renderer, "*"):
            current[name] += delta
        if delta < 0:
            continue
        cap = caps.get(run.renderer)
        if cap is not None and current[run.renderer] > cap:
            out.append(CapViolation(at, run.renderer, current[run.renderer], cap))
        if total is not None and current["*"] > total:
            out.append(CapViolation(at, "*", current["*"], total))
    return out


def completed_twice(log: ProbeLog) -> dict[str, int]:
    """Job id -> number of runs that completed their work, for jobs completed more than once."""
    out = {}
    for job, runs in log.by_job().items():
        done = sum(1 for r in runs if r.completed)
        if done > 1:
            out[job] = done
    return out


# -- the TCP proxy -------------------------------------------------------------------------------

Address = tuple[str, int] | str  # (host, port) or a unix socket path


class TcpProxy:
    """Relays TCP connections on 127.0.0.1:``port`` to ``upstream`` (TCP or unix socket).

    ``freeze()`` stops forwarding in both directions and stops connecting new clients upstream
    while keeping every socket open, as a frozen network link does (clients see timeouts, not
    resets); ``thaw()`` resumes, delivering what was held. ``drop()`` closes every connection.
    """

    def __init__(self, upstream: Address, port: int = 0) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def start(self) -> TcpProxy:
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def drop(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def stop(self) -> None:
        self._closed.set()
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._relay, "proxy-relay", client)

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.upstream)
            return sock
        return socket.create_connection(self.upstream, timeout=5)

    def _relay(self, client: socket.socket) -> None:
        with self._lock:
            self._pairs.append((client, None))
        while not self._flowing.wait(0.1):  # frozen: the client waits, as behind a dead link
            if self._closed.is_set():
                break
        try:
            server = self._connect_upstream()
        except OSError:
            self._forget(client, None)
            return
        with self._lock:
            known = any(c is client for c, _ in self._pairs)
            if known:
                self._pairs = [(c, server if c is client else s) for c, s in self._pairs]
        if not known:  # dropped while connecting
            server.close()
            return
        server.settimeout(None)
        peer = {client: server, server: client}
        selector = selectors.DefaultSelector()
        try:
            selector.register(client, selectors.EVENT_READ)
            selector.register(server, selectors.EVENT_READ)
            while not self._closed.is_set():
                if not self._flowing.wait(0.1):
                    continue
                for key, _ in selector.select(0.1):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    peer[source].sendall(data)
        except (OSError, ValueError):
            return  # dropped, or the other side closed
        finally:
            selector.close()
            self._forget(client, server)

    def _forget(self, client: socket.socket, server: socket.socket | None) -> None:
        with self._lock:
            self._pairs = [(c, s) for c, s in self._pairs if c is not client]
        for sock in (client, server):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
