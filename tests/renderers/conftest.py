"""Fixtures for the renderer tests: input roots, staging dirs, contexts, real tools, a test clip."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.render import RendererEnv, SimpleContext
from tests.renderers.http_server import FakeService, serve
from tests.util import require_tool

ContextFactory = Callable[..., SimpleContext]


@pytest.fixture
def env(tmp_path: Path) -> RendererEnv:
    """A farm environment inside tmp_path: one input root plus data/output/log dirs."""
    for name in ("inputs", "staging", "data", "output", "logs"):
        (tmp_path / name).mkdir()
    return RendererEnv(
        data_dir=tmp_path / "data",
        output_dir=tmp_path / "output",
        input_roots=(tmp_path / "inputs",),
        log_dir=tmp_path / "logs",
    )


@pytest.fixture
def inputs(env: RendererEnv) -> Path:
    return env.input_roots[0]


@pytest.fixture
def staging(tmp_path: Path, env: RendererEnv) -> Path:
    return tmp_path / "staging"


@pytest.fixture
def make_ctx(env: RendererEnv, staging: Path) -> ContextFactory:
    """Build a SimpleContext writing into the test's staging dir."""

    def build(**kwargs: Any) -> SimpleContext:
        kwargs.setdefault("job_id", "job-1")
        return SimpleContext(staging_dir=staging, env=env, **kwargs)

    return build


@pytest.fixture(scope="session")
def manim_exe() -> str:
    """The manim CLI of this venv (or on PATH); skipped when absent, failed in CI."""
    beside = Path(sys.executable).with_name("manim")
    if beside.exists():
        return str(beside)
    return require_tool("manim")


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    require_tool("ffprobe")
    return require_tool("ffmpeg")


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> Path:
    """Test clips made once with ffmpeg's lavfi sources: 2 s and 4 s, 320x240, with audio."""
    folder = tmp_path_factory.mktemp("clips")
    for seconds, size in ((2, "320x240"), (4, "640x360")):
        subprocess.run(
            [
                ffmpeg_exe, "-nostdin", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate=25",
                "-f", "lavfi", "-i", f"sine=duration={seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                "-shortest", str(folder / f"clip{seconds}.mp4"),
            ],
            check=True,
        )  # fmt: skip
    return folder


@pytest.fixture
def clips(clip_dir: Path, inputs: Path) -> Path:
    """The test clips copied into this test's input root (as clip2.mp4 and clip4.mp4)."""
    for clip in clip_dir.iterdir():
        shutil.copy(clip, inputs / clip.name)
    return inputs


@pytest.fixture(scope="session")
def http_service() -> Iterator[FakeService]:
    """A real HTTP server on 127.0.0.1 (random port) playing every kind of render service."""
    with serve() as service:
        yield service


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def children_before() -> set[int]:
    """This process's descendants before the test (e.g. the session's redis-server): a test that
    must leave no process behind compares against these."""
    from renderers.proc import descendants

    return set(descendants(os.getpid()))
