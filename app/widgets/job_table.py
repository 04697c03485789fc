"""The job table: one row per job of the snapshot, in line order, updated in place by job id.

Rows are never cleared and rebuilt: each refresh removes the rows that left, adds the new ones,
rewrites only the cells that changed, then re-sorts to the snapshot's order and puts the cursor
back on the job it was on, so the operator's place survives every refresh.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from farm.live.snapshot import JobRow, Snapshot
from farm.models import JobStatus

from ..format import bar, duration, first_line, priority_text, seconds_between, status_text

# (key, label, width)
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("id", "id", 8),
    ("name", "name", 16),
    ("renderer", "renderer", 11),
    ("priority", "priority", 8),
    ("status", "status", 9),
    ("progress", "progress", 15),
    ("attempts", "tries", 5),
    ("times", "waited/ran", 12),
    ("note", "ETA or wait reason", 38),
    ("worker", "worker", 16),
    ("by", "by", 14),
)

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
    return _cell("done", "dim")


def progress_cell(row: JobRow) -> Text:
    if row.status in (JobStatus.QUEUED, JobStatus.SCHEDULED) or row.started_at is None:
        return _cell("-", "dim")
    return bar(100.0 if row.status is JobStatus.FINISHED else row.progress)


def row_cells(row: JobRow, at: datetime) -> Cells:
    return (
        Text(row.id, style="dim", no_wrap=True, overflow="crop"),
        _cell(row.name or "-"),
        _cell(row.renderer),
        priority_text(row.priority),
        status_text(row.status),
        progress_cell(row),
        _cell(f"{row.attempts}/{row.max_retries + 1}"),
        _cell(f"{duration(row.waited(at))}/{duration(row.ran(at))}"),
        note(row, at),
        _cell(row.worker or "-", "dim"),
        _cell(row.by or "-", "dim"),
    )


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


class JobTable(DataTable[Text]):
    """The snapshot's rows, filtered by text and status; the cursor stays on its job."""

    DEFAULT_CSS = """
    JobTable {
        height: 1fr;
        border: round $primary-muted;
    }
    JobTable:focus {
        border: round $primary;
    }
    """

    BINDINGS = [Binding("enter", "select_cursor", "Detail", tooltip="job detail")]

    snapshot: reactive[Snapshot | None] = reactive(None, init=False)
    text_filter: reactive[str] = reactive("", init=False)
    status_filter: reactive[JobStatus | None] = reactive(None, init=False)

    class OpenJob(Message):
        """The operator pressed enter on a job."""

        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._cells: dict[str, Cells] = {}
        self._rows: dict[str, JobRow] = {}
        self.shown = 0
        self.total = 0

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, width=width, key=key)
        self._sync()

    def watch_snapshot(self) -> None:
        self._sync()

    def watch_text_filter(self) -> None:
        self._sync()

    def watch_status_filter(self) -> None:
        self._sync()

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
        self.border_title = self._title()
        if snapshot is None:
            self._apply([], {})
            return
        self._apply(visible, {r.id: row_cells(r, snapshot.at) for r in visible})

    def _title(self) -> str:
        parts = [f"jobs: {self.shown} of {self.total} shown"]
        if self.status_filter is not None:
            parts.append(f"status {self.status_filter.value}")
        if self.text_filter:
            parts.append(f"filter {self.text_filter!r}")
        return " · ".join(parts)

    def _apply(self, rows: list[JobRow], cells: dict[str, Cells]) -> None:
        current = self.selected.id if self.selected else None
        for job_id in [k for k in self._cells if k not in cells]:
            self.remove_row(job_id)
            del self._cells[job_id]
        for job_id, new in cells.items():
            old = self._cells.get(job_id)
            if old is None:
                self.add_row(*new, key=job_id)
            elif old != new:
                for (column, _, _), before, after in zip(COLUMNS, old, new, strict=True):
                    if before != after:
                        self.update_cell(job_id, column, after)
            self._cells[job_id] = new
        self._rows = {r.id: r for r in rows}
        order = {r.id: index for index, r in enumerate(rows)}
        if self.job_ids() != [r.id for r in rows]:
            self.sort("id", key=lambda cell: order[cell.plain])
        if current in order:
            self.move_cursor(row=self.get_row_index(current), animate=False, scroll=True)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key: RowKey = event.row_key
        if key.value is not None:
            self.post_message(self.OpenJob(key.value))
