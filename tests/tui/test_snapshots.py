"""Screenshots of the UI on a fixed busy farm and a fixed clock, compared with the accepted SVGs:
the main screen, the help, the caps editor and the enqueue form at 80x24, 100x30 and 160x45.

Regenerate with ``pytest tests/tui --snapshot-update`` after looking at what changed.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from app.app import FarmApp
from app.link import LinkState
from app.screens.caps import CapsScreen
from app.screens.detail import DetailScreen
from app.screens.enqueue import EnqueueScreen
from app.screens.help import HelpScreen
from app.source import FixedSource
from tests.tui.helpers import main_screen, until

SIZES = [
    pytest.param((80, 24), id="80x24"),
    pytest.param((100, 30), id="100x30"),
    pytest.param((160, 45), id="160x45"),
]
WIDE = (160, 45)


async def loaded(pilot: Pilot) -> None:
    await until(pilot, lambda: main_screen(pilot.app).snapshot is not None, what="the fixed snapshot")


@pytest.mark.parametrize("size", SIZES)
def test_main_screen_busy_farm(snap_compare, fixed_app: FarmApp, size):
    assert snap_compare(fixed_app, terminal_size=size, run_before=loaded)


def test_job_detail(snap_compare, fixed_app: FarmApp):
    async def open_detail(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.info)

    assert snap_compare(fixed_app, terminal_size=WIDE, run_before=open_detail)


@pytest.mark.parametrize("size", SIZES)
def test_caps_editor(snap_compare, fixed_app: FarmApp, size):
    async def open_caps(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(pilot.app.screen, CapsScreen))
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False

    assert snap_compare(fixed_app, terminal_size=size, run_before=open_caps)


@pytest.mark.parametrize("size", SIZES)
def test_enqueue_form_with_a_validation_error(snap_compare, fixed_app: FarmApp, size):
    async def bad_params(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, EnqueueScreen))
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.press(*"duration=-1 x=1")

    assert snap_compare(fixed_app, terminal_size=size, run_before=bad_params)


def test_disconnected(snap_compare, fixed_app: FarmApp, fixed_source: FixedSource):
    async def redis_gone(pilot: Pilot) -> None:
        await loaded(pilot)
        fixed_source.down = True
        await until(pilot, lambda: main_screen(pilot.app).link.state is LinkState.DOWN)

    assert snap_compare(fixed_app, terminal_size=WIDE, run_before=redis_gone)


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, fixed_app: FarmApp, size):
    async def open_help(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))

    assert snap_compare(fixed_app, terminal_size=size, run_before=open_help)
