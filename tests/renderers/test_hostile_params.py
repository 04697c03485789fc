"""Property tests: ``validate()`` of every built-in renderer, fed any JSON-like params (odd unicode,
lone surrogates, huge numbers, NaN, deep nesting), returns a model or raises only pydantic's
ValidationError or a one-line RenderError, the two errors submit and the TUI form turn into
"bad input". Pure: validate() touches no disk and no network."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from farm.render import Renderer, RendererEnv, RenderError
from renderers.command import CommandRenderer, CommandSettings
from renderers.demo import DemoRenderer
from renderers.ffmpeg import FfmpegRenderer
from renderers.http import HttpRenderer, HttpSettings
from renderers.manim import ManimRenderer

ENV = RendererEnv(Path("/d"), Path("/o"), (Path("/srv/in"),), Path("/l"))
SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

CHARS = st.characters() | st.characters(categories=["Cs"]) | st.characters(max_codepoint=0x9F)
TEXT = st.text(CHARS, max_size=30)
NASTY_TEXT = st.sampled_from([
    "", "-1", "--help", "../../etc/passwd", "/etc/passwd", "/srv/in/x.mp4", "a\x00b", "\ud800", "\udcff.py",
    "x" * 5000, "1e400", "-1e400", "nan", "-0", "9" * 5000, "scale=/w=/etc/passwd", "http://h/x.mp4",
    "paletteuse=debug_kdtree=/tmp/x", "{other}", "line\nbreak", "ok.py", "Scene1",
])  # fmt: skip
# huge ints are built lazily: even repr() of one past 4300 digits raises (Python's int-to-str limit)
HUGE_INTS = st.integers(min_value=300, max_value=6000).map(lambda digits: 10**digits)
NUMBERS = (
    st.integers()
    | st.floats()
    | HUGE_INTS
    | HUGE_INTS.map(lambda value: -value)
    | st.sampled_from([2**63, -(2**63) - 1, math.nan, math.inf, -math.inf, -0.0, 1e308])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT | NASTY_TEXT
# the values that broke validate() before: drawn often, not left to chance
WORST = st.sampled_from(
    ["\ud800", "\udcff.py", "x\ud800y.mp4", -1, -0.0, math.nan, math.inf]
) | st.sampled_from([309, 400, 4301, 5000]).map(lambda digits: 10**digits)


class Deep(dict[str, Any]):
    """The outside of a deeply nested value, with a short repr (Hypothesis prints examples)."""

    depth = 0

    def __repr__(self) -> str:
        return f"nest({self.depth})"


def nest(depth: int, leaf: Any = 1) -> Any:
    """``depth`` levels of alternating lists and dicts around ``leaf``."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    outside = Deep(k=value)
    outside.depth = depth + 1
    return outside


DEEP = st.integers(min_value=1, max_value=5000).map(nest)
JSON = st.recursive(
    SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4), max_leaves=12
)
VALUES = JSON | DEEP


def params(fields: list[str], **fixed: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with some of ``fields`` (and junk keys) set to hostile values, ``fixed`` ones forced."""
    keys = st.sampled_from(fields) | TEXT if fields else TEXT
    loose = st.dictionaries(keys, VALUES, max_size=3)
    return st.tuples(loose, st.fixed_dictionaries(fixed)).map(lambda pair: {**pair[0], **pair[1]})


def one_off(good: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``good`` (valid params) with one of its keys set to a hostile value, or one junk key
    added: so the checks behind every field get reached, not just the first one to fail."""
    hostile = WORST | SCALARS | VALUES
    changed = st.tuples(st.sampled_from(sorted(good)), hostile).map(lambda pair: {**good, pair[0]: pair[1]})
    junk = st.tuples(TEXT, hostile).map(lambda pair: {**good, pair[0]: pair[1]})
    return changed | junk


def leaves(value: Any) -> list[Any]:
    """Every scalar in a model dump (dict keys included), walked without recursion."""
    found, todo = [], [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend([*item.keys(), *item.values()])
        elif isinstance(item, list | tuple):
            todo.extend(item)
        else:
            found.append(item)
    return found


def check(renderer: Renderer, given_params: dict[str, Any]) -> None:
    try:
        model = renderer.validate(given_params)
        # what it accepts must be renderable: argv, file names and JSON bodies carry UTF-8 text
        # and numbers that have a finite decimal form
        for leaf in leaves(model.model_dump()):
            if isinstance(leaf, str):
                leaf.encode("utf-8")
            elif isinstance(leaf, float):
                assert math.isfinite(leaf), leaf
            elif isinstance(leaf, int):
                str(leaf)
    except ValidationError as exc:
        str(exc)  # what submit and the CLI show must be printable too
        exc.errors(include_url=False)
    except RenderError as exc:
        assert "\n" not in exc.message and len(exc.message) < 2000, exc.message
    except Exception as exc:  # anything else is the bug; say what it was in a line
        raise AssertionError(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def property_test(renderer: Renderer, strategy: st.SearchStrategy[dict[str, Any]]) -> Callable[[], None]:
    @SETTINGS
    @given(strategy)
    def run(given_params: dict[str, Any]) -> None:
        check(renderer, given_params)

    return run


def test_demo() -> None:
    good = {"duration": 1.5, "stages": 3, "fail_with": "timeout", "fail_attempts": 2}
    property_test(DemoRenderer(env=ENV), one_off(good) | params(list(good)))()


def test_manim() -> None:
    good = {"script": "scenes/intro.py", "scene": "Intro", "quality": "low", "format": "mp4"}
    odd_script = TEXT.map(lambda text: {**good, "script": text + ".py"})
    property_test(ManimRenderer(env=ENV), one_off(good) | odd_script | params(list(good)))()


def test_ffmpeg_presets() -> None:
    presets = [
        {"input": "clip.mp4", "output": "o.mp4", "video_codec": "libx264", "crf": 20, "scale": "-2:720"},
        {"preset": "concat", "inputs": ["a.mp4", "/srv/in/b.mp4"], "output": "o.mp4", "audio": "aac"},
        {"preset": "thumbnail", "input": "clip.mp4", "output": "t.png", "time": 1.5},
    ]
    odd_paths = st.tuples(TEXT, TEXT).map(
        lambda pair: {**presets[0], "input": pair[0], "output": pair[1] + ".mp4"}
    )
    strategy = st.one_of(*(one_off(good) for good in presets)) | odd_paths
    property_test(FfmpegRenderer(env=ENV), strategy)()


RAW_WORDS = st.sampled_from([
    "-i", "-f", "-vf", "-af", "-filter_complex", "-lavfi", "-t", "-c", "-c:v", "-map", "-metadata", "-ss",
    "-stream_loop", "-/vf", "-an", "-y", "out.mp4", "in.mp4", "scale=2:2", "paletteuse=a:b:c:d:e:f:g",
    "split[a][b];[a]palettegen[p];[b][p]paletteuse", "fps=1e400", "mp4", "lavfi", "-1", "9" * 3000,
])  # fmt: skip


def test_ffmpeg_raw_args() -> None:
    good = ["-ss", "1", "-i", "in.mp4", "-vf", "scale=2:2", "-t", "3", "out.mp4"]
    swapped = st.tuples(
        st.integers(0, len(good) - 1), WORST.filter(lambda v: isinstance(v, str)) | RAW_WORDS | TEXT
    )
    one_word = swapped.map(lambda pair: [*good[: pair[0]], pair[1], *good[pair[0] + 1 :]])
    words = st.lists(RAW_WORDS | TEXT | NASTY_TEXT, max_size=10)
    args = one_word | words | VALUES
    property_test(FfmpegRenderer(env=ENV), params([], preset=st.just("raw"), args=args))()


def test_http_payloads() -> None:
    services = {
        "orch": {"base_url": "http://127.0.0.1:1"},
        "raw": {"base_url": "http://127.0.0.1:1", "preset": "generic"},
    }
    renderer = HttpRenderer(HttpSettings.model_validate({"services": services}), ENV)
    good = {"job_type": "doubt", "input": "why?", "style": "chalk", "length": 60, "voice": "en"}
    payloads = one_off(good) | st.dictionaries(TEXT, VALUES, max_size=4) | VALUES
    strategy = params([], service=st.sampled_from(["orch", "raw"]) | TEXT, payload=payloads)
    property_test(renderer, strategy)()


def test_command_vars() -> None:
    templates = {
        "t": {
            "argv": ["tool", "{s}", "--n={n}", "{n2}", "{f}", "{src}", "{out}", "{c}"],
            "vars": {
                "s": "str",
                "n": "int",
                "n2": "int",
                "f": "float",
                "src": "path",
                "out": "output",
                "c": ["a", "b"],
            },
        }
    }
    renderer = CommandRenderer(CommandSettings.model_validate({"templates": templates}), ENV)
    good = {"s": "hi", "n": -3, "n2": 4, "f": 1.5, "src": "a.txt", "out": "o.txt", "c": "a"}
    strategy = params([], template=st.just("t"), vars=one_off(good)) | params(["template", "vars"])
    property_test(renderer, strategy)()


def command_renderer() -> CommandRenderer:
    template = {"argv": ["tool", "{n}", "{f}", "{s}"], "vars": {"n": "int", "f": "float", "s": "str"}}
    return CommandRenderer(CommandSettings.model_validate({"templates": {"t": template}}), ENV)


def http_renderer() -> HttpRenderer:
    services = {"raw": {"base_url": "http://127.0.0.1:1", "preset": "generic"}}
    return HttpRenderer(HttpSettings.model_validate({"services": services}), ENV)


GOOD_VARS = {"n": 1, "f": 1.0, "s": "x"}


@pytest.mark.parametrize(
    ("make", "given_params"),
    [  # the inputs that broke validate() (or were accepted but could never render) before
        (DemoRenderer, {"fail_attempts": 10**4301}),
        (ManimRenderer, {"script": "\ud800.py", "scene": "Intro"}),
        (FfmpegRenderer, {"input": "clip\ud800.mp4", "output": "o.mp4"}),
        (FfmpegRenderer, {"preset": "raw", "args": ["-i", "a.mp4", "-metadata", "t=\udcff", "o.mp4"]}),
        (command_renderer, {"template": "t", "vars": {**GOOD_VARS, "f": 10**400}}),
        (command_renderer, {"template": "t", "vars": {**GOOD_VARS, "n": 10**5000}}),
        (command_renderer, {"template": "t", "vars": {**GOOD_VARS, "s": "\ud800"}}),
        (http_renderer, {"service": "raw", "payload": {"a": nest(5000)}}),
        (http_renderer, {"service": "raw", "payload": {"a": "\ud800"}}),
    ],
    ids=["demo", "manim", "ffmpeg", "ffmpeg-raw", "float", "int", "str", "deep", "surrogate"],
)
def test_known_breakers(make: Callable[..., Renderer], given_params: dict[str, Any]) -> None:
    renderer = make(env=ENV) if isinstance(make, type) else make()
    check(renderer, given_params)
    with pytest.raises((ValidationError, RenderError)):
        renderer.validate(given_params)
