"""Every operator key against a real Redis: what the key does must show up in Redis (and on screen)."""

from __future__ import annotations

import pytest
from redis import Redis
from textual.widgets import Footer, Input, Log, Select, Static

from app.screens.caps import CapsScreen
from app.screens.confirm import ConfirmScreen
from app.screens.detail import DetailScreen
from app.screens.enqueue import EnqueueScreen
from app.screens.help import HelpScreen
from app.screens.main import MainScreen
from app.screens.workers import WorkersScreen
from farm import Farm, JobStatus, Priority
from tests.tui.helpers import SIZE, main_screen, screen_text, select, shows, until
from tests.util import run_burst, wait_workers

pytestmark = pytest.mark.anyio


async def started(pilot) -> None:
    await until(pilot, lambda: main_screen(pilot.app).link.up, what="first snapshot")


async def type_text(pilot, text: str) -> None:
    await pilot.press(*text)


async def test_enqueue_form_lands_a_job_in_redis(live_app, farm: Farm):
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, EnqueueScreen))
        app.screen.query_one("#params", Input).value = '{"duration": 0.5} '
        await type_text(pilot, "stages=2")
        app.screen.query_one("#job_type", Select).value = "daily_ca"
        app.screen.query_one("#name", Input).value = "from-the-form"
        await until(pilot, lambda: "✓ valid: demo, queue low" in screen_text(app))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="form closed")
        [job] = farm.list()
        assert (job.renderer, job.params, job.job_type, job.name) == (
            "demo",
            {"duration": 0.5, "stages": 2},
            "daily_ca",
            "from-the-form",
        )
        assert job.priority is Priority.LOW and job.status is JobStatus.QUEUED
        await until(pilot, lambda: shows(app, job.id), what="the new job in the table")


async def test_invalid_params_show_inline_and_enqueue_nothing(live_app, connection: Redis):
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        before = sorted(connection.scan_iter("*"))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, EnqueueScreen))
        await type_text(pilot, "duration=-1 x=1")
        verdict = app.screen.query_one("#verdict", Static)
        expected = "demo params: duration: Input should be greater than or equal to 0; x: unknown parameter"
        await until(pilot, lambda: expected in str(verdict.render()), what="the inline error")
        assert verdict.has_class("-error")
        await pilot.press("enter", "ctrl+s")
        await pilot.pause(0.3)
        assert isinstance(app.screen, EnqueueScreen)
        assert "✗ demo params: duration: Input should be greater than or equal to 0" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert sorted(connection.scan_iter("*")) == before


async def test_cancel_asks_first_and_cancels_in_redis(live_app, farm: Farm):
    job_id = farm.submit("demo", {}, name="victim")
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await select(pilot, job_id)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert farm.get(job_id).status is JobStatus.QUEUED
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: farm.get(job_id).status is JobStatus.CANCELED, what="canceled in Redis")
        entry = farm.audit_log()[0]
        assert (entry.who, entry.action, entry.target) == ("tui:tester", "cancel", job_id)
        audit = app.screen.query_one("#audit")
        await until(pilot, lambda: "tui:tester  cancel" in str(audit.render().renderables[0]))


async def test_retry_one_and_retry_all_failed(live_app, farm: Farm, config, redis_url):
    bad = [
        farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"}, name=f"bad-{i}") for i in range(3)
    ]
    run_burst(config, redis_url)
    assert {farm.get(i).status for i in bad} == {JobStatus.FAILED}
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await select(pilot, bad[1])
        await pilot.press("r")
        await until(pilot, lambda: farm.get(bad[1]).status is JobStatus.QUEUED, what="retried")
        assert [farm.get(i).status for i in (bad[0], bad[2])] == [JobStatus.FAILED] * 2
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Retry all 2 failed jobs?" in screen_text(app)
        await pilot.press("y")
        await until(
            pilot, lambda: all(farm.get(i).status is JobStatus.QUEUED for i in bad), what="all retried"
        )
        assert [e.action for e in farm.audit_log()[:3]] == ["retry"] * 3


async def test_retry_refuses_a_job_that_did_not_fail(live_app, farm: Farm):
    job_id = farm.submit("demo", {})
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await select(pilot, job_id)
        await pilot.press("r")
        await pilot.pause(0.3)
        assert farm.get(job_id).status is JobStatus.QUEUED and farm.audit_log() == []


async def test_plus_minus_change_the_total_cap(live_app, farm: Farm):
    assert farm.caps().total == 10
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("plus")
        await until(pilot, lambda: farm.caps().total == 11, what="cap 11")
        await pilot.press("minus", "minus", "minus")
        await until(pilot, lambda: farm.caps().total == 8, what="cap 8")
        await until(pilot, lambda: "running 0/8" in screen_text(app), what="the stats bar follows")


async def test_caps_editor_changes_total_and_renderer_caps(live_app, farm: Farm):
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, CapsScreen))
        text = screen_text(app)
        assert "no time window in force" in text and "windows (local time): none configured" in text
        editor = app.screen
        editor.query_one("#cap-total", Input).value = ""
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "total: required" in str(editor.query_one("#problem", Static).render()))
        assert isinstance(app.screen, CapsScreen)
        editor.query_one("#cap-total", Input).value = "7"
        editor.query_one("#cap-r-demo", Input).value = "3"
        editor.query_one("#cap-r-manim", Input).value = ""  # blank: no cap
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="editor closed")
        caps = farm.caps()
        assert (caps.total, caps.renderers) == (7, {"demo": 3})
        assert farm.audit_log()[0].action == "caps"


async def test_p_pauses_and_resumes_the_selected_jobs_priority(live_app, farm: Farm):
    farm.submit("demo", {}, priority="high")
    low = farm.submit("demo", {}, priority="low")
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await select(pilot, low)
        await pilot.press("p")
        await until(pilot, lambda: farm.paused() == [Priority.LOW], what="low paused")
        await until(pilot, lambda: "low 1 (paused)" in screen_text(app))
        await pilot.press("p")
        await until(pilot, lambda: farm.paused() == [], what="low resumed")
        assert [e.action for e in farm.audit_log()[:2]] == ["resume", "pause"]


async def test_enter_opens_the_detail_with_a_live_log_tail(live_app, farm: Farm, procs, connection):
    procs.worker("--processes", "1")
    wait_workers(connection, 1)
    job_id = farm.submit("demo", {"duration": 1.5, "stages": 3}, name="watch-me")
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await select(pilot, job_id)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        log = app.screen.query_one(Log)
        await until(pilot, lambda: "stage 1/3: prepare" in log.lines, what="first log line")
        await until(pilot, lambda: "stage 3/3: animate" in log.lines, what="a later log line, live")
        await until(pilot, lambda: "finished" in screen_text(app), what="the end of the job")
        text = screen_text(app)
        assert "watch-me" in text and '"duration": 1.5' in text and "attempts" in text
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_cancel_of_a_running_job_keeps_the_ui_responsive(live_app, farm: Farm, procs, connection):
    procs.worker("--processes", "1")
    wait_workers(connection, 1)
    job_id = farm.submit("demo", {"duration": 30}, name="long")
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await until(pilot, lambda: farm.get(job_id).status is JobStatus.RUNNING, what="running")
        await select(pilot, job_id)
        await pilot.press("c", "y", "question_mark")
        await until(
            pilot, lambda: isinstance(app.screen, HelpScreen), timeout=1, what="help while cancelling"
        )
        await pilot.press("escape")
        await until(pilot, lambda: farm.get(job_id).status is JobStatus.CANCELED, timeout=5, what="canceled")


async def test_w_shows_the_workers(live_app, procs, connection):
    procs.worker("--processes", "1", "--name", "tui-test-worker")
    wait_workers(connection, 1)
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
        await until(pilot, lambda: "tui-test-worker" in screen_text(app), what="the worker listed")
        assert "1 alive" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_an_autoscaling_pool_shows_its_processes_now_and_its_size(live_app, procs, connection):
    procs.worker("--workers", "1:3", "--name", "tui-pool")
    wait_workers(connection, 1)
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await until(pilot, lambda: "pool 1 of 1:3" in screen_text(app), what="the pool in the header")
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
        await until(pilot, lambda: "tui-pool" in screen_text(app), what="the pool listed")
        row = next(line for line in screen_text(app).splitlines() if "tui-pool" in line and "1:3" in line)
        assert row.split("1:3")[1].split()[0] == "1", row  # processes now, after the size


async def test_every_key_is_in_the_footer_and_the_help(live_app):
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        shown = [b for b in MainScreen.BINDINGS + app.BINDINGS if b.show]
        await until(pilot, lambda: screen_text(app).splitlines()[-1].strip(), what="the footer")
        footer = screen_text(app).splitlines()[-1]
        for binding in shown:
            key = "⏎" if binding.key == "enter" else (binding.key_display or binding.key)
            assert f"{key} {binding.description}" in footer, binding
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_text = screen_text(app)
        for binding in shown:
            assert binding.tooltip and binding.tooltip in help_text, binding
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert app.screen.query_one(Footer)


async def test_q_quits(live_app):
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None, what="exit")
    assert app.return_code == 0


async def test_a_job_waiting_for_another_from_the_form_to_the_detail(live_app, farm: Farm):
    first = farm.submit("demo", {}, name="scene-one")
    app = live_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, EnqueueScreen))
        app.screen.query_one("#name", Input).value = "concat-it"
        app.screen.query_one("#after", Input).value = first[:8]  # a prefix, as the table shows ids
        await until(pilot, lambda: "✓ valid: demo" in screen_text(app))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="form closed")
        [waiting] = [j for j in farm.list() if j.name == "concat-it"]
        assert waiting.after == (first,)
        await until(pilot, lambda: shows(app, waiting.id), what="the waiting job")
        await until(pilot, lambda: f"after {first[:8]} (queued)" in screen_text(app), what="its wait reason")
        await select(pilot, first)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        await until(pilot, lambda: f"dependents  {waiting.id[:8]}" in screen_text(app), what="its dependent")
