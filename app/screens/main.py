"""The main screen: stats, alerts, the job table and the audit log; owns the poller and the operator keys.

Polling runs in a thread worker that calls ``source.snapshot()`` and posts the immutable Snapshot
back; the next poll is armed from the message handler, so polls never overlap. Operator actions
run in thread workers too (a cancel may wait seconds for a running job to die) and report back
with ``ActionDone``. No widget is touched from a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input

from farm.errors import FarmError
from farm.live.snapshot import JobRow, Snapshot
from farm.models import JobStatus

from ..cadence import Cadence, same_farm
from ..clock import Clock
from ..format import short_id
from ..link import Link, LinkState, next_status
from ..messages import ActionDone, SnapshotFailed, SnapshotReady
from ..source import ROWS, Source
from ..widgets.alerts_banner import AlertsBanner
from ..widgets.audit_panel import AuditPanel
from ..widgets.job_table import JobTable
from ..widgets.keys_footer import KeysFooter
from ..widgets.stats_bar import StatsBar
from .caps import CapsScreen
from .confirm import ConfirmScreen
from .detail import DetailScreen
from .enqueue import EnqueueScreen
from .help import HelpScreen
from .workers import WorkersScreen

RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELED)
MIN_ROWS = 10
# The footer drops these first when the terminal is too narrow for every key (the help has them all).
FOOTER_DROP_ORDER = (
    "cap(-1)",
    "cap(1)",
    "follow",
    "retry_all",
    "cycle_status",
    "workers",
    "filter",
    "pause",
    "caps",
    "detail",
)


class MainScreen(Screen[None]):
    CSS_PATH = "main.tcss"
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    BINDINGS = [
        Binding("n", "enqueue", "New", tooltip="enqueue a job: renderer, params (checked live), priority"),
        Binding("c", "cancel", "Cancel", tooltip="cancel the selected job (asks first)"),
        Binding("r", "retry", "Retry", tooltip="retry the selected failed or canceled job"),
        Binding("R", "retry_all", "Retry all", tooltip="retry every failed job (asks first)"),
        Binding("plus", "cap(1)", "Cap+", key_display="+", tooltip="raise the total cap by one"),
        Binding("minus", "cap(-1)", "Cap-", key_display="-", tooltip="lower the total cap by one"),
        Binding("k", "caps", "Caps", tooltip="caps editor: total, per renderer, time windows in force"),
        Binding("p", "pause", "Pause", tooltip="pause / resume the queue of the selected job's priority"),
        Binding("enter", "detail", "Detail", tooltip="job detail: params, attempts, errors, live log tail"),
        Binding("w", "workers", "Workers", tooltip="workers view"),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="filter the jobs by text"),
        Binding("f", "cycle_status", "Status", tooltip="cycle the status filter (all, queued, running...)"),
        Binding(
            "F",
            "follow",
            "Follow",
            tooltip="follow mode: the cursor goes with its job when it ends",
        ),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="this help"),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="clear the filters"),
    ]

    # The screen draws nothing itself (its widgets are bound to these): no repaint, or every
    # refresh would redraw the whole terminal.
    snapshot: reactive[Snapshot | None] = reactive(None, repaint=False)
    link: reactive[Link] = reactive(Link, repaint=False)
    text_filter: reactive[str] = reactive("", repaint=False)
    status_filter: reactive[JobStatus | None] = reactive(None, repaint=False)

    def __init__(self, source: Source, clock: Clock, interval: float, title: str = "farm") -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.interval = interval
        self.farm_title = title
        self._timer: Timer | None = None
        self._polling = False
        self._again = False  # an action asked for a fresh snapshot while a poll was running
        self.cadence = Cadence(interval)
        self.last_good: datetime | None = None  # time of the last good refresh

    def compose(self) -> ComposeResult:
        stats = StatsBar(self.clock, id="stats").data_bind(MainScreen.snapshot, MainScreen.link)
        stats.border_title = self.farm_title
        yield stats
        yield AlertsBanner(self.clock, id="banner").data_bind(MainScreen.snapshot, MainScreen.link)
        yield JobTable(id="jobs").data_bind(
            MainScreen.snapshot, MainScreen.text_filter, MainScreen.status_filter
        )
        yield Input(id="filter", placeholder="filter jobs: id, name, renderer, status, worker, reason…")
        yield AuditPanel(self.clock, id="audit").data_bind(MainScreen.snapshot)
        yield KeysFooter(FOOTER_DROP_ORDER)

    def on_mount(self) -> None:
        self.table.focus()
        self._poll()

    @property
    def table(self) -> JobTable:
        return self.query_one(JobTable)

    # -- polling ---------------------------------------------------------------------------------

    def _poll(self) -> None:
        self._polling = True
        self._again = False
        # Two screenfuls of the line and of the recent ends (MIN_ROWS to ROWS each): reading rows the
        # table has no room for is most of what a refresh costs on a big farm.
        self._fetch(self.source, max(MIN_ROWS, min(ROWS, 2 * self.table.size.height)))

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _fetch(self, source: Source, rows: int) -> None:
        try:
            snapshot = source.snapshot(rows)
        except FarmError as exc:
            self.post_message(SnapshotFailed(str(exc), disconnected=True))
        except Exception as exc:  # a bad reply must not stop the refreshes: show it, keep polling
            self.post_message(SnapshotFailed(f"{type(exc).__name__}: {exc}", disconnected=False))
        else:
            self.post_message(SnapshotReady(snapshot))

    def _arm_next(self, wait: float | None = None) -> None:
        self._polling = False
        self._timer = self.set_timer(0.05 if self._again else (wait or self.interval), self._poll)

    def on_key(self) -> None:
        """The operator is here: poll at the full rate again."""
        if self.cadence.wake() and not self._polling and self._timer is not None:
            self._timer.stop()
            self._arm_next()

    def refresh_now(self) -> None:
        """Poll as soon as possible (after an action), without ever overlapping two polls."""
        self.cadence.wake()
        if self._polling:
            self._again = True
            return
        if self._timer is not None:
            self._timer.stop()
        self._poll()

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        snapshot = message.snapshot
        shown = self.snapshot
        unchanged = same_farm(shown, snapshot)
        self.last_good = snapshot.at
        if not (unchanged and shown and (snapshot.at - shown.at).total_seconds() < self.cadence.redraw_after):
            self.snapshot = snapshot
        if not self.link.up:
            self.link = Link(LinkState.UP, last_good=snapshot.at)
        self._arm_next(self.cadence.next(unchanged))

    def watch_link(self, link: Link) -> None:
        self.set_class(link.state is not LinkState.UP, "-stale")

    def on_snapshot_failed(self, message: SnapshotFailed) -> None:
        state = LinkState.DOWN if message.disconnected else LinkState.ERROR
        self.link = Link(state, last_good=self.last_good, error=message.error)
        self.cadence.wake()
        self._arm_next()

    # -- operator actions ------------------------------------------------------------------------

    @work(thread=True, group="actions", exit_on_error=False)
    def _act(self, call: Callable[[], str]) -> None:
        try:
            text = call()
        except FarmError as exc:
            self.post_message(ActionDone(str(exc), error=True))
        except Exception as exc:  # report, never crash the UI
            self.post_message(ActionDone(f"{type(exc).__name__}: {exc}", error=True))
        else:
            self.post_message(ActionDone(text))

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.text, severity="error" if message.error else "information")
        self.refresh_now()

    def _selected(self, what: str) -> JobRow | None:
        """The job under the cursor; a hint when there is none."""
        row = self.table.selected
        if row is None:
            self.notify(f"select a job to {what}", severity="warning")
        return row

    def action_enqueue(self) -> None:
        def done(job_id: str | None) -> None:
            if job_id:
                self.notify(f"queued job {short_id(job_id)}")
                self.refresh_now()

        self.app.push_screen(EnqueueScreen(self.source), done)

    def action_cancel(self) -> None:
        row = self._selected("cancel")
        if row is None:
            return
        if row.status.terminal:
            self.notify(f"job {short_id(row.id)} is already {row.status.value}", severity="warning")
            return
        label = f"{short_id(row.id)} ({row.name or row.renderer}, {row.status.value})"

        def cancel() -> str:
            status = self.source.cancel(row.id).status
            if status is JobStatus.CANCELED:
                return f"job {short_id(row.id)} canceled"
            return f"cancel of {short_id(row.id)} requested; it is {status.value} for now"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._act(cancel)

        self.app.push_screen(ConfirmScreen(f"Cancel job {label}?"), confirmed)

    def action_retry(self) -> None:
        row = self._selected("retry")
        if row is None:
            return
        if row.status not in RETRYABLE:
            self.notify(
                f"only failed or canceled jobs can be retried ({row.status.value})", severity="warning"
            )
            return
        self._act(lambda: f"job {short_id(row.id)} {self.source.retry(row.id).status.value} again")

    def action_retry_all(self) -> None:
        failed = sum(self.snapshot.stats.counts[JobStatus.FAILED].values()) if self.snapshot else 0

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._act(lambda: f"retrying {len(self.source.retry_all_failed())} failed jobs")

        self.app.push_screen(ConfirmScreen(f"Retry all {failed} failed jobs?"), confirmed)

    def action_cap(self, delta: int) -> None:
        def change() -> str:
            caps = self.source.adjust_total_cap(delta)
            return f"total cap now {caps.total} (in force: {caps.effective_total})"

        self._act(change)

    def action_caps(self) -> None:
        if self.snapshot is None:
            self.notify("no data from the farm yet", severity="warning")
            return

        def done(text: str | None) -> None:
            if text:
                self.notify(text)
                self.refresh_now()

        registry = self.source.registry.names()
        self.app.push_screen(CapsScreen(self.source, self.snapshot.stats.caps, registry), done)

    def action_pause(self) -> None:
        row = self._selected("pause its queue")
        if row is None:
            return
        priority = row.priority

        def toggle() -> str:
            paused = self.source.toggle_pause(priority)
            return f"{priority.value} queue {'paused' if paused else 'resumed'}"

        self._act(toggle)

    def action_detail(self) -> None:
        row = self._selected("open")
        if row is not None:
            self._open(row.id)

    def on_job_table_open_job(self, message: JobTable.OpenJob) -> None:
        self._open(message.job_id)

    def _open(self, job_id: str) -> None:
        self.app.push_screen(DetailScreen(self.source, self.clock, job_id, self.interval))

    def action_workers(self) -> None:
        self.app.push_screen(WorkersScreen(self.source, self.clock, self.interval))

    def action_help(self) -> None:
        self.app.push_screen(
            HelpScreen(self.BINDINGS + list(self.app.BINDINGS), getattr(self.app, "QUIT_NOTE", ""))
        )

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-visible")
        box.focus()

    def action_follow(self) -> None:
        table = self.table
        table.follow = not table.follow
        self.notify("follow mode on: the cursor goes with its job" if table.follow else "follow mode off")

    def action_cycle_status(self) -> None:
        self.status_filter = next_status(self.status_filter)

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("-visible")
        self.text_filter = ""
        self.status_filter = None
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value.strip()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.remove_class("-visible")
        self.table.focus()
