"""The job table on a live farm: filters, line order, and the cursor staying on its job across refreshes."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from farm import Farm, JobStatus
from tests.tui.helpers import POLL, SIZE, main_screen, select, shows, table, until
from tests.util import run_burst

pytestmark = pytest.mark.anyio


async def started(pilot) -> None:
    await until(pilot, lambda: main_screen(pilot.app).link.up, what="first snapshot")


async def test_slash_filters_by_text_and_f_cycles_statuses(live_app, farm: Farm, config, redis_url):
    failed = farm.submit("demo", {"duration": 0, "fail_with": "not_found"}, name="broken-thumb")
    run_burst(config, redis_url)
    alpha = farm.submit("demo", {}, name="alpha-intro")
    beta = farm.submit("demo", {}, name="beta-outro", priority="high")
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        jobs = table(app)
        await until(pilot, lambda: jobs.job_ids() == [beta, alpha, failed], what="line order")

        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"outro")
        await until(pilot, lambda: jobs.job_ids() == [beta], what="text filter")
        assert "filter 'outro'" in str(jobs.border_title)
        await pilot.press("enter")
        assert app.focused is jobs
        await pilot.pause(0.5)  # a few refreshes: the filter holds
        assert jobs.job_ids() == [beta]
        await pilot.press("escape")
        await until(pilot, lambda: len(jobs.job_ids()) == 3, what="filter cleared")

        await pilot.press("f")  # queued
        await until(pilot, lambda: jobs.job_ids() == [beta, alpha])
        await pilot.press("f")  # running
        await until(pilot, lambda: jobs.job_ids() == [])
        await pilot.press("f")  # failed
        await until(pilot, lambda: jobs.job_ids() == [failed])
        assert "status failed" in str(jobs.border_title)
        for _ in range(4):  # finished, canceled, scheduled, back to all
            await pilot.press("f")
        await until(pilot, lambda: len(jobs.job_ids()) == 3)
        assert main_screen(app).status_filter is None


async def test_cursor_and_scroll_stay_on_their_job_across_refreshes(live_app, farm: Farm):
    ids = farm.submit_many([{"renderer": "demo", "params": {}, "name": f"job-{i:02d}"} for i in range(40)])
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        jobs = table(app)
        await until(pilot, lambda: shows(app, *ids), what="40 rows")

        def no_rebuild(*args, **kwargs):
            raise AssertionError("the job table must be updated by key, never cleared")

        jobs.clear = no_rebuild  # type: ignore[method-assign]
        await select(pilot, ids[3])
        jobs.move_cursor(row=jobs.get_row_index(ids[35]))  # far down: no need to press 32 keys
        await pilot.pause(0.1)
        assert jobs.selected is not None and jobs.selected.id == ids[35]
        scroll = jobs.scroll_y
        assert scroll > 0, "the cursor row is below the first screenful: the table scrolled"

        # A refresh that changes rows around the cursor but not its order: nothing moves.
        farm.cancel(ids[2])
        await until(pilot, lambda: jobs.job_ids()[-1] == ids[2], what="canceled job moved to the end")
        assert jobs.selected is not None and jobs.selected.id == ids[35]
        assert jobs.scroll_y == scroll

        # Two high-priority jobs jump ahead of it: the cursor follows its job down.
        urgent = [farm.submit("demo", {}, priority="high", name=f"urgent-{i}") for i in range(2)]
        await until(pilot, lambda: jobs.job_ids()[:2] == urgent, what="urgent jobs first")
        assert jobs.selected is not None and jobs.selected.id == ids[35]
        assert jobs.cursor_row == jobs.get_row_index(ids[35])

        # Many refreshes later it is still there.
        await pilot.pause(5 * POLL)
        assert jobs.selected.id == ids[35]


async def test_rows_come_in_line_order_with_wait_reasons(live_app, farm: Farm):
    farm.set_caps(renderers={"demo": 0})
    low = farm.submit("demo", {}, priority="low", name="low")
    high = farm.submit("demo", {}, priority="high", name="high")
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        jobs = table(app)
        await until(pilot, lambda: jobs.job_ids() == [high, low])
        note = str(jobs.get_cell(high, "note"))
        assert note == "#1 demo cap 0/0", note
        assert farm.get(low).status is JobStatus.QUEUED
