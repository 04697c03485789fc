"""Redis goes away under the running app and comes back on the same socket: no crash, then live again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.app import FarmApp
from app.link import LinkState
from app.screens.help import HelpScreen
from app.screens.main import MainScreen
from app.source import RedisSource
from farm.cli.embedded import start_scratch_server
from tests.tui.helpers import POLL, SIZE, main_screen, screen_text, until

pytestmark = pytest.mark.anyio


class DedicatedRedis:
    """A redis-server of this test's own, on a unix socket it can kill and restart."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.sock = tmp / "redis.sock"
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc, _ = start_scratch_server(self.dir)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def dedicated(tmp_path: Path) -> Iterator[DedicatedRedis]:
    server = DedicatedRedis(tmp_path)
    yield server
    server.kill()


async def test_redis_killed_then_restarted(dedicated: DedicatedRedis, config):
    dedicated.start()
    source = RedisSource(config, dedicated.url, who="tui:tester")
    app = FarmApp(source, interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        main = main_screen(app)
        await until(pilot, lambda: main.link.up, what="connected")
        assert "disconnected" not in screen_text(app)
        good = main.last_good

        dedicated.kill()
        await until(pilot, lambda: main.link.state is LinkState.DOWN, what="disconnected state")
        await until(pilot, lambda: "redis DISCONNECTED" in screen_text(app), what="the header says so")
        text = screen_text(app)
        assert "disconnected — retrying" in text and "last good refresh" in text
        assert "redis DISCONNECTED" in text
        frozen = main.link.last_good
        assert frozen is not None and good is not None and frozen >= good

        # The UI still answers keys, and actions fail politely instead of crashing it.
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), timeout=2, what="help while down")
        await pilot.press("escape", "plus")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.pause(2 * POLL)
        assert app.is_running and main.link.state is LinkState.DOWN
        assert main.link.last_good == frozen, "the last good refresh stays what it was while down"

        dedicated.start()
        await until(pilot, lambda: main.link.up, timeout=15, what="live again")
        await until(pilot, lambda: "disconnected" not in screen_text(app), what="banner gone")
        assert main.link.last_good is not None and main.link.last_good > frozen
        await pilot.press("plus")
        await until(pilot, lambda: source.farm.caps().total == 11, what="actions work again")


async def test_starts_while_redis_is_down_and_connects_when_it_comes_up(dedicated: DedicatedRedis, config):
    app = FarmApp(RedisSource(config, dedicated.url), interval=POLL)
    async with app.run_test(size=SIZE) as pilot:
        main = main_screen(app)
        await until(pilot, lambda: main.link.state is LinkState.DOWN, what="down at start")
        await until(pilot, lambda: "no good refresh yet" in screen_text(app), what="the banner says so")
        dedicated.start()
        await until(pilot, lambda: main.link.up, timeout=15, what="connected")
