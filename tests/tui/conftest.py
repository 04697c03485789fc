"""Fixtures for the TUI tier: the app on the session's real Redis, or on a fixed busy-farm snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from app.app import FarmApp
from app.clock import FixedClock
from app.source import FixedSource, RedisSource
from farm.config import FarmConfig
from tests.tui import data
from tests.tui.helpers import POLL


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def live_app(config: FarmConfig, redis_url: str) -> Iterator[Callable[[], FarmApp]]:
    """Build apps that read the test's Redis and act as ``tui:tester``."""
    sources: list[RedisSource] = []

    def make() -> FarmApp:
        source = RedisSource(config, redis_url, who="tui:tester")
        sources.append(source)
        return FarmApp(source, interval=POLL)

    yield make
    for source in sources:
        source.close()


@pytest.fixture
def fixed_source() -> FixedSource:
    return FixedSource(
        data.busy_snapshot(),
        jobs={data.DETAIL.id: data.DETAIL},
        logs={data.DETAIL.id: data.DETAIL_LOG},
        workers=data.WORKERS,
    )


@pytest.fixture
def fixed_app(fixed_source: FixedSource) -> FarmApp:
    return FarmApp(
        fixed_source, clock=FixedClock(data.AT), interval=POLL, title="farm · unix:///demo/redis.sock"
    )
