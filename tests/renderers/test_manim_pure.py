"""manim renderer, pure tier: argv, params, progress parsing and error text from recorded output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError, SimpleContext
from renderers.manim import (
    COMBINING,
    READY,
    RENDER_SHARE,
    ManimParams,
    ManimRenderer,
    ProgressTracker,
    build_argv,
    count_animations,
    error_message,
    failure,
    overall_percent,
    parse_progress,
)
from renderers.proc import ProcResult

# Recorded from `manim render -ql --progress_bar leave` (manim 0.22, COLUMNS=200, stripped).
TRANSCRIPT = [
    "Manim Community v0.22.0",
    "Animation 0: Write(Text('Hi')):   0%|          | 0/30 [00:00<?, ?it/s]",
    "Animation 0: Write(Text('Hi')):  53%|█████▎    | 16/30 [00:00<00:00, 153.80it/s]",
    "Animation 0: Write(Text('Hi')): 100%|██████████| 30/30 [00:00<00:00, 102.57it/s]",
    "[11/23/26 12:36:32] INFO     Animation 0 : Partial movie file written in "
    "'/m/videos/s/480p15/partial_movie_files/Longer/3196.mp4'      scene_file_writer.py:173",
    "            INFO     Animation 1 : Partial movie file written in '/m/p/1.mp4' scene_file_writer.py:173",
    "Animation 2: FadeOut(Text('Hi')):   0%|          | 0/15 [00:00<?, ?it/s]",
    "Animation 2: FadeOut(Text('Hi')): 100%|██████████| 15/15 [00:00<00:00, 135.61it/s]",
    "            INFO     Animation 2 : Partial movie file written in '/m/p/2.mp4' scene_file_writer.py:173",
    "                    INFO     Combining to Movie file.                          scene_file_writer.py:877",
    "            INFO                                                       scene_file_writer.py:999",
    "                             File ready at '/m/videos/s/480p15/Longer.mp4'",
    "                    INFO     Rendered Longer                                    manager.py:226",
    "                             Played 3 animations",
]

BOOM = [
    "Manim Community v0.22.0",
    "╭─────────────────────────────── Traceback (most recent call last) ────────────────────────────────╮",
    "│ /venv/lib/python3.11/site-packages/manim/manager.py:193 in construct                             │",
    "│ ❱ 193 │   │   self.scene.construct()                                                             │",
    "│ /work/inputs/scene.py:14 in construct                                                            │",
    "│   12 class Boom(Scene):                                                                          │",
    '│ ❱ 14 │   │   raise ValueError("kaboom from scene")                                               │',
    "╰──────────────────────────────────────────────────────────────────────────────────────────────────╯",
    "ValueError: kaboom from scene",
]

NO_SUCH_SCENE = [
    "Manim Community v0.22.0",
    "[11/23/26 12:47:59] ERROR                                                         module_ops.py:103",
    "                                Nope is not in the script",
    "1: Boom",
    "2: Tiny",
    "Choose number corresponding to desired scene/arguments.",
    '(Use comma separated list for multiple entries or use "*" to select all scenes.)',
    "Choice(s):",
]

SYNTAX = [
    "╭──────────────────────────────────────────────────────────────────────────────────────────────────╮",
    "│  /work/inputs/bad.py:2                                                                           │",
    "│ class A(Scene)                                                                                   │",
    "╰──────────────────────────────────────────────────────────────────────────────────────────────────╯",
    "SyntaxError: expected ':'",
]


def params(**overrides: Any) -> ManimParams:
    values: dict[str, Any] = {"script": "scenes/intro.py", "scene": "Intro", "quality": "low"}
    values.update(overrides)
    return ManimParams.model_validate(values)


@pytest.mark.parametrize(
    ("quality", "flag"),
    [("low", "-ql"), ("medium", "-qm"), ("high", "-qh"), ("production", "-qp"), ("4k", "-qk")],
)
def test_build_argv_quality_flags(quality: str, flag: str) -> None:
    argv = build_argv(params(quality=quality), Path("/in/scenes/intro.py"), Path("/stage/.media"))
    assert argv[:3] == ["manim", "render", flag]


def test_build_argv_shape() -> None:
    argv = build_argv(
        params(format="webm"), Path("/in/scenes/intro.py"), Path("/stage/.media"), executable="/opt/manim"
    )
    assert argv[0] == "/opt/manim"
    assert argv[-2:] == ["/in/scenes/intro.py", "Intro"]
    assert argv[argv.index("--format") + 1] == "webm"
    assert argv[argv.index("--media_dir") + 1] == "/stage/.media"
    assert argv[argv.index("-o") + 1] == "Intro"
    assert "--silent" in argv  # no PyPI version check after each render
    assert argv[argv.index("--progress_bar") + 1] == "leave"
    assert "--dry_run" not in argv


def test_build_argv_dry_run_for_counting() -> None:
    argv = build_argv(params(), Path("/in/s.py"), Path("/m"), dry_run=True)
    assert "--dry_run" in argv
    assert argv[argv.index("--progress_bar") + 1] == "none"


def test_params_defaults() -> None:
    parsed = ManimParams.model_validate({"script": "s.py", "scene": "S"})
    assert (parsed.quality, parsed.format) == ("high", "mp4")


@pytest.mark.parametrize(
    "bad",
    [
        {"scene": "-h"},
        {"scene": "--write_all"},
        {"scene": "Intro; rm -rf /"},
        {"scene": "Intro Other"},
        {"scene": "1Intro"},
        {"scene": ""},
        {"script": "../outside.py"},
        {"script": "scenes/../../outside.py"},
        {"script": "scenes/intro.txt"},
        {"script": "scenes/\x00.py"},
        {"script": "scenes/\ud800.py"},  # manim's argv could not carry it
        {"script": ""},
        {"quality": "ultra"},
        {"format": "avi"},
        {"preview": True},
    ],
)
def test_params_refuse_hostile_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        params(**bad)


def test_validate_is_pure_and_checks_absolute_paths_against_roots() -> None:
    env = RendererEnv(Path("/nonexistent/data"), Path("/o"), (Path("/nonexistent/inputs"),), Path("/l"))
    renderer = ManimRenderer(env=env)
    assert renderer.validate({"script": "/nonexistent/inputs/a.py", "scene": "A"}).scene == "A"
    with pytest.raises(RenderError) as caught:
        renderer.validate({"script": "/etc/evil.py", "scene": "A"})
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    # without an env (a submitter without config) the lexical part still runs
    with pytest.raises(ValidationError):
        ManimRenderer().validate({"script": "../a.py", "scene": "A"})


def test_parse_progress_bar_lines() -> None:
    percent, stage = parse_progress("Animation 0: Write(Text('Hi')):  50%|█████     | 15/30 [00:00<00:00]")
    assert stage == "Animation 1: Write(Text('Hi'))"
    assert percent == pytest.approx(overall_percent(0.5, None))
    percent, stage = parse_progress(
        "Animation 2: Create(Circle): 100%|██████████| 5/5 [00:00<00:00]", total=7
    )
    assert stage == "Animation 3/7: Create(Circle)"
    assert percent == pytest.approx(RENDER_SHARE * 3 / 7)


def test_parse_progress_description_with_colons() -> None:
    _, stage = parse_progress(
        "Animation 4: Write(Text('a: b')):  10%|#         | 1/10 [00:00<?, ?it/s]", total=9
    )
    assert stage == "Animation 5/9: Write(Text('a: b'))"


def test_parse_progress_log_lines() -> None:
    assert parse_progress(TRANSCRIPT[5]) == (pytest.approx(overall_percent(2, None)), None)
    assert parse_progress("INFO  Animation 3 : Using cached data (hash : 1_2_3)", total=8) == (
        pytest.approx(RENDER_SHARE * 4 / 8),
        None,
    )
    assert parse_progress(TRANSCRIPT[9]) == (COMBINING, "combining movie file")
    assert parse_progress(TRANSCRIPT[11]) == (READY, "file ready")
    for noise in ("Manim Community v0.22.0", "", "INFO     Caching disabled.", "Animation 3 is great"):
        assert parse_progress(noise) == (None, None)


def test_overall_percent_is_monotonic_and_bounded() -> None:
    for total in (None, 1, 7, 100):
        values = [overall_percent(step / 4, total) for step in range(0, 4 * 150)]
        assert values == sorted(values)
        assert values[0] == 0.0 and values[-1] <= RENDER_SHARE
    assert overall_percent(9, 7) == RENDER_SHARE  # more animations than counted: clamp, never go back


def test_tracker_reports_forward_moves_only_and_ends_at_ready() -> None:
    ctx = SimpleContext("j", Path("/unused"), RendererEnv(Path("/d"), Path("/o"), (), Path("/l")))
    tracker = ProgressTracker(ctx)
    for line in TRANSCRIPT:
        tracker.feed(line)
    percents = [percent for percent, _ in ctx.progress_calls if percent is not None]
    assert percents == sorted(percents)
    assert percents[-1] == READY
    stages = [stage for _, stage in ctx.progress_calls]
    assert "Animation 1: Write(Text('Hi'))" in stages and "Animation 3: FadeOut(Text('Hi'))" in stages
    assert tracker.animations == 3
    assert count_animations(TRANSCRIPT) == 3


def test_error_message_from_a_scene_that_raises() -> None:
    assert error_message(BOOM) == "ValueError: kaboom from scene (scene.py:14 in construct)"


def test_error_message_for_a_missing_scene_lists_the_choices() -> None:
    message = error_message(NO_SUCH_SCENE)
    assert message.startswith("Nope is not in the script")
    assert "Boom" in message and "Choice" not in message and "module_ops.py" not in message


def test_error_message_syntax_error_and_fallback() -> None:
    assert error_message(SYNTAX) == "SyntaxError: expected ':' (bad.py:2)"
    assert error_message(["something odd", "happened here"]) == "something odd | happened here"
    assert error_message([]) == "manim gave no message"


def test_failure_kinds() -> None:
    assert failure(ProcResult(1, tuple(BOOM), 1.0)).kind is ErrorKind.INVALID_INPUT
    assert failure(ProcResult(-9, tuple(BOOM), 1.0)).kind is ErrorKind.UNKNOWN
    assert failure(ProcResult(1, ("MemoryError",), 1.0)).kind is ErrorKind.UNKNOWN
    assert "kaboom" in failure(ProcResult(1, tuple(BOOM), 1.0)).message
