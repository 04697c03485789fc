"""Renderers used only by tests (registered through config plugins, as teams would)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from farm.render import Params, RenderContext, Renderer


class EchoParams(Params):
    text: str = ""


class EchoRenderer(Renderer):
    """Returns its text; used to test limits and plugins."""

    name = "echo"
    Params = EchoParams

    def render(self, params: EchoParams, ctx: RenderContext) -> dict[str, Any]:
        return {"outputs": [], "text": params.text}


class TreeParams(Params):
    seconds: float = 30.0
    pid_file: str


class TreeRenderer(Renderer):
    """Starts a child process that starts a grandchild, writes their pids, then waits (for kill tests)."""

    name = "tree"
    Params = TreeParams

    def render(self, params: TreeParams, ctx: RenderContext) -> dict[str, Any]:
        code = (
            "import subprocess, sys, time, os;"
            f"g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep({params.seconds})']);"
            f"open({params.pid_file!r}, 'w').write(f'{{os.getpid()}} {{g.pid}}');"
            f"time.sleep({params.seconds})"
        )
        child = subprocess.Popen([sys.executable, "-c", code])
        Path(params.pid_file + ".horse").write_text(str(os.getpid()))
        deadline = time.monotonic() + params.seconds
        while time.monotonic() < deadline and child.poll() is None:
            ctx.progress(50, "waiting on its process tree")
            time.sleep(0.05)
        child.wait()
        return {"outputs": []}


class StampParams(Params):
    seconds: float = 2.0


class StampRenderer(Renderer):
    """Works for ``seconds`` (pure Python, in steps), then writes ``stamp.txt`` naming its attempt
    and pid: the published file tells which attempt won."""

    name = "stamp"
    Params = StampParams
    subprocesses = False

    def render(self, params: StampParams, ctx: RenderContext) -> dict[str, Any]:
        deadline = time.monotonic() + params.seconds
        while time.monotonic() < deadline:
            ctx.progress(50, "stamping")
            time.sleep(0.05)
        (ctx.staging_dir / "stamp.txt").write_text(f"attempt {ctx.attempt} pid {os.getpid()}\n")
        return {"outputs": ["stamp.txt"]}


class FillParams(Params):
    seconds: float = 30.0


class FillRenderer(Renderer):
    """Writes a partial output into its staging dir, then keeps working (to be killed)."""

    name = "fill"
    Params = FillParams

    def render(self, params: FillParams, ctx: RenderContext) -> dict[str, Any]:
        (ctx.staging_dir / "half.bin").write_bytes(b"x" * 4096)
        deadline = time.monotonic() + params.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return {"outputs": ["half.bin"]}


class BigParams(Params):
    size: int = 10


class BigResultRenderer(Renderer):
    """Returns a result of ``size`` bytes of text (to test the stored-result bound)."""

    name = "big"
    Params = BigParams
    subprocesses = False

    def render(self, params: BigParams, ctx: RenderContext) -> dict[str, Any]:
        return {"outputs": [], "blob": "x" * params.size}
