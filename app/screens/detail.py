"""The job detail screen (``enter``): everything about one job and its live log tail.

A thread worker reads the job (``Farm.get``) and the last log lines (``Farm.log_tail``) every
refresh interval while the screen is open, arming the next read only after this one ends.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from farm.errors import FarmError, JobNotFoundError
from farm.models import JobInfo, JobStatus

from ..clock import Clock
from ..format import bar, duration, priority_text, seconds_between, status_text
from ..source import Source

LOG_LINES = 200


def facts(info: JobInfo, clock: Clock) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    progress = 100.0 if info.status is JobStatus.FINISHED else info.progress
    table.add_row("id", info.id)
    table.add_row("name", info.name or "-")
    table.add_row(
        "status", Text.assemble(status_text(info.status), "  ", bar(progress, 20), f"  {info.stage}")
    )
    if info.cancel_requested and not info.status.terminal:
        table.add_row("", Text("cancel requested", style="bold magenta"))
    job_type = f"  (job type {info.job_type})" if info.job_type else ""
    table.add_row("renderer", info.renderer)
    table.add_row("priority", Text.assemble(priority_text(info.priority), job_type))
    table.add_row("attempts", f"{info.attempts} of {info.max_retries + 1} allowed")
    table.add_row("timeout", duration(info.timeout))
    table.add_row("worker", info.worker or "-")
    table.add_row("enqueued", clock.hms(info.enqueued_at))
    table.add_row("started", clock.hms(info.started_at))
    if info.ended_at:
        ran = duration(seconds_between(info.started_at, info.ended_at))
        table.add_row("ended", f"{clock.hms(info.ended_at)}  (ran {ran})")
    if info.position is not None:
        table.add_row("in line", f"#{info.position}")
    if info.wait_reason:
        table.add_row("waiting", info.wait_reason)
    if info.after:
        table.add_row("after", "  ".join(job_id[:8] for job_id in info.after))
    if info.cached_from:
        table.add_row(
            "cached", Text(f"outputs reused from job {info.cached_from} (render cache)", style="green")
        )
    if info.eta is not None:
        label = "starts ~" if info.status is JobStatus.QUEUED else "eta"
        table.add_row(label, clock.hms(info.eta))
    return table


def attempts_table(info: JobInfo, clock: Clock) -> RenderableType:
    if not info.history:
        return Text("no attempt has ended yet", style="dim")
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    for column in ("#", "worker", "started", "ended", "took", "outcome"):
        table.add_column(column, no_wrap=column != "outcome")
    for attempt in info.history:
        if attempt.error_kind is None:
            outcome = Text("ok", style="green")
        else:
            outcome = Text.assemble(
                (attempt.error_kind.value, "bold red"), f": {attempt.error or ''}".rstrip()
            )
        table.add_row(
            str(attempt.number),
            attempt.worker or "-",
            clock.hms(attempt.started_at),
            clock.hms(attempt.ended_at),
            duration(seconds_between(attempt.started_at, attempt.ended_at)),
            outcome,
        )
    return table


def json_block(data: Any) -> RenderableType:
    if not data:
        return Text("{}", style="dim")
    return JSON(json.dumps(data, default=str, sort_keys=True))


def heading(text: str) -> Text:
    return Text(f"\n{text}", style="bold underline")


def detail_body(info: JobInfo, clock: Clock, dependents: list[str] | None = None) -> Group:
    table = facts(info, clock)
    if dependents:
        table.add_row("dependents", "  ".join(job_id[:8] for job_id in dependents))
    parts: list[RenderableType] = [table, heading("params"), json_block(info.params)]
    if info.error_kind or info.error:
        kind = info.error_kind.value if info.error_kind else "error"
        parts += [heading("error"), Text.assemble((kind, "bold red"), f": {info.error or ''}")]
    parts += [heading("attempts"), attempts_table(info, clock)]
    if info.result is not None:
        parts += [heading("result"), json_block(info.result)]
    return Group(*parts)


class DetailScreen(Screen[None]):
    CSS_PATH = "detail.tcss"

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    info: reactive[JobInfo | None] = reactive(None, init=False)
    problem: reactive[str] = reactive("", init=False)

    class Loaded(Message):
        def __init__(self, info: JobInfo, lines: list[str], dependents: list[str]) -> None:
            super().__init__()
            self.info = info
            self.lines = lines
            self.dependents = dependents

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, source: Source, clock: Clock, job_id: str, interval: float) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.job_id = job_id
        self.interval = interval
        self.lines: list[str] = []
        self.dependents: list[str] = []

    def compose(self) -> ComposeResult:
        with Horizontal():
            with VerticalScroll(id="about"):
                yield Static(Text(f"loading job {self.job_id}…", style="dim"), id="body")
            yield Log(id="log", auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#about").border_title = f"job {self.job_id}"
        self.query_one("#log").border_title = "log tail (live)"
        self._fetch(self.source, self.job_id)

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _fetch(self, source: Source, job_id: str) -> None:
        try:
            info = source.job(job_id)
            lines = source.log_tail(job_id, LOG_LINES)
            dependents = source.dependents(job_id)
        except JobNotFoundError:
            self.post_message(self.Failed("this job no longer exists (retention expired?)"))
        except FarmError as exc:
            self.post_message(self.Failed(f"disconnected — retrying: {exc}"))
        except Exception as exc:  # show it, keep refreshing
            self.post_message(self.Failed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.Loaded(info, lines, dependents))

    def _arm_next(self) -> None:
        self.set_timer(self.interval, lambda: self._fetch(self.source, self.job_id))

    def on_detail_screen_loaded(self, message: DetailScreen.Loaded) -> None:
        self.dependents = message.dependents
        self.info = message.info
        self.problem = ""
        if message.lines != self.lines:
            self.lines = message.lines
            log = self.query_one("#log", Log)
            log.clear()
            log.write_lines(self.lines or ["(nothing logged yet)"])
        self._arm_next()

    def on_detail_screen_failed(self, message: DetailScreen.Failed) -> None:
        self.problem = message.error
        self._arm_next()

    def watch_info(self) -> None:
        self._render_body()

    def watch_problem(self) -> None:
        self._render_body()

    def _render_body(self) -> None:
        parts: list[RenderableType] = []
        if self.problem:
            parts.append(Text(f"● {self.problem}\n", style="bold red"))
        if self.info is not None:
            parts.append(detail_body(self.info, self.clock, self.dependents))
        self.query_one("#body", Static).update(Group(*parts))
        sub = f"{self.info.status.value}, {self.info.name or self.info.renderer}" if self.info else ""
        self.query_one("#about").border_subtitle = sub
