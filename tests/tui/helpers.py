"""Helpers for the TUI tests: wait on a condition while the app runs, read the screen as text."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

from app.screens.main import MainScreen
from app.widgets.job_table import JobTable

SIZE = (160, 48)
POLL = 0.2  # seconds between refreshes in tests (the app's default is 1 s)


async def until(pilot: Pilot, predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until ``predicate()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await pilot.pause(0.02)


def screen_text(app: App) -> str:
    """What the terminal shows right now, as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def main_screen(app: App) -> MainScreen:
    return next(s for s in app.screen_stack if isinstance(s, MainScreen))


def table(app: App) -> JobTable:
    return main_screen(app).table


def shows(app: App, *job_ids: str) -> bool:
    ids = set(table(app).job_ids())
    return all(job_id in ids for job_id in job_ids)


async def select(pilot: Pilot, job_id: str) -> None:
    """Put the table's cursor on a job with the arrow keys, as an operator would."""
    jobs = table(pilot.app)
    jobs.focus()
    await until(pilot, lambda: job_id in jobs.job_ids(), what=f"job {job_id} in the table")
    target = jobs.get_row_index(job_id)
    while jobs.cursor_row != target:
        await pilot.press("down" if jobs.cursor_row < target else "up")
        target = jobs.get_row_index(job_id)
    assert jobs.selected is not None and jobs.selected.id == job_id
