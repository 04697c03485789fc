"""The job table: one row per job of the snapshot, in line order, updated in place by job id.

Rows are never cleared and rebuilt on a refresh: each one removes the rows that left, adds the
new ones, rewrites only the cells that changed, then re-sorts to the snapshot's order.

Where the cursor goes on a refresh (the operator's place is never taken away):
- it stays on its job while that job moves around (a higher-priority job jumps ahead of it);
- when its job ends (finished, failed, canceled: it drops to the ended rows, out of sight), it
  stays where it was, on the row that took that place, unless follow mode (``F``) is on;
- on the first row it stays on the first row (after ``Home``, the top stays the top).
A refresh only scrolls when the cursor had to follow its job; the running jobs at the top are
pinned (fixed rows), so they stay in view however far down the operator scrolls.

Which columns show depends on the width (``layout``): the wait reason / ETA comes before the
worker, the submitter last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from farm.live.snapshot import JobRow, Snapshot
from farm.models import JobStatus

from ..format import bar, duration, first_line, priority_text, seconds_between, status_text

PADDING = 2  # DataTable's cell padding, both sides
SCROLLBAR = 1  # the table's vertical scrollbar (see DEFAULT_CSS)
NOTE_MIN = 28
PIN_SHARE = 2  # at most 1/PIN_SHARE of the rows in view are pinned running jobs


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    narrow: int  # its width on a narrow terminal


# Display order. The note (ETA or wait reason) takes the width the others leave.
COLUMNS: tuple[Column, ...] = (
    Column("id", "id", 8, 8),
    Column("name", "name", 16, 12),
    Column("renderer", "renderer", 11, 11),
    Column("priority", "priority", 8, 8),
    Column("status", "status", 9, 9),
    Column("progress", "progress", 15, 9),
    Column("attempts", "tries", 5, 5),
    Column("times", "waited/ran", 12, 12),
    Column("note", "ETA or wait reason", NOTE_MIN, NOTE_MIN),
    Column("worker", "worker", 16, 16),
    Column("by", "by", 14, 14),
)
BY_KEY = {c.key: c for c in COLUMNS}
# Which columns a narrower table keeps first.
KEEP_ORDER = (
    "id",
    "status",
    "note",
    "name",
    "progress",
    "worker",
    "renderer",
    "priority",
    "times",
    "attempts",
    "by",
)
WIDE = 140  # from this table width on, columns get their full widths


Layout = tuple[tuple[str, int], ...]  # (column key, width) in display order


def layout(width: int) -> Layout:
    """The columns that fit a table ``width`` cells wide (inside its border), and their widths."""
    room = width - SCROLLBAR
    wide = width >= WIDE
    widths = {c.key: c.width if wide else c.narrow for c in COLUMNS}
    kept: list[str] = []
    used = 0
    for key in KEEP_ORDER:
        need = widths[key] + PADDING
        if used + need <= room:
            kept.append(key)
            used += need
    widths["note"] += max(0, room - used)
    return tuple((c.key, widths[c.key]) for c in COLUMNS if c.key in kept)


Cells = tuple[Text, ...]


def _cell(value: str, style: str = "") -> Text:
    return Text(value, style=style, no_wrap=True, overflow="ellipsis")


def note(row: JobRow, at: datetime) -> Text:
    """What the operator wants to know next about this job: when it ends, why it waits, how it failed."""
    if row.status is JobStatus.RUNNING:
        eta = seconds_between(at, row.eta)
        when = "eta ?" if eta is None else ("overdue" if eta < 0 else f"eta {duration(eta)}")
        return _cell(f"{when} · {row.stage}" if row.stage else when)
    if row.status is JobStatus.QUEUED:
        start = seconds_between(at, row.eta)
        text = f"#{row.position} " if row.position else ""
        text += row.wait_reason or "waiting"
        if start is not None:
            text += " · starting" if start <= 0 else f" · in ~{duration(start)}"
        return _cell(text, "cyan")
    if row.status is JobStatus.SCHEDULED:
        return _cell(row.wait_reason or "retry scheduled", "yellow")
    if row.status in (JobStatus.FAILED, JobStatus.CANCELED):
        kind = row.error_kind.value if row.error_kind else row.status.value
        return _cell(f"{kind}: {first_line(row.error)}", "red" if row.status is JobStatus.FAILED else "")
    if row.cached_from:
        return _cell(f"cached · from {row.cached_from[:8]}", "green")
    return _cell("done", "dim")


def progress_cell(row: JobRow, width: int = 15) -> Text:
    if row.status in (JobStatus.QUEUED, JobStatus.SCHEDULED) or row.started_at is None:
        return _cell("-", "dim")
    return bar(100.0 if row.status is JobStatus.FINISHED else row.progress, width=max(1, width - 5))


def cell(key: str, row: JobRow, at: datetime, width: int) -> Text:
    if key == "id":
        return Text(row.id, style="dim", no_wrap=True, overflow="crop")
    if key == "name":
        return _cell(row.name or "-")
    if key == "renderer":
        return _cell(row.renderer)
    if key == "priority":
        return priority_text(row.priority)
    if key == "status":
        return status_text(row.status)
    if key == "progress":
        return progress_cell(row, width)
    if key == "attempts":
        return _cell(f"{row.attempts}/{row.max_retries + 1}")
    if key == "times":
        return _cell(f"{duration(row.waited(at))}/{duration(row.ran(at))}")
    if key == "note":
        return note(row, at)
    if key == "worker":
        return _cell(row.worker or "-", "dim")
    return _cell(row.by or "-", "dim")


def row_cells(row: JobRow, at: datetime, columns: Layout) -> Cells:
    return tuple(cell(key, row, at, width) for key, width in columns)


def matches(row: JobRow, text: str, status: JobStatus | None) -> bool:
    if status is not None and row.status is not status:
        return False
    if not text:
        return True
    haystack = " ".join(
        str(v)
        for v in (
            row.id,
            row.name,
            row.renderer,
            row.priority.value,
            row.status.value,
            row.job_type,
            row.worker,
            row.by,
            row.stage,
            row.wait_reason,
            row.error_kind.value if row.error_kind else None,
            row.error,
        )
        if v
    ).lower()
    return all(word in haystack for word in text.lower().split())


def ended(row: JobRow | None) -> bool:
    return row is not None and row.status.terminal


class JobTable(DataTable[Text]):
    """The snapshot's rows, filtered by text and status; the cursor keeps the operator's place."""

    DEFAULT_CSS = """
    JobTable {
        height: 1fr;
        border: round $primary-muted;
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
    }
    JobTable:focus {
        border: round $primary;
    }
    """

    BINDINGS = [
        Binding("enter", "select_cursor", "Detail", tooltip="job detail"),
        Binding("home", "scroll_top", "First job", show=False),
        Binding("end", "scroll_bottom", "Last job", show=False),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, init=False)
    text_filter: reactive[str] = reactive("", init=False)
    status_filter: reactive[JobStatus | None] = reactive(None, init=False)
    follow: reactive[bool] = reactive(False, init=False)

    class OpenJob(Message):
        """The operator pressed enter on a job."""

        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._cells: dict[str, Cells] = {}
        self._rows: dict[str, JobRow] = {}
        self._layout: Layout = ()
        self.shown = 0
        self.total = 0

    def on_mount(self) -> None:
        self._relayout()

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()

    def _relayout(self) -> None:
        """Pick the columns for the current width; rebuild the table only if they changed."""
        width = self.size.width
        if width <= 0:
            return
        columns = layout(width)
        if columns == self._layout:
            return
        current = self.selected.id if self.selected else None
        self._layout = columns
        self.clear(columns=True)
        self._cells = {}
        for key, width_ in columns:
            self.add_column(BY_KEY[key].label, width=width_, key=key)
        self._sync()
        if current is not None and current in self._cells:
            self.move_cursor(row=self.get_row_index(current), animate=False, scroll=True)

    @property
    def column_keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self._layout)

    def watch_snapshot(self) -> None:
        self._sync()

    def watch_text_filter(self) -> None:
        self._sync()

    def watch_status_filter(self) -> None:
        self._sync()

    def watch_follow(self) -> None:
        self._set_title()

    @property
    def selected(self) -> JobRow | None:
        """The job under the cursor, as of the last refresh."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self._rows.get(key) if key is not None else None

    def job_ids(self) -> list[str]:
        """Job ids in display order."""
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]

    def _sync(self) -> None:
        if not self.columns:
            return
        snapshot = self.snapshot
        rows = list(snapshot.rows) if snapshot else []
        self.total = len(rows)
        visible = [r for r in rows if matches(r, self.text_filter, self.status_filter)]
        self.shown = len(visible)
        self._set_title()
        if snapshot is None:
            self._apply([], {})
            return
        cells = self._cells
        columns = self._layout
        at = snapshot.at
        self._apply(visible, {r.id: self._row_cells(r, at, columns, cells.get(r.id)) for r in visible})

    def _row_cells(self, row: JobRow, at: datetime, columns: Layout, old: Cells | None) -> Cells:
        # An unchanged row of an ended job renders the same at any time: skip building its cells.
        before = self._rows.get(row.id)
        if old is not None and before is not None and row.status.terminal and before == row:
            return old
        return row_cells(row, at, columns)

    def _set_title(self) -> None:
        title = self._title()
        if title != self.border_title:
            self.border_title = title

    def _title(self) -> str:
        parts = [f"jobs: {self.shown} of {self.total} shown"]
        if self.status_filter is not None:
            parts.append(f"status {self.status_filter.value}")
        if self.text_filter:
            parts.append(f"filter {self.text_filter!r}")
        if self.follow:
            parts.append("following the selected job")
        return " · ".join(parts)

    def _apply(self, rows: list[JobRow], cells: dict[str, Cells]) -> None:
        before = self.selected
        place = self.cursor_row
        for job_id in [k for k in self._cells if k not in cells]:
            self.remove_row(job_id)
            del self._cells[job_id]
        keys = self.column_keys
        for job_id, new in cells.items():
            old = self._cells.get(job_id)
            if old is None:
                self.add_row(*new, key=job_id)
            elif old != new:
                for column, old_cell, new_cell in zip(keys, old, new, strict=True):
                    if old_cell != new_cell:
                        self.update_cell(job_id, column, new_cell)
            self._cells[job_id] = new
        self._rows = {r.id: r for r in rows}
        order = {r.id: index for index, r in enumerate(rows)}
        if self.job_ids() != [r.id for r in rows]:
            self.sort("id", key=lambda c: order[c.plain])
        self._pin(rows)
        if not rows:
            return
        target = min(place, len(rows) - 1)
        if before is not None and before.id in order and place != 0:
            now = self._rows[before.id]
            if self.follow or not (ended(now) and not ended(before)):
                target = order[before.id]
        if target != self.cursor_row:
            # Only a cursor that followed its job scrolls the view; staying put never does.
            self.move_cursor(row=target, animate=False, scroll=target != place)

    def _pin(self, rows: list[JobRow]) -> None:
        """Pin the running jobs at the top (at most a share of the rows in view)."""
        running = 0
        for row in rows:
            if row.status is not JobStatus.RUNNING:
                break
            running += 1
        in_view = max(0, self.size.height - 1)  # rows under the header
        pinned = min(running, in_view // PIN_SHARE)
        if pinned != self.fixed_rows:
            self.fixed_rows = pinned

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key: RowKey = event.row_key
        if key.value is not None:
            self.post_message(self.OpenJob(key.value))
