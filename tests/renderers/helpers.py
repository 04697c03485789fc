"""Helpers for the renderer tests: find leftover processes, read media with ffprobe."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


def processes_mentioning(marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = (
                Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            )
            state = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


def ffprobe_json(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


# Scenes for the real-manim tests: Tiny (1.4 s), Longer (3 s), Boom (raises), Slow (80 s).
SCENES = """
from manim import *


class Tiny(Scene):
    def construct(self):
        square = Square()
        self.play(Create(square), run_time=0.4)
        self.play(square.animate.shift(RIGHT), run_time=0.4)
        self.wait(0.2)
        self.play(FadeOut(square), run_time=0.4)


class Longer(Scene):
    def construct(self):
        square = Square()
        self.play(Create(square), run_time=1)
        self.play(square.animate.shift(RIGHT), run_time=1)
        self.play(FadeOut(square), run_time=1)


class Boom(Scene):
    def construct(self):
        self.play(Create(Circle()), run_time=0.2)
        raise ValueError("kaboom from the scene")


class Slow(Scene):
    def construct(self):
        for _ in range(40):
            self.play(Rotate(Square(), angle=1), run_time=2)
"""
