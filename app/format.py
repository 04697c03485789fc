"""Pure text helpers shared by the widgets and screens: durations, bars, sparklines, short ids."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from farm.models import JobStatus, Priority

SPARK = "▁▂▃▄▅▆▇█"
SHORT_ID = 8

STATUS_STYLE: dict[JobStatus, str] = {
    JobStatus.QUEUED: "cyan",
    JobStatus.SCHEDULED: "yellow",
    JobStatus.RUNNING: "bold green",
    JobStatus.FINISHED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELED: "magenta",
}

PRIORITY_STYLE: dict[Priority, str] = {
    Priority.HIGH: "bold red",
    Priority.MEDIUM: "",
    Priority.LOW: "dim",
}


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def short_id(job_id: str | None) -> str:
    return "-" if not job_id else job_id[:SHORT_ID]


def bar(progress: float, width: int = 10) -> Text:
    """A progress bar with its percentage, e.g. ``██████░░░░  60%``."""
    value = max(0.0, min(progress, 100.0))
    filled = round(width * value / 100)
    text = Text(no_wrap=True)
    text.append("█" * filled, style="green")
    text.append("░" * (width - filled), style="dim")
    text.append(f" {value:3.0f}%")
    return text


def sparkline(values: tuple[int, ...] | list[int]) -> str:
    """One block character per value, scaled to the largest (all-zero shows the lowest block)."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return SPARK[0] * len(values)
    last = len(SPARK) - 1
    return "".join(SPARK[min(last, round(last * v / top))] for v in values)


def status_text(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


def priority_text(priority: Priority) -> Text:
    return Text(priority.value, style=PRIORITY_STYLE[priority])


def first_line(text: str | None, limit: int = 200) -> str:
    if not text:
        return ""
    return text.strip().splitlines()[0][:limit] if text.strip() else ""
