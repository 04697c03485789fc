"""Symlink swaps racing real renders: a thread keeps flipping an input between an in-root file and a
symlink to a secret outside the roots while renders run; the secret must never reach an output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError, SimpleContext
from renderers.command import CommandRenderer, CommandSettings
from renderers.ffmpeg import FfmpegRenderer, FfmpegSettings
from renderers.manim import ManimRenderer, ManimSettings
from tests.renderers.helpers import ffprobe_json

SCRIPT = "from manim import *\n\n\nclass Other(Scene):\n    pass\n"


FLIPPER = """
import os, random, sys, time
target, good, secret = sys.argv[1:4]
link_tmp, file_tmp = target + ".swap-link", target + ".swap-file"
flips = 0
while not os.path.exists(target + ".stop"):
    os.symlink(secret, link_tmp)
    os.replace(link_tmp, target)
    time.sleep(random.uniform(0, 0.001))  # hold each state a while: the two last about as long
    os.link(good, file_tmp)
    os.replace(file_tmp, target)
    time.sleep(random.uniform(0, 0.001))
    flips += 1
print(flips)
"""


@contextmanager
def swapping(target: Path, good: Path, secret: Path) -> Iterator[list[int]]:
    """Flip ``target`` between a hard link to ``good`` (a plain in-root file) and a symlink to
    ``secret``, atomically (rename over it) and as fast as possible, until the block ends.

    The flipping runs in a process of its own so it never waits for this one's GIL."""
    flips = [0]
    os.link(good, target)
    flipper = subprocess.Popen([sys.executable, "-c", FLIPPER, str(target), str(good), str(secret)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        yield flips
    finally:
        Path(f"{target}.stop").touch()
        out, _ = flipper.communicate(timeout=10)
        flips[0] = int(out)


def fresh_ctx(env: RendererEnv, tmp_path: Path, run: int) -> SimpleContext:
    staging = tmp_path / f"staging-{run}"
    staging.mkdir()
    return SimpleContext(job_id=f"race-{run}", staging_dir=staging, env=env)


def test_cp_template_never_copies_the_secret(env: RendererEnv, inputs: Path, tmp_path: Path) -> None:
    cp = shutil.which("cp")
    assert cp is not None
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n")
    good = inputs / "good.txt"
    good.write_text("public data\n")
    templates = {"copy": {"argv": [cp, "{src}", "{out}"], "vars": {"src": "path", "out": "output"}}}
    renderer = CommandRenderer(CommandSettings.model_validate({"templates": templates}), env)
    params = renderer.validate({"template": "copy", "vars": {"src": "x.txt", "out": "copy.txt"}})
    copied, refused = [], 0
    with swapping(inputs / "x.txt", good, secret) as flips:
        for run in range(40):
            ctx = fresh_ctx(env, tmp_path, run)
            try:
                renderer.render(params, ctx)
            except RenderError as exc:
                assert exc.kind is ErrorKind.INVALID_INPUT, exc.message  # the swap was caught
                refused += 1
                continue
            copied.append((ctx.staging_dir / "copy.txt").read_text())
    assert copied and refused  # the swapper really raced the renders: both states were met
    assert all(text == "public data\n" for text in copied), copied
    print(f"cp race: {len(copied)} copies of the public file, {refused} refused, {flips[0]} flips")


@pytest.mark.ffmpeg
def test_ffmpeg_transcode_never_reads_the_secret(
    ffmpeg_exe: str, env: RendererEnv, clip_dir: Path, inputs: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.mp4"  # 640x360, outside the roots
    shutil.copy(clip_dir / "clip4.mp4", secret)
    good = inputs / "good.mp4"  # 320x240
    shutil.copy(clip_dir / "clip2.mp4", good)
    renderer = FfmpegRenderer(FfmpegSettings(executable=ffmpeg_exe), env)
    params = renderer.validate({"input": "x.mp4", "output": "o.mkv", "video_codec": "copy", "audio": "copy"})
    widths = []
    with swapping(inputs / "x.mp4", good, secret):
        for run in range(10):
            ctx = fresh_ctx(env, tmp_path, run)
            try:
                renderer.render(params, ctx)
            except RenderError as exc:
                assert exc.kind is ErrorKind.INVALID_INPUT, exc.message  # the swap was caught
                continue
            widths.append(ffprobe_json(ctx.staging_dir / "o.mkv")["streams"][0]["width"])
    assert widths and set(widths) == {320}, widths


@pytest.mark.manim
def test_manim_never_runs_the_outside_script(
    manim_exe: str, env: RendererEnv, inputs: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "outside-script-ran"
    secret = tmp_path / "evil.py"  # outside the roots; importing it leaves a marker
    secret.write_text(f"open({str(marker)!r}, 'w').close()\n" + SCRIPT)
    good = inputs / "good.py"
    good.write_text(SCRIPT)
    renderer = ManimRenderer(ManimSettings(executable=manim_exe))
    params = renderer.validate({"script": "x.py", "scene": "Nope", "quality": "low"})
    ran = 0
    with swapping(inputs / "x.py", good, secret):
        for run in range(30):  # most runs meet the link and are refused early; 3 must reach manim
            with pytest.raises(RenderError) as caught:  # no scene "Nope": manim fails after the import
                renderer.render(params, fresh_ctx(env, tmp_path, run))
            assert caught.value.kind is ErrorKind.INVALID_INPUT
            if "Nope is not in the script" in caught.value.message:
                ran += 1
                if ran == 3:
                    break
    assert ran == 3  # manim really imported the (in-root) script, three times
    assert not marker.exists()
