"""End to end in a real terminal: ``farm up --demo`` in tmux shows the TUI; ``q`` stops everything."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.util import require_tool, wait_for, write_toml


class Tmux:
    """A tmux server of this test's own (private socket), 160x48."""

    def __init__(self, socket: Path) -> None:
        self.base = [require_tool("tmux"), "-S", str(socket)]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, check=check)

    def screen(self) -> str:
        result = self("capture-pane", "-p", "-t", "farm", check=False)
        return result.stdout if result.returncode == 0 else ""

    def running(self) -> bool:
        return self("has-session", "-t", "farm", check=False).returncode == 0


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes: keep the farm's data dir short.
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"farm-tui-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    yield path
    for pid in processes_mentioning(str(path)):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def test_farm_up_shows_the_tui_and_q_stops_the_farm(short_dir: Path, tmp_path: Path):
    config = tmp_path / "farm.toml"
    write_toml(config, {"paths": {"data_dir": str(short_dir / "data")}, "caps": {"windows": []}})
    tmux = Tmux(short_dir / "tmux.sock")
    command = f"{sys.executable} -m farm --config {config} up --demo --workers 2"
    env = {k: v for k, v in os.environ.items() if k not in ("FARM_REDIS_URL", "FARM_CONFIG", "TMUX")}
    subprocess.run(
        [*tmux.base, "new-session", "-d", "-s", "farm", "-x", "160", "-y", "48", command],
        env=env,
        check=True,
    )
    try:
        wait_for(lambda: "redis connected" in tmux.screen(), timeout=20, what="the TUI on a live farm")
        wanted = ("jobs:", "scheduler alive", "workers 2 alive", " running ")
        wait_for(lambda: all(w in tmux.screen() for w in wanted), timeout=20, what="demo jobs running")
        screen = tmux.screen()
        assert "n New" in screen.splitlines()[-1]
        tmux("send-keys", "-t", "farm", "q")
        wait_for(lambda: not tmux.running(), timeout=30, what="farm up to stop after q")
        wait_for(lambda: not processes_mentioning(str(short_dir)), timeout=10, what="no farm process left")
    finally:
        tmux("kill-server", check=False)


def test_farm_up_restarts_its_redis_after_a_kill_and_the_header_shows_it(short_dir: Path, tmp_path: Path):
    config = tmp_path / "farm.toml"
    data = short_dir / "data"
    write_toml(config, {"paths": {"data_dir": str(data)}, "caps": {"windows": []}})
    tmux = Tmux(short_dir / "tmux.sock")
    command = f"{sys.executable} -m farm --config {config} up --demo --workers 2"
    env = {k: v for k, v in os.environ.items() if k not in ("FARM_REDIS_URL", "FARM_CONFIG", "TMUX")}
    subprocess.run(
        [*tmux.base, "new-session", "-d", "-s", "farm", "-x", "160", "-y", "48", command],
        env=env,
        check=True,
    )
    try:
        wait_for(lambda: "workers 2 alive" in tmux.screen(), timeout=30, what="a live farm")
        pid = int((data / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: (data / "redis.pid").exists() and int((data / "redis.pid").read_text()) != pid,
            timeout=10,
            what="a new redis-server",
        )
        wait_for(lambda: "restarted" in tmux.screen(), timeout=20, what="the header to show the restart")
        wait_for(lambda: "workers 2 alive" in tmux.screen(), timeout=20, what="workers back")
        logs = "".join(p.read_text(errors="replace") for p in (data / "logs").glob("*.log"))
        assert "embedded Redis exited" in logs and "restarting it" in logs
        tmux("send-keys", "-t", "farm", "q")
        wait_for(lambda: not tmux.running(), timeout=30, what="farm up to stop after q")
        wait_for(lambda: not processes_mentioning(str(short_dir)), timeout=10, what="no farm process left")
    finally:
        tmux("kill-server", check=False)
