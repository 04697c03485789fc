"""Chaos: rounds of real faults under a steady submit load, then the invariants, checked from
evidence Redis cannot fake.

Set-up (all real processes, as supervisor would run them): a private redis-server with AOF
(appendonly yes, appendfsync everysec) on a unix socket, started and restarted by this script;
`farm scheduler`; worker pool A (`farm worker --processes 2`) straight on the socket; worker pool
B (`farm worker --processes 2`) over TCP through a freezable proxy (tests/faults.py). A dead
scheduler or pool is started again after 1 s. Renderers: `probe` (capped at 2) and `probe2`
(uncapped), both tests.faults:ProbeRenderer, total cap 4; jobs of 1.5-4 s, 30% doing their work
in a child process. The probe appends every real execution to a file, so a render that keeps
going after its worker was written off is seen whatever Redis says.

Why a private redis-server and not `farm up --no-tui`: the faults need to hit each process on its
own (and Redis with kill -9), and the restart of Redis should be the supervisor's, at a known
instant, so "Redis back -> dispatch resumes" measures the farm's processes, not `farm up`.

Faults, one per round, cycling through all kinds in a seeded order: SIGKILL of a busy worker, of a
work horse, of the scheduler, of a pool's parent; SIGSTOP of a busy worker alone, and of a worker
with its horse's whole tree (SIGCONT after 5-15 s); kill -9 of Redis under load (back after 2-5 s);
a partition of pool B (proxy frozen 10-30 s).

Farm config: defaults (sweep every 15 s, worker dead after 10 s, heartbeats every 2 s, lease 5 s +
margin 2 s), except retry delays (2 s doubling to 10 s instead of 5 min: retried jobs must come
back within the run) and the caps above. After the rounds the submitter stops and the farm drains.

Invariants (exit 1 if any of the first three is non-zero): lost ids (accepted submits not ending in
exactly one terminal state), overlapping runs of one job (probe file), cap violations (probe file,
and farm:events replayed). Also: ghost submits (raised FarmUnavailableError but exist), completed
renders redone, recovery times (a dead worker's job back in line, target 15 s; Redis back ->
next start, target 2 s).
Run: .venv/bin/python bench/chaos.py [--rounds 50] [--seed 1] [--rate 0.6] [--drain 240]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from bench.common import record  # noqa: E402
from farm import Farm  # noqa: E402
from farm.cli.embedded import redis_binary  # noqa: E402
from farm.config import load_config  # noqa: E402
from farm.connection import connect_redis  # noqa: E402
from farm.errors import FarmError, FarmUnavailableError  # noqa: E402
from tests import faults  # noqa: E402
from tests.events import read_events, replay  # noqa: E402
from tests.util import write_toml  # noqa: E402

KINDS = (
    "kill-worker",
    "kill-horse",
    "stop-worker",
    "kill-redis",
    "partition",
    "stop-worker+horse",
    "kill-scheduler",
    "kill-pool",
)
CAPS = {"probe": 2}
TOTAL = 4
TERMINAL = {b"finished", b"failed", b"canceled", b"stopped"}
RESPAWN_DELAY = 1.0
TARGET_BACK_IN_LINE = 15.0
TARGET_RESUME = 2.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes ----------------------------------------------------------------------------------


class RedisServer:
    """A redis-server with AOF on a private unix socket; kill -9 and restart like supervisor."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; returns the wall time at which it first answered."""
        argv = [
            redis_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--appendfilename",
            "chaos.aof",
            "--save",
            "",
        ]
        with open(self.dir / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError):
                client = Redis(unix_socket_path=str(self.socket), socket_timeout=1)
                try:
                    if client.ping():
                        return time.time()
                finally:
                    client.close()
            time.sleep(0.005)
        raise RuntimeError("redis-server did not come up")

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


class Supervisor:
    """Starts `farm scheduler` and the worker pools, and starts a dead one again after 1 s."""

    def __init__(self, workdir: Path, config: Path, proxy_url: str) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        base = {**os.environ, "FARM_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
        base.pop("FARM_REDIS_URL", None)
        self.specs: dict[str, tuple[list[str], dict[str, str]]] = {
            "scheduler": (["scheduler"], base),
            "poolA": (["worker", "--processes", "2"], base),
            "poolB": (["worker", "--processes", "2"], {**base, "FARM_REDIS_URL": proxy_url}),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: Counter[str] = Counter()
        self.orphans: list[int] = []  # pool children left behind by a pool killed under them
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="supervisor")

    def start(self, name: str) -> None:
        args, env = self.specs[name]
        with open(self.logs / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "farm", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start_all(self) -> None:
        for name in self.specs:
            self.start(name)
        self._thread.start()

    def _watch(self) -> None:
        dead_since: dict[str, float] = {}
        while not self._stop.wait(0.2):
            with self._lock:
                for name, proc in self.procs.items():
                    if proc.poll() is None:
                        dead_since.pop(name, None)
                        continue
                    first = dead_since.setdefault(name, time.monotonic())
                    if time.monotonic() - first >= RESPAWN_DELAY:
                        self.restarts[name] += 1
                        dead_since.pop(name)
                        self.start(name)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def workers(self, pool: str | None = None) -> list[tuple[str, int]]:
        pools = [pool] if pool else ["poolA", "poolB"]
        return [(p, w) for p in pools for w in faults.children(self.pid(p)) if faults.alive(w)]

    def stop_all(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            trees = [faults.children(p.pid) for p in self.procs.values()] + [self.orphans]
            for proc in self.procs.values():
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in self.procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            for proc in self.procs.values():
                if proc.poll() is None:
                    faults.kill_tree(proc.pid)
                    proc.wait()
            for pids in trees:  # anything left of the workers and their horses
                for pid in pids:
                    if faults.alive(pid):
                        faults.kill_tree(pid)


# -- load ---------------------------------------------------------------------------------------


class Submitter(threading.Thread):
    """A steady stream of probe jobs (explicit ids, so a failed submit can be looked up later)."""

    def __init__(self, farm: Farm, probe_log: Path, rate: float, rng: random.Random) -> None:
        super().__init__(daemon=True, name="submitter")
        self.farm = farm
        self.probe_log = probe_log
        self.rate = rate
        self.rng = rng
        self.accepted: dict[str, float] = {}
        self.rejected: dict[str, str] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._seq = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        while not self._halt.is_set():
            self.submit_one()
            self._halt.wait(self.rng.expovariate(self.rate))

    def submit_one(self) -> None:
        with self._lock:
            self._seq += 1
            job_id = f"c{self._seq:05d}-{uuid.uuid4().hex[:6]}"
            renderer = self.rng.choice(["probe", "probe2"])
            params = {
                "seconds": round(self.rng.uniform(1.5, 4.0), 2),
                "log": str(self.probe_log),
                "subprocess": self.rng.random() < 0.3,
                "job": job_id,
            }
            priority = self.rng.choice(["high", "medium", "low"])
        try:
            self.farm.submit(renderer, params, priority=priority, job_id=job_id)
            self.accepted[job_id] = time.time()
        except FarmUnavailableError as exc:
            self.rejected[job_id] = str(exc)
        except FarmError as exc:  # e.g. "already exists" after a reply lost to a Redis kill
            self.rejected[job_id] = f"{type(exc).__name__}: {exc}"

    def burst(self, count: int) -> None:
        for _ in range(count):
            self.submit_one()


# -- measuring ----------------------------------------------------------------------------------


class BackInLine(threading.Thread):
    """Seconds from a fault until the victim's run is over: the job queued, scheduled, failed or
    started again under a new token. A run that simply finished is not a recovery."""

    def __init__(self, url: str, job_id: str, token: bytes, t0: float, timeout: float = 90.0) -> None:
        super().__init__(daemon=True, name=f"watch-{job_id}")
        self.url, self.job_id, self.token, self.t0, self.timeout = url, job_id, token, t0, timeout
        self.seconds: float | None = None
        self.outcome = "pending"

    def run(self) -> None:
        client = Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=1)
        key = f"rq:job:{self.job_id}"
        while time.time() - self.t0 < self.timeout:
            try:
                status, token = client.hmget(key, "status", "farm_token")
            except RedisError:
                time.sleep(0.1)
                continue
            if status == b"finished" and token == self.token:
                self.outcome = "finished normally"
                return
            if token != self.token or status != b"started":
                self.seconds = time.time() - self.t0
                self.outcome = (status or b"missing").decode()
                return
            time.sleep(0.05)
        self.outcome = f"still running after {self.timeout:.0f}s"


@dataclass
class Round:
    index: int
    kind: str
    t0: float = 0.0
    t1: float = 0.0
    detail: str = ""
    watches: list[BackInLine] = field(default_factory=list)
    redis_back: float | None = None
    resume: float | None = None
    orphans_alive: int | None = None


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# -- the run ------------------------------------------------------------------------------------


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="farm-chaos-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.probe_log = self.workdir / "probe.jsonl"
        self.redis = RedisServer(self.workdir)
        self.rounds: list[Round] = []

    def setup(self) -> None:
        self.redis.start()
        self.proxy = faults.TcpProxy(str(self.redis.socket)).start()
        config_path = self.workdir / "farm.toml"
        write_toml(
            config_path,
            {
                "redis": {"url": self.redis.url},
                "paths": {"data_dir": str(self.workdir / "data"), "input_roots": [str(self.workdir)]},
                "caps": {"total": TOTAL, "renderers": CAPS, "windows": []},
                "retry": {"base_delay": 2.0, "max_delay": 10.0},
                "plugins": {"probe": "tests.faults:ProbeRenderer", "probe2": "tests.faults:ProbeRenderer"},
            },
        )
        self.config = load_config(config_path)
        self.direct = Redis.from_url(self.redis.url, socket_timeout=5)
        self.sup = Supervisor(self.workdir, config_path, self.proxy.url)
        self.sup.start_all()
        deadline = time.monotonic() + 60
        while self.direct.zcard("farm:heartbeats") < 4:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start; see {self.workdir / 'logs'}")
            time.sleep(0.2)
        farm = Farm(connect_redis(self.redis.url, self.config), self.config, url=self.redis.url, who="chaos")
        self.submitter = Submitter(farm, self.probe_log, self.args.rate, random.Random(self.args.seed + 1))
        self.submitter.start()
        log(f"farm up: 4 worker processes (2 behind the proxy on :{self.proxy.port}); workdir {self.workdir}")

    # -- picking victims

    def busy_worker(self, pool: str | None = None, wait: float = 20.0) -> tuple[str, int, int, str] | None:
        """(pool, worker pid, horse pid, job id) of a worker rendering a probe job."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            running = {
                p.pid: r.job
                for r in faults.read_probe(self.probe_log).runs
                if not r.completed
                for p in r.parts
                if p.role == "horse" and p.running
            }
            candidates = []
            for pool_name, worker in self.sup.workers(pool):
                horse = faults.horse_of(worker)
                if horse in running and faults.proc_stat(worker)[0] != "T":  # type: ignore[index]
                    candidates.append((pool_name, worker, horse, running[horse]))
            if candidates:
                return self.rng.choice(candidates)
            time.sleep(0.2)
        return None

    def watch(self, rnd: Round, job_id: str) -> None:
        token = self.direct.hget(f"rq:job:{job_id}", "farm_token")
        status = self.direct.hget(f"rq:job:{job_id}", "status")
        if token is None or status != b"started":
            return
        watch = BackInLine(self.redis.url, job_id, token, rnd.t0)
        watch.start()
        rnd.watches.append(watch)

    # -- faults

    def fault(self, rnd: Round) -> None:
        kind, rng = rnd.kind, self.rng
        if kind in ("kill-worker", "kill-horse", "stop-worker", "stop-worker+horse"):
            victim = self.busy_worker()
            if victim is None:
                rnd.detail = "no busy worker found; skipped"
                return
            pool, worker, horse, job_id = victim
            rnd.t0 = time.time()
            if kind == "kill-worker":
                os.kill(worker, signal.SIGKILL)  # its horse kills its own tree when it notices
                self.watch(rnd, job_id)
                rnd.detail = f"worker {worker} ({pool}) running {job_id}"
            elif kind == "kill-horse":
                faults.mark(self.probe_log, "kill", horse)
                os.kill(horse, signal.SIGKILL)
                self.watch(rnd, job_id)
                rnd.detail = f"horse {horse} of {worker} ({pool}) running {job_id}"
            else:
                hold = rng.uniform(5, 15)
                if kind == "stop-worker":
                    os.kill(worker, signal.SIGSTOP)
                    stopped = [worker]
                else:
                    stopped = faults.freeze_tree(worker)
                self.watch(rnd, job_id)
                time.sleep(hold)
                faults.thaw_tree(stopped)
                rnd.detail = (
                    f"{len(stopped)} process(es) of worker {worker} ({pool}, {job_id}) stopped {hold:.1f}s"
                )
        elif kind == "kill-scheduler":
            rnd.t0 = time.time()
            os.kill(self.sup.pid("scheduler"), signal.SIGKILL)
            rnd.detail = "scheduler SIGKILLed"
        elif kind == "kill-pool":
            pool = rng.choice(["poolA", "poolB"])
            parent = self.sup.pid(pool)
            kids = faults.children(parent)
            rnd.t0 = time.time()
            os.kill(parent, signal.SIGKILL)
            time.sleep(5)
            left = [k for k in kids if faults.alive(k)]
            rnd.orphans_alive = len(left)
            for kid in left:  # what an operator would do: stop them (warm, their jobs finish or requeue)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGTERM)
            self.sup.orphans.extend(left)
            rnd.detail = f"{pool} parent {parent} SIGKILLed; {len(left)} of its {len(kids)} workers still alive 5s later"
        elif kind == "kill-redis":
            self.submitter.burst(6)  # a backlog, so dispatch has something to resume
            time.sleep(1.0)
            down = rng.uniform(2, 5)
            rnd.t0 = time.time()
            self.redis.kill9()
            time.sleep(down)
            rnd.redis_back = self.redis.start()
            rnd.resume = self.first_start_after(rnd.redis_back, 30)
            rnd.detail = f"down {down:.1f}s; next start {fmt(rnd.resume)} after Redis answered"
        elif kind == "partition":
            busy = self.busy_worker("poolB")  # cut pool B off while it renders something
            victims = [
                r.job
                for r in faults.read_probe(self.probe_log).runs
                if r.running and self._in_pool(r, "poolB")
            ]
            hold = rng.uniform(10, 30)
            rnd.t0 = time.time()
            self.proxy.freeze()
            for job_id in victims:
                self.watch(rnd, job_id)
            time.sleep(hold)
            self.proxy.thaw()
            rnd.detail = f"pool B cut off {hold:.1f}s with {len(victims)} job(s) running there" + (
                "" if busy else " (none was busy within 20s)"
            )
        rnd.t1 = time.time()

    def _in_pool(self, run: faults.Run, pool: str) -> bool:
        workers = {w for _, w in self.sup.workers(pool)}
        for part in run.parts:
            stat = faults.proc_stat(part.pid)
            if part.role == "horse" and stat is not None and stat[1] in workers:
                return True
        return False

    def first_start_after(self, since: float, wait: float) -> float | None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            starts = [r.start for r in faults.read_probe(self.probe_log).runs if r.start > since]
            if starts:
                return min(starts) - since
            time.sleep(0.1)
        return None

    def run_rounds(self) -> None:
        order: list[str] = []
        while len(order) < self.args.rounds:
            cycle = list(KINDS)
            if order:  # the first cycle runs in the listed order, so a short run covers the main kinds
                self.rng.shuffle(cycle)
            order += cycle
        time.sleep(self.args.warmup)
        for index, kind in enumerate(order[: self.args.rounds], 1):
            rnd = Round(index, kind)
            self.rounds.append(rnd)
            self.fault(rnd)
            for watch in rnd.watches:
                watch.join()
            recoveries = ", ".join(f"{w.job_id}: {fmt(w.seconds)} ({w.outcome})" for w in rnd.watches)
            log(
                f"round {index}/{self.args.rounds} {kind}: {rnd.detail}"
                + (f"; back in line: {recoveries}" if recoveries else "")
            )
            time.sleep(self.args.settle)

    def drain(self) -> float:
        self.submitter.stop()
        started = time.monotonic()
        ids = list(self.submitter.accepted)
        pending = ids
        while pending and time.monotonic() - started < self.args.drain:
            try:
                with self.direct.pipeline(transaction=False) as pipe:
                    for job_id in pending:
                        pipe.hget(f"rq:job:{job_id}", "status")
                    statuses = pipe.execute()
                pending = [j for j, s in zip(pending, statuses, strict=True) if s not in TERMINAL]
            except RedisError:
                pass
            time.sleep(1)
        return time.monotonic() - started

    def teardown(self) -> None:
        self.proxy.thaw()
        self.sup.stop_all()
        self.proxy.stop()

    # -- verdicts

    def analyse(self, drain_seconds: float, wall: float) -> int:
        accepted = list(self.submitter.accepted)
        with self.direct.pipeline(transaction=False) as pipe:
            for job_id in accepted:
                pipe.hget(f"rq:job:{job_id}", "status")
            statuses = dict(zip(accepted, pipe.execute(), strict=True))
        with self.direct.pipeline(transaction=False) as pipe:
            for job_id in self.submitter.rejected:
                pipe.exists(f"rq:job:{job_id}")
            ghosts = [j for j, e in zip(self.submitter.rejected, pipe.execute(), strict=True) if e]
        events = read_events(self.direct)
        terminal_stops: Counter[str] = Counter()
        for event in events:
            outcome = event.get("o", "")
            if event["e"] == "stop" and (
                outcome in ("finished", "canceled", "refused") or outcome.endswith(":fail")
            ):
                terminal_stops[event["job"]] += 1
        missing = [j for j, s in statuses.items() if s is None]
        stuck = Counter(s.decode() for s in statuses.values() if s is not None and s not in TERMINAL)
        ended_twice = [j for j, s in statuses.items() if s in TERMINAL and terminal_stops[j] > 1]
        ended_unrecorded = [j for j, s in statuses.items() if s in TERMINAL and terminal_stops[j] == 0]
        lost = len(missing) + sum(stuck.values()) + len(ended_twice)
        final = Counter((s or b"missing").decode() for s in statuses.values())

        probe = faults.read_probe(self.probe_log)
        overlaps = faults.overlaps(probe)
        probe_caps = faults.cap_violations(probe, CAPS, total=TOTAL)
        replayed = replay(events, total=TOTAL, caps=CAPS)
        redone = {j: n for j, n in faults.completed_twice(probe).items() if statuses.get(j) == b"finished"}

        def round_at(t: float) -> str:
            current = "warm-up"
            for rnd in self.rounds:
                if rnd.t0 and rnd.t0 <= t:
                    current = rnd.kind
            return current

        overlap_by = Counter(round_at(o.start) for o in overlaps)
        caps_by = Counter(round_at(v.at) for v in probe_caps)
        # a redone render is charged to the round in which its first completion went unrecorded
        redone_by = Counter(round_at(min(r.finish for r in probe.by_job()[j] if r.completed)) for j in redone)
        recoveries: dict[str, list[float]] = defaultdict(list)
        not_recovered: Counter[str] = Counter()
        for rnd in self.rounds:
            for watch in rnd.watches:
                if watch.seconds is not None:
                    recoveries[rnd.kind].append(watch.seconds)
                elif watch.outcome != "finished normally":
                    not_recovered[rnd.kind] += 1
        resumes = [r.resume for r in self.rounds if r.kind == "kill-redis" and r.resume is not None]
        no_resume = sum(
            1 for r in self.rounds if r.kind == "kill-redis" and r.redis_back and r.resume is None
        )
        orphans = [r.orphans_alive for r in self.rounds if r.orphans_alive is not None]

        kinds = Counter(r.kind for r in self.rounds)
        print(
            f"\nchaos: {len(self.rounds)} rounds ({', '.join(f'{k} {n}' for k, n in kinds.items())}), "
            f"{wall / 60:.1f} min, drain {drain_seconds:.0f}s"
        )
        print(
            f"  submits: {len(accepted)} accepted, {len(self.submitter.rejected)} rejected; final states "
            + ", ".join(f"{k} {n}" for k, n in sorted(final.items()))
        )
        print(
            f"  probe runs: {len(probe.runs)} ({sum(r.completed for r in probe.runs)} completed their work)"
        )
        rows: list[tuple[str, str, str, bool | None]] = []

        def row(label: str, value: str, target: str, ok: bool | None) -> None:
            rows.append((label, value, target, ok))

        row(
            "lost ids",
            f"{lost}"
            + (
                f" (missing {len(missing)}, not terminal {dict(stuck)}, ended twice {len(ended_twice)})"
                if lost
                else ""
            ),
            "0",
            lost == 0,
        )
        row("  ghost submits (rejected, yet in Redis)", str(len(ghosts)), "0", None if not ghosts else False)
        if ended_unrecorded:
            row("  terminal without a stop event", str(len(ended_unrecorded)), "-", None)
        worst = max((o.seconds for o in overlaps), default=0.0)
        row(
            "overlapping runs (probe file)",
            f"{len(overlaps)}" + (f" (longest {worst:.1f}s; {dict(overlap_by)})" if overlaps else ""),
            "0",
            not overlaps,
        )
        row(
            "cap violations (probe file)",
            f"{len(probe_caps)}" + (f" ({dict(caps_by)})" if probe_caps else ""),
            "0",
            not probe_caps,
        )
        row(
            "cap violations (farm:events replay)",
            f"{len(replayed.violations)}"
            + (f" (first: {replayed.violations[0]})" if replayed.violations else ""),
            "0",
            not replayed.violations,
        )
        row(
            "completed renders redone",
            f"{len(redone)}" + (f" ({dict(redone_by)})" if redone else ""),
            "0",
            None if not redone else False,
        )
        for kind in ("kill-worker", "stop-worker", "stop-worker+horse", "partition", "kill-horse"):
            values = recoveries.get(kind, [])
            target = f"<= {TARGET_BACK_IN_LINE:g}s" if kind == "kill-worker" else "-"
            missed = f", {not_recovered[kind]} never" if not_recovered[kind] else ""
            if values:
                ok = (
                    max(values) <= TARGET_BACK_IN_LINE and not not_recovered[kind]
                    if kind == "kill-worker"
                    else None
                )
                row(
                    f"job back in line after {kind} (p50/max)",
                    f"{pct(values, 50):.1f}/{max(values):.1f}s (n={len(values)}{missed})",
                    target,
                    ok,
                )
            elif not_recovered[kind]:
                row(
                    f"job back in line after {kind}",
                    f"never (n={not_recovered[kind]})",
                    target,
                    kind != "kill-worker" and None,
                )
        if resumes or no_resume:
            row(
                "Redis back -> next start (p50/max)",
                (f"{pct(resumes, 50):.1f}/{max(resumes):.1f}s (n={len(resumes)})" if resumes else "-")
                + (f", {no_resume} none within 30s" if no_resume else ""),
                f"<= {TARGET_RESUME:g}s",
                bool(resumes) and max(resumes) <= TARGET_RESUME and not no_resume,
            )
        if orphans:
            row(
                "pool workers alive 5s after their pool died",
                "/".join(map(str, orphans)),
                "0",
                sum(orphans) == 0,
            )
        row(
            "restarts by the supervisor",
            ", ".join(f"{k} {n}" for k, n in self.sup.restarts.items()) or "none",
            "-",
            None,
        )
        width = max(len(r[0]) for r in rows)
        value_width = min(60, max(len(r[1]) for r in rows))
        print(f"  {'invariant / figure':<{width}}  {'value':<{value_width}}  {'target':<8}  verdict")
        for label, value, target, ok in rows:
            verdict = "" if ok is None else ("ok" if ok else "FAIL")
            print(f"  {label:<{width}}  {value:<{value_width}}  {target:<8}  {verdict}")
        print(f"  evidence: {self.probe_log} and {self.workdir / 'logs'}")
        for label, value, target, ok in rows:
            record(f"chaos: {label.strip()}", value=value, target=target, ok=ok, rounds=len(self.rounds))
        return 1 if (lost or overlaps or probe_caps or replayed.violations) else 0


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.6, help="submits per second")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the first fault")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between rounds")
    parser.add_argument("--drain", type=float, default=240.0, help="seconds to wait for every job to end")
    parser.add_argument("--workdir", default=None, help="where the probe file, logs and AOF go (kept)")
    args = parser.parse_args()
    chaos = Chaos(args)
    started = time.monotonic()
    code = 2
    try:
        chaos.setup()
        chaos.run_rounds()
        log("rounds done; draining")
        drain = chaos.drain()
        chaos.teardown()
        code = chaos.analyse(drain, time.monotonic() - started)
    finally:
        with contextlib.suppress(Exception):
            chaos.teardown()
        chaos.redis.stop()
    sys.exit(code)


if __name__ == "__main__":
    main()
