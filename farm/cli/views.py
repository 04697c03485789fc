"""Plain-text views for the CLI: job tables, job detail and its log tail, workers, the audit log,
caps, stats, the --wait progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..models import AuditEntry, CacheEntry, Caps, FarmStats, JobInfo, JobStatus, PoolInfo, WorkerInfo
from ..terminal import printable

BAR_WIDTH = 30


def _ago(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return duration(abs(seconds)) + ("" if seconds >= 0 else " from now")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _clock(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone().strftime("%H:%M:%S")


def note(info: JobInfo) -> str:
    if info.status is JobStatus.RUNNING:
        return f"{info.stage} (eta {_clock(info.eta)})" if info.eta else info.stage
    if info.status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
        return info.wait_reason or ""
    if info.status in (JobStatus.FAILED, JobStatus.CANCELED):
        first = (info.error or "").splitlines()[0] if info.error else ""
        return f"{info.error_kind.value if info.error_kind else ''}: {first}"[:60]
    return ""


def job_table(infos: list[JobInfo]) -> str:
    if not infos:
        return "no jobs"
    rows = [("ID", "NAME", "RENDERER", "PRIO", "STATUS", "PROG", "TRY", "AGE", "NOTE")]
    for i in infos:
        rows.append(
            (
                i.id[:12],
                (i.name or "-")[:24],
                i.renderer,
                i.priority.value,
                i.status.value,
                f"{i.progress:.0f}%",
                str(i.attempts),
                _ago(i.enqueued_at),
                note(i),
            )
        )
    return _table(rows)


def job_detail(info: JobInfo, dependents: Sequence[str] = ()) -> str:
    lines = [
        f"id          {info.id}",
        f"name        {info.name or '-'}",
        f"renderer    {info.renderer}",
        f"priority    {info.priority.value}" + (f" (job type {info.job_type})" if info.job_type else ""),
        f"status      {info.status.value}" + (f"  {info.progress:.0f}% {info.stage}" if info.stage else ""),
        f"attempts    {info.attempts} (max retries {info.max_retries})",
        f"enqueued    {_clock(info.enqueued_at)} ({_ago(info.enqueued_at)} ago)",
        f"started     {_clock(info.started_at)}",
        f"ended       {_clock(info.ended_at)}",
        f"worker      {info.worker or '-'}",
    ]
    if info.position is not None:
        lines.append(f"position    {info.position}")
    if info.wait_reason:
        lines.append(f"waiting     {info.wait_reason}")
    if info.eta:
        lines.append(f"eta         {_clock(info.eta)}")
    if info.cached_from:
        lines.append(f"cached from {info.cached_from} (render cache)")
    if info.after:
        lines.append(f"after       {', '.join(info.after)}")
    if dependents:
        lines.append(f"dependents  {', '.join(dependents)}")
    lines.append(f"params      {info.params}")
    if info.error_kind:
        lines.append(f"error       {info.error_kind.value}: {info.error}")
    if info.result is not None:
        lines.append(f"result      {info.result}")
    for attempt in info.history:
        kind = attempt.error_kind.value if attempt.error_kind else "ok"
        lines.append(
            f"  attempt {attempt.number}: {kind} on {attempt.worker or '-'} at {_clock(attempt.ended_at)}"
            + (f" - {(attempt.error or '').splitlines()[0]}" if attempt.error else "")
        )
    return printable("\n".join(lines), keep_newlines=True)


def log_section(lines: list[str]) -> str:
    """The job's log tail, under its detail."""
    if not lines:
        return "log         (nothing logged yet)"
    body = "\n".join(f"  {line}" for line in lines)
    return printable(
        f"log         last {len(lines)} of the lines kept (farm logs ID for more)\n{body}", keep_newlines=True
    )


def _table(table: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, the last one unpadded; every cell escaped for the terminal."""
    rows = [[printable(cell) for cell in row] for row in table]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    ).rstrip()


def workers_table(workers: list[WorkerInfo]) -> str:
    if not workers:
        return "no workers"
    rows = [("NAME", "HOST", "PID", "STATE", "JOB", "HEARTBEAT")]
    for w in workers:
        rows.append(
            (
                w.name,
                w.host or "-",
                str(w.pid) if w.pid is not None else "-",
                w.state,
                (w.current_job or "-")[:12],
                f"{_ago(w.last_heartbeat)} ago" if w.last_heartbeat else "-",
            )
        )
    return _table(rows)


def cache_table(found: list[CacheEntry]) -> str:
    if not found:
        return "the render cache is empty"
    rows = [("KEY", "JOB", "RENDERER", "FILES", "SIZE", "AGE", "HITS")]
    for e in found:
        rows.append(
            (
                e.key[:12],
                e.job_id[:12],
                e.renderer,
                str(e.files),
                _size(e.bytes),
                f"{_ago(e.created_at)}" if e.created_at else "-",
                str(e.hits),
            )
        )
    return printable(_table(rows))


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def pools_table(pools: list[PoolInfo]) -> str:
    """Each pool's processes now and its target: ``2 -> 4`` while it starts workers for waiting
    jobs, ``4 -> 1`` while idle ones above the minimum wait out ``worker.idle_exit``."""
    rows = [("POOL", "HOST", "SIZE", "PROCESSES", "BUSY", "IDLE", "STARTING", "CAN START", "REPORTED")]
    for p in pools:
        rows.append(
            (
                p.name,
                p.host or "-",
                f"{p.minimum}:{p.maximum}" if p.autoscaling else f"{p.maximum} (fixed)",
                str(p.current) if p.target == p.current else f"{p.current} -> {p.target}",
                str(p.busy),
                str(p.idle),
                str(p.starting),
                str(p.eligible),
                f"{_ago(p.at)} ago" if p.at else "-",
            )
        )
    return _table(rows)


def audit_table(entries: list[AuditEntry]) -> str:
    if not entries:
        return "no operator actions recorded"
    rows = [("WHEN", "WHO", "ACTION", "TARGET", "DETAIL")]
    for e in entries:
        rows.append(
            (
                e.at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                e.who,
                e.action,
                e.target or "-",
                e.detail or "",
            )
        )
    return _table(rows)


def caps_text(caps: Caps) -> str:
    return printable(_caps_text(caps), keep_newlines=True)


def _caps_text(caps: Caps) -> str:
    window = f"window {caps.window.label()} in force" if caps.window else "no window in force"
    lines = [f"total       {caps.total} (effective {caps.effective_total}; {window})"]
    for name, cap in sorted(caps.renderers.items()):
        lines.append(f"{name:<11} {cap} (effective {caps.effective_renderers.get(name, cap)})")
    if caps.processes and caps.effective_total > caps.processes:
        lines.append(
            f"note        only {caps.processes} worker processes (alive, or pools may start): the real limit"
        )
    lines.append("windows     " + (", ".join(w.label() for w in caps.windows) or "none"))
    return "\n".join(lines)


def stats_text(stats: FarmStats) -> str:
    return printable(_stats_text(stats), keep_newlines=True)


def _stats_text(stats: FarmStats) -> str:
    lines = ["             " + "  ".join(f"{p.value:>6}" for p in next(iter(stats.counts.values())))]
    for status, row in stats.counts.items():
        lines.append(f"{status.value:<12} " + "  ".join(f"{n:>6}" for n in row.values()))
    lines.append(
        f"running      {stats.running}/{stats.caps.effective_total} "
        + " ".join(
            f"{r}={s.running}/{s.cap if s.cap is not None else '-'}"
            for r, s in stats.renderers.items()
            if s.running or s.cap is not None
        )
    )
    lines.append(
        f"workers      {stats.workers} alive, {stats.workers_busy} busy; scheduler "
        + ("alive" if stats.scheduler_alive else "NOT RUNNING")
    )
    lines.append(
        f"last hour    {stats.finished_last_hour} finished, {stats.failed_last_hour} failed, "
        f"avg wait {duration(stats.avg_wait)}"
    )
    if stats.paused:
        lines.append("paused       " + ", ".join(p.value for p in stats.paused))
    return "\n".join(lines)


def bar(progress: float) -> str:
    filled = int(BAR_WIDTH * max(0.0, min(progress, 100.0)) / 100)
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"


def follow(farm: Any, job_id: str, out: Any = None) -> JobInfo:
    """Show a job's progress until it ends; returns its final JobInfo."""
    out = out or sys.stderr
    tty = out.isatty()
    last = ""
    while True:
        info: JobInfo = farm.get(job_id)
        detail = info.stage if info.status is JobStatus.RUNNING else (info.wait_reason or info.status.value)
        line = printable(f"{bar(info.progress)} {info.progress:5.1f}% {info.status.value:<9} {detail}")[:100]
        if line != last:
            out.write(("\r" + line.ljust(100)) if tty else line + "\n")
            out.flush()
            last = line
        if info.status.terminal:
            if tty:
                out.write("\n")
            if info.status is not JobStatus.FINISHED:
                kind = info.error_kind.value if info.error_kind else ""
                out.write(printable(f"{info.status.value}: {kind} {info.error or ''}") + "\n")
            return info
        time.sleep(0.25)


def new_lines(seen: list[str], now: list[str]) -> list[str]:
    """The lines of ``now`` (a capped log tail) that were not in ``seen`` (the previous read).
    Exact while the tail is below its cap; at the cap the old lines shift out, so the longest end
    of ``seen`` that starts ``now`` marks where the new ones begin (identical repeated lines may
    then be under-counted, never printed twice)."""
    if len(now) >= len(seen) and now[: len(seen)] == seen:
        return now[len(seen) :]
    for overlap in range(min(len(seen), len(now)), 0, -1):
        if seen[-overlap:] == now[:overlap]:
            return now[overlap:]
    return now


def follow_log(farm: Any, job_id: str, first: int, poll: float = 0.5) -> JobInfo:
    """Print the last ``first`` log lines, then new ones as they come, until the job ends; the
    final status goes to stderr. Returns the final JobInfo."""
    from ..worker.rendering import LOG_TAIL_LINES

    seen: list[str] | None = None
    while True:
        info: JobInfo = farm.get(job_id)  # before the lines: a run's last lines land with its end
        tail = farm.log_tail(job_id, LOG_TAIL_LINES)
        fresh = tail[-first:] if seen is None else new_lines(seen, tail)
        for line in fresh:
            sys.stdout.write(printable(line) + "\n")
        sys.stdout.flush()
        seen = tail
        if info.status.terminal:
            ending = info.status.value
            if info.status is not JobStatus.FINISHED:
                ending += f": {info.error_kind.value if info.error_kind else ''} {info.error or ''}"
            sys.stderr.write(printable(f"{job_id} {ending}".rstrip()) + "\n")
            return info
        time.sleep(poll)
