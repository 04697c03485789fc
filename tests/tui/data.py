"""A busy farm frozen at 21:30:00 UTC (inside the 20:00-23:00 cap window): fixed ids, times and numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from farm.live.snapshot import JobRow, Snapshot
from farm.models import (
    Attempt,
    AuditEntry,
    Caps,
    ErrorKind,
    FarmStats,
    JobInfo,
    JobStatus,
    Priority,
    RendererStats,
    Window,
    WorkerInfo,
)

AT = datetime(2025, 3, 14, 21, 30, 0, tzinfo=UTC)
HIGH, MEDIUM, LOW = Priority.HIGH, Priority.MEDIUM, Priority.LOW
WINDOWS = (
    Window(start="06:00", end="09:00", multiplier=1.5),
    Window(start="20:00", end="23:00", multiplier=1.5),
)
CAPS = Caps(
    total=10,
    renderers={"manim": 4},
    effective_total=15,
    effective_renderers={"manim": 6},
    window=WINDOWS[1],
    windows=WINDOWS,
    processes=4,
)


def ago(seconds: float) -> datetime:
    return AT - timedelta(seconds=seconds)


def job_id(n: int) -> str:
    return f"{n:02d}c0ffee{n:02d}" + "ab" * 11


def running(n: int, name: str, renderer: str, priority: Priority, progress: float, stage: str, worker: str):
    return JobRow(
        id=job_id(n),
        name=name,
        renderer=renderer,
        priority=priority,
        status=JobStatus.RUNNING,
        progress=progress,
        stage=stage,
        attempts=1,
        max_retries=3,
        worker=worker,
        enqueued_at=ago(100 + n * 10),
        started_at=ago(40 + n * 5),
        eta=AT + timedelta(seconds=20 + n * 7),
    )


def queued(n: int, name: str, renderer: str, priority: Priority, position: int, reason: str, start: float):
    return JobRow(
        id=job_id(n),
        name=name,
        renderer=renderer,
        priority=priority,
        status=JobStatus.QUEUED,
        progress=0,
        stage="",
        attempts=0,
        max_retries=3,
        enqueued_at=ago(30 + n * 3),
        position=position,
        wait_reason=reason,
        eta=AT + timedelta(seconds=start),
    )


def ended(n: int, name: str, status: JobStatus, minutes: float, kind: ErrorKind | None = None, error=None):
    return JobRow(
        id=job_id(n),
        name=name,
        renderer="demo",
        priority=MEDIUM if n % 2 else LOW,
        status=status,
        progress=100 if status is JobStatus.FINISHED else 40,
        stage="done" if status is JobStatus.FINISHED else "stage 2/5: layout",
        attempts=1,
        max_retries=2,
        worker="render-01.4242.2",
        error_kind=kind,
        error=error,
        enqueued_at=ago(minutes * 60 + 95),
        started_at=ago(minutes * 60 + 20),
        ended_at=ago(minutes * 60),
    )


ROWS = (
    running(1, "doubt-417", "manim", HIGH, 62.0, "animate 31/50", "render-01.4242.1"),
    running(2, "intro-3", "manim", MEDIUM, 18.5, "layout", "render-01.4242.2"),
    running(3, "daily-ca-12", "demo", LOW, 80.0, "stage 4/5: mux", "render-01.4242.3"),
    running(4, "teaser-7", "demo", MEDIUM, 5.0, "stage 1/3: prepare", "render-01.4242.4"),
    queued(5, "doubt-418", "manim", HIGH, 1, "all 4 workers busy", 27),
    queued(6, "doubt-419", "demo", HIGH, 2, "all 4 workers busy", 34),
    queued(7, "topic-short-55", "manim", MEDIUM, 3, "all 4 workers busy", 41),
    queued(8, "recap-9", "demo", MEDIUM, 4, "all 4 workers busy", 48),
    queued(9, "outro-2", "demo", MEDIUM, 5, "all 4 workers busy", 62),
    queued(10, "thumbs-31", "demo", LOW, 6, "all 4 workers busy", 75),
    JobRow(
        id=job_id(11),
        name="lesson-3",
        renderer="http",
        priority=MEDIUM,
        status=JobStatus.SCHEDULED,
        progress=0,
        stage="",
        attempts=1,
        max_retries=3,
        error_kind=ErrorKind.API_ERROR,
        error="orchestrator answered 503",
        enqueued_at=ago(400),
        started_at=ago(330),
        eta=AT + timedelta(minutes=4),
        wait_reason="retry at 21:34:00",
    ),
    ended(12, "intro-2", JobStatus.FINISHED, 1),
    ended(
        13,
        "outro-1",
        JobStatus.FAILED,
        2,
        ErrorKind.INVALID_INPUT,
        "scene 'Outro' not found in scenes/outro.py",
    ),
    ended(14, "recap-8", JobStatus.FINISHED, 3),
    ended(15, "teaser-6", JobStatus.CANCELED, 4, ErrorKind.CANCELED, "canceled by tui:ana@render-01"),
    ended(16, "daily-ca-11", JobStatus.FINISHED, 6),
    ended(17, "thumbs-30", JobStatus.FAILED, 9, ErrorKind.TIMEOUT, "timed out after 600s"),
)


THROUGHPUT = (0, 1, 2, 2, 3, 5, 4, 3, 4, 6, 5, 4, 2, 3, 4, 5, 6, 7, 5, 4) + (3, 4, 5, 6, 4, 3, 5, 6, 7, 5)


def counts() -> dict[JobStatus, dict[Priority, int]]:
    table = {status: {p: 0 for p in Priority} for status in JobStatus}
    table[JobStatus.QUEUED] = {HIGH: 5, MEDIUM: 40, LOW: 12}
    table[JobStatus.RUNNING] = {HIGH: 1, MEDIUM: 2, LOW: 1}
    table[JobStatus.SCHEDULED] = {HIGH: 0, MEDIUM: 1, LOW: 0}
    table[JobStatus.FINISHED] = {HIGH: 30, MEDIUM: 70, LOW: 28}
    table[JobStatus.FAILED] = {HIGH: 0, MEDIUM: 2, LOW: 1}
    table[JobStatus.CANCELED] = {HIGH: 0, MEDIUM: 1, LOW: 0}
    return table


STATS = FarmStats(
    counts=counts(),
    running=4,
    running_by_renderer={"manim": 2, "demo": 2},
    caps=CAPS,
    workers=4,
    workers_busy=4,
    scheduler_alive=True,
    scheduler_heartbeat_age=1.2,
    finished_last_hour=128,
    failed_last_hour=3,
    throughput_per_min=THROUGHPUT,
    avg_wait=95.0,
    renderers={
        "demo": RendererStats(running=2, cap=None, avg_wait=60.0, avg_run=8.0, finished_last_hour=90),
        "http": RendererStats(running=0, cap=None, failed_last_hour=1),
        "manim": RendererStats(running=2, cap=6, avg_wait=150.0, avg_run=70.0, finished_last_hour=38),
    },
    paused=(LOW,),
)

AUDIT = (
    AuditEntry(at=ago(40), who="tui:ana@render-01", action="cancel", target=job_id(15), detail="was running"),
    AuditEntry(at=ago(300), who="tui:ana@render-01", action="pause", target="low"),
    AuditEntry(at=ago(900), who="raj@laptop", action="caps", detail="total=10"),
    AuditEntry(at=ago(1800), who="tui:ana@render-01", action="retry", target=job_id(17), detail="was failed"),
)


def busy_snapshot() -> Snapshot:
    return Snapshot(
        at=AT,
        stats=STATS,
        rows=ROWS,
        alerts=("queue depth 57 > 50",),
        audit=AUDIT,
        redis_rtt_ms=0.8,
        workers_alive=tuple(f"render-01.4242.{n}" for n in range(1, 5)),
    )


DETAIL = JobInfo(
    id=job_id(1),
    name="doubt-417",
    renderer="manim",
    params={"script": "scenes/doubt_417.py", "scene": "Doubt417", "quality": "medium"},
    priority=HIGH,
    job_type="doubt",
    status=JobStatus.RUNNING,
    progress=62.0,
    stage="animate 31/50",
    attempts=2,
    max_retries=3,
    timeout=600,
    history=(
        Attempt(
            number=1,
            worker="render-01.4242.3",
            started_at=ago(420),
            ended_at=ago(380),
            error_kind=ErrorKind.WORKER_LOST,
            error="worker render-01.4242.3 stopped heartbeating",
        ),
    ),
    enqueued_at=ago(500),
    started_at=ago(60),
    worker="render-01.4242.1",
    eta=AT + timedelta(seconds=37),
)

DETAIL_LOG = [
    "Manim Community v0.18.1",
    "scene Doubt417: 50 animations",
    "Animation 0: Write(Text('Why is the sky blue?'))",
    "Animation 12: FadeIn(Arrow)",
    "Animation 24: Transform(Circle, Square)",
    "Animation 31: Create(NumberPlane)",
]

WORKERS = [
    WorkerInfo(
        name=f"render-01.4242.{n}",
        host="render-01",
        pid=4242 + n,
        state="busy",
        current_job=job_id(n),
        last_heartbeat=ago(1),
    )
    for n in range(1, 5)
]
