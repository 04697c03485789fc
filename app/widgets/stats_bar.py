"""The stats bar: queues, running against caps, last-hour results, throughput, workers, scheduler, Redis."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from farm.live.snapshot import Snapshot
from farm.models import PRIORITY_ORDER, FarmStats, JobStatus

from ..format import duration, sparkline
from ..link import Link, LinkState

SEP = ("  │  ", "dim")


def _label(text: str) -> tuple[str, str]:
    return (f"{text} ", "bold")


def queues_line(stats: FarmStats) -> Text:
    queued = stats.counts[JobStatus.QUEUED]
    line = Text.assemble(_label("queued"))
    for p in PRIORITY_ORDER:
        line.append(f"{p.value} ", style="dim")
        line.append(str(queued.get(p, 0)), style="bold")
        if p in stats.paused:
            line.append(" (paused)", style="bold yellow")
        line.append("  ")
    scheduled = sum(stats.counts[JobStatus.SCHEDULED].values())
    if scheduled:
        line.append(f"+{scheduled} waiting to retry", style="yellow")
    return line


def running_line(stats: FarmStats) -> Text:
    caps = stats.caps
    line = Text.assemble(_label("running"), (f"{stats.running}/{caps.effective_total}", "bold"))
    for name, r in stats.renderers.items():
        if r.running or r.cap is not None:
            cap = "∞" if r.cap is None else str(r.cap)
            line.append(f"  {name} ", style="dim")
            line.append(f"{r.running}/{cap}")
    if caps.window is not None:
        base = ", ".join([f"total {caps.total}"] + [f"{n} {v}" for n, v in sorted(caps.renderers.items())])
        line.append(f"  window {caps.window.label()} in force (base caps: {base})", style="yellow")
    else:
        line.append("  (no cap window in force)", style="dim")
    if caps.processes < caps.effective_total:
        line.append_text(Text.assemble(SEP))
        line.append(f"only {caps.processes} worker processes: the real limit", style="bold yellow")
    return line


def results_line(stats: FarmStats) -> Text:
    per_min = stats.throughput_per_min
    now = per_min[-1] if per_min else 0
    return Text.assemble(
        _label("last hour"),
        (f"{stats.finished_last_hour} finished", "green"),
        "  ",
        (f"{stats.failed_last_hour} failed", "red" if stats.failed_last_hour else ""),
        SEP,
        _label("throughput"),
        (sparkline(per_min), "green"),
        (f" {now}/min now, last 30 min", "dim"),
        SEP,
        _label("avg wait"),
        duration(stats.avg_wait),
    )


def health_line(snapshot: Snapshot, link: Link) -> Text:
    stats = snapshot.stats
    if not link.up:
        # The figures below are from the last good refresh: never show them as fresh.
        seen = link.last_good.astimezone().strftime("%H:%M:%S") if link.last_good else "never"
        return Text.assemble(
            _label("workers"),
            ("unknown", "yellow"),
            SEP,
            _label("scheduler"),
            ("unknown", "yellow"),
            (f" (last seen {seen})", "dim"),
            SEP,
            _label("redis"),
            redis_text(snapshot, link),
        )
    age = stats.scheduler_heartbeat_age
    beat = "never" if age is None else f"beat {duration(age)} ago"
    scheduler = (
        (f"alive ({beat})", "green") if stats.scheduler_alive else (f"NOT RUNNING ({beat})", "bold red")
    )
    return Text.assemble(
        _label("workers"),
        (f"{stats.workers} alive", "green" if stats.workers else "bold red"),
        f", {stats.workers_busy} busy",
        SEP,
        _label("scheduler"),
        scheduler,
        SEP,
        _label("redis"),
        redis_text(snapshot, link),
    )


RESTART_SHOWN_FOR = 3600.0  # seconds a Redis restart stays in the header


def redis_text(snapshot: Snapshot | None, link: Link) -> Text:
    if link.state is LinkState.UP and snapshot is not None:
        text = Text.assemble(("connected", "green"), f" ({snapshot.redis_rtt_ms:.1f} ms round trip)")
        restarted = snapshot.redis_restarted_at
        if restarted is not None and (snapshot.at - restarted).total_seconds() < RESTART_SHOWN_FOR:
            text.append(f", restarted {restarted.astimezone():%H:%M:%S}", style="yellow")
        return text
    if link.state is LinkState.CONNECTING:
        return Text("connecting…", style="yellow")
    if link.state is LinkState.ERROR:
        return Text("connected, refresh failing", style="bold red")
    return Text("DISCONNECTED", style="bold red")


class StatsBar(Widget):
    """Three lines of farm-wide numbers, redrawn from each snapshot."""

    DEFAULT_CSS = """
    StatsBar {
        height: auto;
        min-height: 6;
        padding: 0 1;
        border: round $primary;
        border-title-color: $text-primary;
    }
    """

    snapshot: reactive[Snapshot | None] = reactive(None, layout=True)
    link: reactive[Link] = reactive(Link, layout=True)

    def render(self) -> Group:
        if self.snapshot is None:
            return Group(Text.assemble(_label("redis"), redis_text(None, self.link)), Text(), Text(), Text())
        stats = self.snapshot.stats
        return Group(
            queues_line(stats),
            running_line(stats),
            results_line(stats),
            health_line(self.snapshot, self.link),
        )
