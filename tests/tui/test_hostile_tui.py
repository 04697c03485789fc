"""Hostile text in the TUI: control characters are shown escaped, and the enqueue form survives
params that used to crash the whole app (and, under ``farm up``, the farm)."""

from __future__ import annotations

import pytest
from redis import Redis

from farm import Farm

pytestmark = pytest.mark.anyio


async def test_the_tui_shows_control_characters_escaped(farm: Farm, connection: Redis, burst, config):
    from app.app import FarmApp
    from app.source import RedisSource
    from tests.tui.helpers import screen_text

    job_id = farm.submit("demo", {"duration": 0}, name="plain")
    burst()
    connection.hset(f"rq:job:{job_id}", "farm_name", "evil\x1b[2Jname")
    app = FarmApp(RedisSource(config, farm.url), interval=0.2)
    async with app.run_test(size=(160, 40)) as pilot:
        for _ in range(50):
            await pilot.pause(0.1)
            if "evil" in screen_text(app):
                break
        text = screen_text(app)
        assert "evil\\x1b[2Jname" in text and "\x1b" not in text


async def test_the_enqueue_form_survives_hostile_params(farm: Farm, config):
    from app.app import FarmApp
    from app.screens.enqueue import EnqueueScreen
    from app.source import RedisSource

    app = FarmApp(RedisSource(config, farm.url), interval=0.5)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("n")
        for _ in range(30):
            await pilot.pause(0.05)
            if isinstance(app.screen, EnqueueScreen):
                break
        form = app.screen
        assert isinstance(form, EnqueueScreen)
        for text in ("duration=1e400", "duration=" + "9" * 5000, "{" + '"d":' * 3000, "x=" + "[" * 3000):
            form.query_one("#params").value = text
            await pilot.pause(0.1)
            assert form.check() is None and form.error
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert app.is_running
    assert farm.list() == []
