"""The workers view (``w``): every registered worker, its state, current job and heartbeat age;
under it each worker pool's processes now and the number it is heading for (``2 → 4`` while an
autoscaling pool starts workers for waiting jobs, ``4 → 1`` while idle ones wait out
``worker.idle_exit``)."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from farm.errors import FarmError
from farm.models import PoolInfo, WorkerInfo

from ..clock import Clock
from ..format import duration, short_id
from ..source import Source

COLUMNS = ("name", "host", "pid", "state", "current job", "last heartbeat")
POOL_COLUMNS = ("pool", "host", "size", "processes", "busy", "idle", "starting", "can start")


def worker_cells(worker: WorkerInfo, clock: Clock) -> tuple[Text, ...]:
    age = (clock.now() - worker.last_heartbeat).total_seconds() if worker.last_heartbeat else None
    state_style = "bold green" if worker.state == "busy" else ("red" if not worker.alive else "")
    return (
        Text(worker.name),
        Text(worker.host or "-"),
        Text(str(worker.pid or "-")),
        Text(worker.state, style=state_style),
        Text(short_id(worker.current_job), style="cyan" if worker.current_job else "dim"),
        Text("-" if age is None else f"{duration(age)} ago", style="" if worker.alive else "red"),
    )


def pool_cells(pool: PoolInfo) -> tuple[Text, ...]:
    moving = pool.current != pool.target
    return (
        Text(pool.name),
        Text(pool.host or "-"),
        Text(f"{pool.minimum}:{pool.maximum}" if pool.autoscaling else f"{pool.maximum} (fixed)"),
        Text(
            f"{pool.current} → {pool.target}" if moving else str(pool.current),
            style="bold yellow" if moving else "",
        ),
        Text(str(pool.busy), style="bold green" if pool.busy else ""),
        Text(str(pool.idle)),
        Text(str(pool.starting)),
        Text(str(pool.eligible)),
    )


def sync_rows(table: DataTable, columns: tuple[str, ...], rows: dict[str, tuple[Text, ...]]) -> None:
    """Make ``table`` show ``rows`` (by key), updating cells in place so the cursor stays put."""
    for key in [row.key for row in table.ordered_rows if row.key.value not in rows]:
        table.remove_row(key)
    for name, cells in rows.items():
        if name in table.rows:
            for column, value in zip(columns, cells, strict=True):
                table.update_cell(name, column, value)
        else:
            table.add_row(*cells, key=name)


class WorkersScreen(Screen[None]):
    CSS_PATH = "workers.tcss"

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    class Loaded(Message):
        def __init__(self, workers: list[WorkerInfo], pools: list[PoolInfo]) -> None:
            super().__init__()
            self.workers = workers
            self.pools = pools

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, source: Source, clock: Clock, interval: float) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.interval = interval

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield DataTable(id="workers", cursor_type="row", zebra_stripes=True)
        yield DataTable(id="pools", cursor_type="none", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#workers", DataTable)
        table.border_title = "workers"
        for column in COLUMNS:
            table.add_column(column, key=column)
        pools = self.query_one("#pools", DataTable)
        pools.border_title = "pools: processes now → target"
        for column in POOL_COLUMNS:
            pools.add_column(column, key=column)
        table.focus()
        self._fetch(self.source)

    @work(thread=True, exclusive=True, group="workers", exit_on_error=False)
    def _fetch(self, source: Source) -> None:
        try:
            self.post_message(self.Loaded(source.workers(), source.pools()))
        except FarmError as exc:
            self.post_message(self.Failed(f"disconnected — retrying: {exc}"))
        except Exception as exc:  # show it, keep refreshing
            self.post_message(self.Failed(f"{type(exc).__name__}: {exc}"))

    def _arm_next(self) -> None:
        self.set_timer(self.interval, lambda: self._fetch(self.source))

    def on_workers_screen_loaded(self, message: WorkersScreen.Loaded) -> None:
        table = self.query_one("#workers", DataTable)
        sync_rows(table, COLUMNS, {w.name: worker_cells(w, self.clock) for w in message.workers})
        pools = self.query_one("#pools", DataTable)
        sync_rows(pools, POOL_COLUMNS, {p.name: pool_cells(p) for p in message.pools})
        pools.display = bool(message.pools)
        alive = sum(w.alive for w in message.workers)
        busy = sum(w.alive and w.current_job is not None for w in message.workers)
        self.query_one("#summary", Static).update(
            f"{alive} alive, {busy} busy, {len(message.workers) - alive} dead or stale"
        )
        self._arm_next()

    def on_workers_screen_failed(self, message: WorkersScreen.Failed) -> None:
        self.query_one("#summary", Static).update(Text(f"● {message.error}", style="bold red"))
        self._arm_next()
