"""What the operators reported, each pinned by a test: the cursor and the running jobs across
refreshes, small terminals (header, columns, footer, forms), modals' own keys and what q does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.events import MouseScrollDown
from textual.widgets import Button

from app.app import FarmApp, FarmUpApp, app_class
from app.clock import Clock, FixedClock
from app.fit import Part, fit_line
from app.link import Link, LinkState
from app.screens.caps import CapsScreen
from app.screens.confirm import ConfirmScreen
from app.screens.enqueue import EnqueueScreen
from app.screens.help import HelpScreen
from app.screens.main import MainScreen
from app.source import FixedSource
from app.widgets.job_table import layout
from app.widgets.keys_footer import MORE, fit_keys, key_width
from app.widgets.stats_bar import health_parts, queues_parts, results_parts, running_parts
from farm.models import JobStatus
from tests.tui import data
from tests.tui.helpers import POLL, main_screen, screen_text, select, table, until

pytestmark = pytest.mark.anyio


def moved_on(finished: int, started: int | None = None) -> data.Snapshot:
    """The busy farm a moment later: job ``finished`` ended (it drops to the ended rows), and
    job ``started`` (queued) runs."""
    rows = list(data.ROWS)
    done = next(r for r in rows if r.id == data.job_id(finished))
    rows.remove(done)
    ended = done.model_copy(update={"status": JobStatus.FINISHED, "progress": 100, "ended_at": data.AT})
    running = [r for r in rows if r.status is JobStatus.RUNNING]
    rest = [r for r in rows if r.status is not JobStatus.RUNNING]
    if started is not None:
        job = next(r for r in rest if r.id == data.job_id(started))
        rest.remove(job)
        running.insert(0, job.model_copy(update={"status": JobStatus.RUNNING, "started_at": data.AT}))
    ended_at = next(i for i, r in enumerate(rest) if r.status.terminal)
    rest.insert(ended_at, ended)
    return data.busy_snapshot().model_copy(
        update={"rows": tuple(running + rest), "at": data.AT + timedelta(seconds=1)}
    )


def fixed(size_source: FixedSource) -> FarmApp:
    return FarmApp(size_source, clock=FixedClock(data.AT), interval=POLL, title="farm")


async def loaded(pilot) -> None:
    await until(pilot, lambda: main_screen(pilot.app).snapshot is not None, what="the fixed snapshot")


async def refreshed(pilot, source: FixedSource, snapshot) -> None:
    source.set_snapshot(snapshot)
    ids = [r.id for r in snapshot.rows]
    await until(pilot, lambda: table(pilot.app).job_ids() == ids, what="the refresh")


# -- 1. the cursor and the running jobs ----------------------------------------------------------


async def test_a_job_that_ends_leaves_the_cursor_where_it_was(fixed_source: FixedSource):
    app = fixed(fixed_source)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await select(pilot, data.job_id(2))
        jobs = table(app)
        await refreshed(pilot, fixed_source, moved_on(finished=2))
        assert jobs.cursor_row == 1, "the cursor stays on its row, not on the job that dropped away"
        assert jobs.selected is not None and jobs.selected.id == data.job_id(3)
        assert jobs.scroll_y == 0
        await pilot.pause(5 * POLL)
        assert jobs.cursor_row == 1


async def test_follow_mode_goes_with_the_job(fixed_source: FixedSource):
    app = fixed(fixed_source)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await select(pilot, data.job_id(2))
        await pilot.press("F")
        jobs = table(app)
        assert jobs.follow and "following" in str(jobs.border_title)
        await refreshed(pilot, fixed_source, moved_on(finished=2))
        assert jobs.selected is not None and jobs.selected.id == data.job_id(2)
        await pilot.press("F")
        assert not jobs.follow


async def test_home_is_not_undone_by_a_refresh(fixed_source: FixedSource):
    app = fixed(fixed_source)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        jobs = table(app)
        jobs.focus()
        await pilot.press("end")
        assert jobs.cursor_row == len(data.ROWS) - 1 and jobs.scroll_y > 0
        await pilot.press("home")
        assert jobs.cursor_row == 0
        # The first job ends and a queued one starts: the top stays the top.
        await refreshed(pilot, fixed_source, moved_on(finished=1, started=5))
        assert jobs.cursor_row == 0 and jobs.scroll_y == 0
        assert jobs.selected is not None and jobs.selected.id == data.job_id(5)


async def test_a_refresh_does_not_undo_scrolling_and_running_jobs_stay_in_view(fixed_source: FixedSource):
    app = fixed(fixed_source)
    async with app.run_test(size=(100, 24)) as pilot:
        await loaded(pilot)
        jobs = table(app)
        await until(pilot, lambda: jobs.fixed_rows > 0, what="running jobs pinned")
        await pilot.pause(0.2)
        for _ in range(20):  # the operator scrolls down with the wheel
            await pilot._post_mouse_events([MouseScrollDown], jobs, (10, 5))
        await pilot.pause(0.2)
        scrolled = jobs.scroll_y
        assert scrolled > 0, (jobs.max_scroll_y, jobs.virtual_size, jobs.size)
        await refreshed(pilot, fixed_source, moved_on(finished=4))
        await pilot.pause(3 * POLL)
        assert jobs.scroll_y == scrolled
        text = screen_text(app)
        pinned = [r.name for r in moved_on(finished=4).rows[: jobs.fixed_rows]]
        assert pinned and all(name in text for name in pinned), "the running jobs are still on screen"
        assert "thumbs-30" in text, "and so is the bottom of the table"


# -- 2. small terminals --------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 100, 160])
def test_header_lines_fit_without_cutting_a_phrase(width):
    snapshot = data.busy_snapshot()
    clock = FixedClock(data.AT)
    link = Link(LinkState.UP, last_good=data.AT)
    inner = width - 4  # border and padding
    for parts in (
        queues_parts(snapshot.stats),
        running_parts(snapshot.stats),
        results_parts(snapshot.stats),
        health_parts(snapshot, link, clock),
    ):
        line = fit_line(parts, inner)
        assert line.cell_len <= inner and "…" not in line.plain, line.plain
    assert "only 4 worker processes" in fit_line(running_parts(snapshot.stats), 96).plain


def test_fit_line_drops_the_least_important_phrase_first():
    parts = [Part.of(0, "running 4/15"), Part.of(2, "  a long note", "  note", ""), Part.of(1, "  key 1")]
    assert fit_line(parts, 100).plain == "running 4/15  a long note  key 1"
    assert fit_line(parts, 26).plain == "running 4/15  note  key 1"
    assert fit_line(parts, 20).plain == "running 4/15  key 1"
    assert fit_line(parts, 10).plain == "running 4…"  # nothing left to drop: cropped, marked


def test_columns_by_priority():
    def keys(width: int) -> list[str]:
        return [key for key, _ in layout(width)]

    narrow, medium, wide = keys(78), keys(98), keys(158)
    assert {"id", "name", "status", "progress", "note"} <= set(narrow) and "worker" not in narrow
    assert "note" in medium and "worker" in medium and "by" not in medium
    assert "worker" in wide and "renderer" in wide and "priority" in wide
    assert "by" in keys(200) and set(keys(200)) >= set(wide)
    for width in (60, 78, 98, 120, 158, 200):
        assert sum(w + 2 for _, w in layout(width)) <= width - 1
        shown = keys(width)
        if "worker" in shown:
            assert "note" in shown
        if "by" in shown:
            assert len(shown) == 11, "the submitter column is the last to come"


def test_footer_keys_fit_by_dropping_the_least_needed():
    keys = [("new", "n", "New"), ("cap(1)", "+", "Cap+"), ("help", "?", "Help"), ("quit", "q", "Quit")]
    assert fit_keys(keys, 200, ["cap(1)"], "help") == (False, ["new", "cap(1)", "help", "quit"])
    assert fit_keys(keys, 27, ["cap(1)"], "help") == (True, ["new", "cap(1)", "help", "quit"])
    compact, kept = fit_keys(keys, 26, ["cap(1)"], "help")
    assert compact and kept == ["new", "help", "quit"]
    shown = {a: (k, MORE if a == "help" else d) for a, k, d in keys if a in kept}
    assert sum(key_width(k, d, True) for k, d in shown.values()) <= 26


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_small_terminals_show_the_wait_reason_a_whole_footer_and_reachable_buttons(fixed_source, size):
    app = fixed(fixed_source)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        assert "#1 all 4 workers busy" in text and "eta 27s" in text
        if size[0] >= 100:
            assert "render-01.4242.1" in text, "the worker column at 100 columns"
        footer = text.splitlines()[-1]
        assert footer.rstrip().endswith("q Quit") and "? More keys" in footer

        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, EnqueueScreen))
        await pilot.pause(0.2)
        screen_region = app.screen.region
        for button in app.screen.query(Button):
            assert screen_region.contains_region(button.region), button.id
        assert "Submit (ctrl+s)" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))

        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, CapsScreen))
        await pilot.pause(0.2)
        for button in app.screen.query(Button):
            assert app.screen.region.contains_region(button.region), button.id
        assert "Save (ctrl+s)" in screen_text(app)


# -- 3. modals' keys, and what q does ------------------------------------------------------------


async def test_modals_show_their_own_keys_and_q_does_not_quit_under_them(fixed_source: FixedSource):
    app = fixed(fixed_source)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, CapsScreen))
        await pilot.pause(0.2)
        footer = screen_text(app).splitlines()[-1]
        assert "Save" in footer and "Cancel" in footer and "New" not in footer and "Quit" not in footer
        await pilot.press("escape")
        await select(pilot, data.job_id(5))
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.2)
        footer = screen_text(app).splitlines()[-1]
        assert "y Yes" in footer and "n No" in footer and "Quit" not in footer
        await pilot.press("q")
        await pilot.pause(0.2)
        assert app.is_running and isinstance(app.screen, ConfirmScreen)


@pytest.mark.parametrize(
    ("app_type", "said", "not_said"),
    [
        (FarmApp, "the farm keeps running", "stops the whole farm"),
        (FarmUpApp, "stops the whole farm", "the farm keeps running"),
    ],
)
async def test_help_says_what_q_does(fixed_source: FixedSource, app_type, said, not_said):
    app = app_type(fixed_source, clock=FixedClock(data.AT), interval=POLL)
    async with app.run_test(size=(160, 45)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = " ".join(screen_text(app).split())
        assert said in text and not_said not in text


def test_farm_up_gets_the_app_that_stops_the_farm():
    assert app_class("unix:///x/redis.sock") is FarmUpApp  # farm up passes the farm it started
    assert app_class(None) is FarmApp  # farm tui
    assert app_class("redis://h:6379/0", stops_farm=False) is FarmApp
    assert app_class(None, stops_farm=True) is FarmUpApp
    assert isinstance(Clock(), Clock)
