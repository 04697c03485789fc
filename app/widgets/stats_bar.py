"""The stats bar: queues, running against caps, last-hour results, throughput, workers, scheduler, Redis.

Four lines, each built of phrases with shorter forms (``app.fit``): on a narrow terminal the less
important phrases shorten or go, so no line ever wraps mid-phrase.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from farm.live.snapshot import Snapshot
from farm.models import PRIORITY_ORDER, FarmStats, JobStatus

from ..clock import Clock
from ..fit import Part, fit_line
from ..format import duration, sparkline
from ..link import Link, LinkState

SEP = "  │  "
SHORT_SPARK = 10  # minutes of throughput shown when the full 30 do not fit


def _t(*pieces: str | tuple[str, str]) -> Text:
    return Text.assemble(*pieces)


def _label(text: str) -> tuple[str, str]:
    return (f"{text} ", "bold")


def _sep() -> tuple[str, str]:
    return (SEP, "dim")


def queues_parts(stats: FarmStats) -> list[Part]:
    queued = stats.counts[JobStatus.QUEUED]
    parts = [Part.of(0, _t(_label("queued")))]
    for index, p in enumerate(PRIORITY_ORDER):
        paused = p in stats.paused
        gap = "" if index == 0 else "  "
        count = str(queued.get(p, 0))
        full = _t(
            (f"{p.value} ", "dim"), (count, "bold"), *([(" (paused)", "bold yellow")] if paused else [])
        )
        short = _t((f"{p.value[0]} ", "dim"), (count, "bold"), *([(" ‖", "bold yellow")] if paused else []))
        parts.append(Part.of(0, _t(gap) + full, _t(gap[:1]) + short))
    scheduled = sum(stats.counts[JobStatus.SCHEDULED].values())
    if scheduled:
        parts.append(
            Part.of(
                2,
                _t((f"  +{scheduled} waiting to retry", "yellow")),
                _t((f"  +{scheduled} retry", "yellow")),
                "",
            )
        )
    return parts


def running_parts(stats: FarmStats) -> list[Part]:
    caps = stats.caps
    parts = [Part.of(0, _t(_label("running"), (f"{stats.running}/{caps.effective_total}", "bold")))]
    for name, r in stats.renderers.items():
        if r.running or r.cap is not None:
            cap = "∞" if r.cap is None else str(r.cap)
            parts.append(Part.of(3, _t((f"  {name} ", "dim"), f"{r.running}/{cap}"), ""))
    if caps.processes < caps.effective_total:
        parts.append(
            Part.of(
                2,
                _t(_sep(), (f"only {caps.processes} worker processes: the real limit", "bold yellow")),
                _t(_sep(), (f"{caps.processes} processes: the real limit", "bold yellow")),
                _t(("  ", ""), (f"≤{caps.processes} procs", "bold yellow")),
            )
        )
    if caps.window is not None:
        base = ", ".join([f"total {caps.total}"] + [f"{n} {v}" for n, v in sorted(caps.renderers.items())])
        label = caps.window.label()
        parts.append(
            Part.of(
                4,
                _t((f"  window {label} in force (base caps: {base})", "yellow")),
                _t((f"  window {label} in force", "yellow")),
                _t((f"  window x{caps.window.multiplier:g}", "yellow")),
            )
        )
    else:
        parts.append(Part.of(5, _t(("  (no cap window in force)", "dim")), ""))
    return parts


def results_parts(stats: FarmStats) -> list[Part]:
    per_min = stats.throughput_per_min
    now = per_min[-1] if per_min else 0
    failed_style = "red" if stats.failed_last_hour else ""
    return [
        Part.of(
            0,
            _t(
                _label("last hour"),
                (f"{stats.finished_last_hour} finished", "green"),
                "  ",
                (f"{stats.failed_last_hour} failed", failed_style),
            ),
            _t(
                _label("1h"),
                (f"{stats.finished_last_hour} ok", "green"),
                " ",
                (f"{stats.failed_last_hour} failed", failed_style),
            ),
        ),
        Part.of(
            2,
            _t(
                _sep(),
                _label("throughput"),
                (sparkline(per_min), "green"),
                (f" {now}/min now, last 30 min", "dim"),
            ),
            _t(_sep(), _label("throughput"), (sparkline(per_min), "green"), (f" {now}/min", "dim")),
            _t(_sep(), (sparkline(per_min[-SHORT_SPARK:]), "green"), (f" {now}/min", "dim")),
            _t(_sep(), (f"{now}/min", "dim")),
        ),
        Part.of(
            1,
            _t(_sep(), _label("avg wait"), duration(stats.avg_wait)),
            _t(_sep(), ("wait ", "bold"), duration(stats.avg_wait)),
        ),
    ]


def health_parts(snapshot: Snapshot, link: Link, clock: Clock) -> list[Part]:
    stats = snapshot.stats
    redis = redis_forms(snapshot, link, clock)
    redis_part = Part(tuple(_t(_sep(), _label("redis")) + form for form in redis), 2)
    if not link.up:
        # The figures below are from the last good refresh: never show them as fresh.
        seen = clock.hms(link.last_good) if link.last_good else "never"
        return [
            Part.of(1, _t(_label("workers"), ("unknown", "yellow"))),
            Part.of(
                2,
                _t(_sep(), _label("scheduler"), ("unknown", "yellow"), (f" (last seen {seen})", "dim")),
                _t(_sep(), _label("scheduler"), ("unknown", "yellow")),
            ),
            redis_part,
        ]
    age = stats.scheduler_heartbeat_age
    beat = "never" if age is None else f"beat {duration(age)} ago"
    alive = stats.scheduler_alive
    style = "green" if alive else "bold red"
    state = "alive" if alive else "NOT RUNNING"
    return [
        Part.of(
            0,
            _t(
                _label("workers"),
                (f"{stats.workers} alive", "green" if stats.workers else "bold red"),
                f", {stats.workers_busy} busy",
            ),
            _t(
                _label("workers"),
                (f"{stats.workers}", "green" if stats.workers else "bold red"),
                f"/{stats.workers_busy} busy",
            ),
        ),
        *pool_parts(snapshot),
        Part.of(
            1,
            _t(_sep(), _label("scheduler"), (f"{state} ({beat})", style)),
            _t(_sep(), _label("scheduler"), (state, style)),
        ),
        redis_part,
    ]


def pool_parts(snapshot: Snapshot) -> list[Part]:
    """The worker pools' processes now and the number they are heading for, summed over pools;
    shown while any pool autoscales (``--workers MIN:MAX``) or is on its way to a new size."""
    pools = snapshot.pools
    if not any(p.autoscaling or p.current != p.target for p in pools):
        return []
    now, target = sum(p.current for p in pools), sum(p.target for p in pools)
    low, high = sum(p.minimum for p in pools), sum(p.maximum for p in pools)
    count = f"{now} → {target}" if now != target else str(now)
    style = "bold yellow" if now != target else ""
    return [
        Part.of(
            2,
            _t(("  pool ", "dim"), (count, style), (f" of {low}:{high}", "dim")),
            _t(("  pool ", "dim"), (count, style)),
            "",
        )
    ]


RESTART_SHOWN_FOR = 3600.0  # seconds a Redis restart stays in the header


def redis_forms(snapshot: Snapshot | None, link: Link, clock: Clock) -> tuple[Text, ...]:
    """What the header says about Redis, fullest first."""
    if link.state is LinkState.UP and snapshot is not None:
        rtt = f"{snapshot.redis_rtt_ms:.1f} ms"
        restarted = snapshot.redis_restarted_at
        note = Text()
        if restarted is not None and (snapshot.at - restarted).total_seconds() < RESTART_SHOWN_FOR:
            note = Text(f", restarted {clock.hms(restarted)}", style="yellow")
        return (
            _t(("connected", "green"), f" ({rtt} round trip)") + note,
            _t(("connected", "green"), f" {rtt}") + note,
            _t(("connected", "green")) + note,
        )
    if link.state is LinkState.CONNECTING:
        return (Text("connecting…", style="yellow"),)
    if link.state is LinkState.ERROR:
        return (
            Text("connected, refresh failing", style="bold red"),
            Text("refresh failing", style="bold red"),
        )
    return (Text("DISCONNECTED", style="bold red"),)


def redis_text(snapshot: Snapshot | None, link: Link, clock: Clock | None = None) -> Text:
    return redis_forms(snapshot, link, clock or Clock())[0]


class StatsBar(Widget):
    """Four lines of farm-wide numbers, redrawn from each snapshot, fitted to the width."""

    DEFAULT_CSS = """
    StatsBar {
        height: 6;
        padding: 0 1;
        border: round $primary;
        border-title-color: $text-primary;
    }
    """

    snapshot: reactive[Snapshot | None] = reactive(None)
    link: reactive[Link] = reactive(Link)

    def __init__(self, clock: Clock, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock

    def render(self) -> Group:
        width = self.size.width
        if self.snapshot is None:
            return Group(
                fit_line(
                    [Part(tuple(_t(_label("redis")) + f for f in redis_forms(None, self.link, self.clock)))],
                    width,
                )
            )
        stats = self.snapshot.stats
        return Group(
            fit_line(queues_parts(stats), width),
            fit_line(running_parts(stats), width),
            fit_line(results_parts(stats), width),
            fit_line(health_parts(self.snapshot, self.link, self.clock), width),
        )
