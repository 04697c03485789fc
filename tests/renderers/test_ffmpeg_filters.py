"""The raw preset's filter option lists checked against the installed ffmpeg, and the
``debug_kdtree`` attack run for real: refused by validate(), while ordinary graphs still render."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError
from renderers.ffmpeg import FfmpegRenderer, FfmpegSettings
from renderers.ffmpeg_filters import ALLOWED, COMMON_OPTIONS
from renderers.ffmpeg_params import FfmpegParams
from tests.renderers.conftest import ContextFactory
from tests.renderers.helpers import ffprobe_json

pytestmark = pytest.mark.ffmpeg

_OPTION = re.compile(r"^   (\S+)\s+<(\w+)>\s+\S+\s*(.*)$")  # "   name   <type>   ..FV...  help"
_FILEISH = re.compile(r"\b(file|filename|path|url|device|dev)\b", re.IGNORECASE)


def ffmpeg_options(ffmpeg: str, name: str) -> list[tuple[str, str, str, bool]]:
    """(name, type, help, is_alias) per option of ``ffmpeg -h filter=name``, in table order.

    An alias (``w`` and ``width``) is printed right after its option with the same type and help;
    ffmpeg skips aliases when it hands out unnamed values."""
    text = subprocess.run(
        [ffmpeg, "-hide_banner", "-h", f"filter={name}"], capture_output=True, text=True, check=True
    ).stdout
    options: list[tuple[str, str, str, bool]] = []
    for line in text.splitlines():
        found = _OPTION.match(line)
        if found:
            option, kind, help_text = found.groups()
            alias = bool(options) and options[-1][1:3] == (kind, help_text)
            options.append((option, kind, help_text, alias))
    return options


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_filter_option_lists_match_the_installed_ffmpeg(ffmpeg_exe: str, name: str) -> None:
    unnamed, allowed = ALLOWED[name]
    options = ffmpeg_options(ffmpeg_exe, name)
    listed = {option for option, *_ in options}
    assert allowed - COMMON_OPTIONS <= listed, f"not options of {name}: {allowed - COMMON_OPTIONS - listed}"
    # the options unnamed values land on (aliases skipped) must all be allowed ones
    targets = [option for option, _, _, alias in options if not alias][:unnamed]
    assert len(targets) == unnamed and set(targets) <= allowed, (name, targets)
    for option, kind, help_text, _ in options:
        if kind == "string" and _FILEISH.search(help_text):
            assert option not in allowed, f"{name}:{option} looks like it names a file: {help_text}"


ATTACKS = [
    "split[a][b];[a]palettegen[p];[b][p]paletteuse=debug_kdtree={target}",
    "split[a][b];[a]palettegen[p];[b][p]paletteuse=bayer:2:0:0:128:0:{target}",  # 7th unnamed value
]


@pytest.mark.parametrize("graph", ATTACKS)
def test_the_kdtree_option_really_writes_any_file(ffmpeg_exe: str, tmp_path: Path, graph: str) -> None:
    """The control for the test below: given to ffmpeg, each graph creates the file it names."""
    target = tmp_path / "pwned.dot"
    graph = graph.format(target=target)
    subprocess.run(
        [ffmpeg_exe, "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=d=0.2:s=32x32:r=5",
         "-filter_complex", graph, str(tmp_path / "o.gif")],
        check=True,
    )  # fmt: skip
    assert target.exists()


@pytest.mark.parametrize("graph", ATTACKS)
def test_kdtree_attack_is_refused_by_validate(
    ffmpeg_exe: str, env: RendererEnv, clips: Path, tmp_path: Path, make_ctx: ContextFactory, graph: str
) -> None:
    target = tmp_path / "pwned.dot"
    renderer = FfmpegRenderer(FfmpegSettings(executable=ffmpeg_exe), env)
    args = ["-i", "clip2.mp4", "-filter_complex", graph.format(target=target), "o.gif"]
    params = {"preset": "raw", "args": args}
    with pytest.raises(ValidationError, match="debug_kdtree|at most 1 unnamed"):
        renderer.validate(params)  # what submit and the TUI form call
    with pytest.raises(RenderError) as caught:  # and the worker, were it handed the job anyway
        renderer.render(FfmpegParams.model_construct(preset="raw", args=tuple(args)), make_ctx())
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert not target.exists()


def test_ordinary_graphs_still_render(
    ffmpeg_exe: str, env: RendererEnv, clips: Path, staging: Path, make_ctx: ContextFactory
) -> None:
    renderer = FfmpegRenderer(FfmpegSettings(executable=ffmpeg_exe), env)
    graph = (
        "[0:v]fps=5,scale=w=96:h=-2:flags=lanczos,format=rgb24,split[a][b];"
        "[a]palettegen=max_colors=32:stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=3[out]"
    )
    args = ["-t", "1", "-i", "clip2.mp4", "-filter_complex", graph, "-map", "[out]", "anim.gif"]
    result = renderer.render(renderer.validate({"preset": "raw", "args": args}), make_ctx())
    assert result["outputs"] == ["anim.gif"]
    stream = ffprobe_json(staging / "anim.gif")["streams"][0]
    assert (stream["codec_name"], stream["width"]) == ("gif", 96)
