"""cache_inputs while the inputs change: a name swapped between its open and its check is looked up
again (what it leads to by then is judged like any input), never named for a file it no longer
leads to; a symlink flipped in and out as fast as possible never gets a path out of the roots."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError
from renderers import paths
from renderers.ffmpeg import FfmpegRenderer
from renderers.manim import ManimRenderer
from renderers.paths import folder_of, open_confined, resolve_confined
from tests.renderers.test_toctou import SCRIPT, swapping


def swap_after_open(monkeypatch: pytest.MonkeyPatch, times: int, swap: Callable[[], None]) -> list[int]:
    """Make the first ``times`` opens of ``renderers.paths`` run ``swap`` right after opening."""
    opens = [0]
    real_open = paths.open_confined

    def opening(*args: Any, **kwargs: Any) -> int:
        fd = real_open(*args, **kwargs)
        opens[0] += 1
        if opens[0] <= times:
            swap()
        return fd

    monkeypatch.setattr(paths, "open_confined", opening)
    return opens


def replace_with(target: Path, text: str) -> Callable[[], None]:
    def swap() -> None:
        fresh = target.with_name(target.name + ".new")
        fresh.write_text(text)
        os.replace(fresh, target)  # an editor's atomic save: same name, another file

    return swap


def test_a_file_replaced_after_its_open_is_looked_up_again(
    inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = inputs / "a.mp4"
    target.write_text("first")
    opens = swap_after_open(monkeypatch, 1, replace_with(target, "second"))
    assert resolve_confined("a.mp4", [inputs]) == target
    assert opens[0] == 2 and target.read_text() == "second"


def test_a_name_that_keeps_changing_is_refused(inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = inputs / "a.mp4"
    target.write_text("first")
    swap_after_open(monkeypatch, 99, replace_with(target, "again"))
    with pytest.raises(RenderError, match="was moved or replaced while it was being opened") as caught:
        resolve_confined("a.mp4", [inputs])
    assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_a_symlink_swapped_in_after_the_open_is_refused_as_one(
    tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, secret = inputs / "a.mp4", tmp_path / "secret.mp4"
    target.write_text("public")
    secret.write_text("secret")

    def to_symlink() -> None:
        link = inputs / "a.mp4.link"
        link.symlink_to(secret)
        os.replace(link, target)

    swap_after_open(monkeypatch, 1, to_symlink)
    with pytest.raises(RenderError, match="symlinks are not allowed") as caught:
        resolve_confined("a.mp4", [inputs])
    assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_folder_of_a_replaced_file_is_still_its_folder(inputs: Path) -> None:
    (inputs / "scenes").mkdir()
    script = inputs / "scenes" / "intro.py"
    script.write_text("old")
    fd = open_confined("scenes/intro.py", [inputs])
    try:
        replace_with(script, "new")()  # the kernel now calls the open file ".../intro.py (deleted)"
        assert folder_of(fd) == inputs / "scenes"
    finally:
        os.close(fd)


def race(look: Callable[[], list[Path]], check: Callable[[list[Path]], None]) -> tuple[int, int]:
    """Call ``look`` until both outcomes were seen 20 times (10 s at most): (named, refused)."""
    named, refused = 0, 0
    deadline = time.monotonic() + 10
    while (named < 20 or refused < 20) and time.monotonic() < deadline:
        try:
            listed = look()
        except RenderError as exc:
            assert exc.kind is ErrorKind.INVALID_INPUT, exc.message
            refused += 1
            continue
        check(listed)
        named += 1
    return named, refused


def test_ffmpeg_inputs_under_a_symlink_flipper_never_leave_the_roots(
    tmp_path: Path, env: RendererEnv, inputs: Path
) -> None:
    secret, good = tmp_path / "secret.mp4", inputs / "good.mp4"
    secret.write_text("secret")
    good.write_text("public")
    renderer = FfmpegRenderer()
    params = renderer.validate({"input": "x.mp4", "output": "o.mp4"})

    def check(listed: list[Path]) -> None:
        assert listed == [inputs / "x.mp4"]

    with swapping(inputs / "x.mp4", good, secret):
        named, refused = race(lambda: renderer.cache_inputs(params, env), check)
    assert named and refused  # both states were met


def test_manim_inputs_under_a_symlink_flipper_never_leave_the_roots(
    tmp_path: Path, env: RendererEnv, inputs: Path
) -> None:
    secret, good = tmp_path / "evil.py", inputs / "good.py"
    secret.write_text("EVIL = 1\n")
    good.write_text(SCRIPT)
    renderer = ManimRenderer()
    params = renderer.validate({"script": "x.py", "scene": "Other"})

    def check(listed: list[Path]) -> None:
        assert listed[0] == inputs / "x.py" and all(path.parent == inputs for path in listed), listed

    with swapping(inputs / "x.py", good, secret):
        named, refused = race(lambda: renderer.cache_inputs(params, env), check)
    assert named and refused
