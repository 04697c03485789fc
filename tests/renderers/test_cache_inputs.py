"""Renderer.cache_inputs: the files a render reads, named as render finds them and refused alike.

Each renderer here runs with a recorder as its tool (manim, ffmpeg and ffprobe, a command): the
recorder hashes what it was handed (the opened ``/proc/self/fd/N`` files, manim's private copy of
the script and the modules beside it), so the files ``cache_inputs`` names are compared with what
the tool really read, without the cost of a real render.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from farm.render import Renderer, RendererEnv, RenderError, SimpleContext
from renderers.command import CommandRenderer, CommandSettings
from renderers.demo import DemoRenderer
from renderers.ffmpeg import FfmpegRenderer, FfmpegSettings
from renderers.http import HttpRenderer
from renderers.manim import ManimRenderer, ManimSettings
from renderers.paths import open_confined, resolve_confined, sibling_paths, snapshot_with_siblings

RECORDER = """#!{python}
import hashlib, json, os, sys

def digest(path):
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()

seen = []
for arg in sys.argv[1:]:
    if arg.startswith("/proc/self/fd/"):
        seen.append(digest(arg))
    elif arg.endswith(".ffmpeg-concat.txt"):  # ffmpeg concat: the list names the opened files
        for line in open(arg).read().splitlines()[1:]:
            seen.append(digest(line[len("file '") : -1]))
    elif arg.endswith(".py"):  # manim: its copy of the script, then the modules copied beside it
        folder, name = os.path.split(arg)
        beside = sorted(n for n in os.listdir(folder) if n.endswith(".py") and n != name)
        seen += [digest(arg), *(digest(os.path.join(folder, n)) for n in beside)]
with open(os.environ["FARM_TEST_RECORD"], "a") as out:
    out.write(json.dumps([os.path.basename(sys.argv[0]), seen]) + "\\n")
"""


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """An executable that appends what it was handed to a record file (its path, the record)."""
    tool = tmp_path / "tools" / "recorder"
    tool.parent.mkdir()
    tool.write_text(RECORDER.format(python=sys.executable))
    tool.chmod(0o755)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("FARM_TEST_RECORD", str(record))
    return str(tool), record


def read_back(record: Path, tool: str = "recorder") -> list[str]:
    """The digests the last run of ``tool`` hashed."""
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    return [seen for name, seen in runs if name == tool][-1]


def digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]


def render_quietly(renderer: Renderer[Any], params: Any, env: RendererEnv, staging: Path) -> None:
    """Run ``render``; the recorder writes no outputs, so the render's own failure is expected."""
    try:
        renderer.render(params, SimpleContext(job_id="job-1", staging_dir=staging, env=env))
    except RenderError as exc:
        assert "wrote no" in str(exc) or "manim" in str(exc), exc


def refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(RenderError) as caught:
        call()
    return caught.value.kind.value, caught.value.message


@pytest.fixture
def two_roots(tmp_path: Path, env: RendererEnv) -> RendererEnv:
    """The farm's order: a job's own files first (``uploads``), then the configured root."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    return RendererEnv(
        data_dir=env.data_dir,
        output_dir=env.output_dir,
        input_roots=(uploads, *env.input_roots),
        log_dir=env.log_dir,
    )


# -- renderers.paths -----------------------------------------------------------------------------


def test_resolve_confined_names_the_real_file(tmp_path: Path, inputs: Path, two_roots: RendererEnv) -> None:
    uploads = two_roots.input_roots[0]
    (inputs / "scenes").mkdir()
    (inputs / "scenes" / "a.py").write_text("root")
    (uploads / "b.py").write_text("upload")
    alias = tmp_path / "alias"
    alias.symlink_to(inputs)  # a root may itself be a symlink: the path given is its target's
    roots = [uploads, alias]
    assert resolve_confined("scenes/a.py", roots) == inputs / "scenes" / "a.py"
    assert resolve_confined("./scenes/../scenes/a.py", roots) == inputs / "scenes" / "a.py"
    assert resolve_confined(str(alias / "scenes" / "a.py"), roots) == inputs / "scenes" / "a.py"
    assert resolve_confined("b.py", roots) == uploads / "b.py"
    assert resolve_confined("scenes", roots, directory=True) == inputs / "scenes"


@pytest.mark.parametrize(
    "case", ["symlink in root", "symlink outside", "dotdot", "outside", "missing", "dir"]
)
def test_resolve_confined_refuses_what_open_confined_refuses(tmp_path: Path, inputs: Path, case: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (inputs / "good.txt").write_text("good")
    (inputs / "sub").mkdir()
    (inputs / "in-root-link.txt").symlink_to(inputs / "good.txt")
    (inputs / "door").symlink_to(tmp_path)
    path = {
        "symlink in root": "in-root-link.txt",
        "symlink outside": "door/secret.txt",
        "dotdot": "../secret.txt",
        "outside": str(secret),
        "missing": "sub/missing.txt",
        "dir": "sub",
    }[case]
    expected = refusal(lambda: open_confined(path, [inputs]))
    assert refusal(lambda: resolve_confined(path, [inputs])) == expected


def test_sibling_paths_are_what_snapshot_with_siblings_copies(tmp_path: Path, inputs: Path) -> None:
    (inputs / "main.py").write_text("main")
    for name, size in (("a.py", 10), ("b.py", 50), ("c.py", 10), ("d.py", 10), ("e.py", 10)):
        (inputs / name).write_text("x" * size)
    (inputs / "notes.txt").write_text("not a module")
    (inputs / "link.py").symlink_to(inputs / "a.py")  # never followed, never copied
    (inputs / "pkg.py").mkdir()  # a folder is not a module file
    dest = tmp_path / "copy"
    dest.mkdir()
    limits = {"max_bytes": 4 + 10 + 10 + 10 + 5, "max_files": 3}  # b.py over budget, then e.py over count
    file_fd = open_confined("main.py", [inputs])
    folder_fd = open_confined(".", [inputs], directory=True)
    try:
        skipped = snapshot_with_siblings(file_fd, folder_fd, "main.py", dest, **limits)
        listed = sibling_paths(file_fd, folder_fd, "main.py", **limits)
    finally:
        os.close(file_fd)
        os.close(folder_fd)
    assert skipped == ["b.py", "e.py"]
    assert [path.name for path in listed] == ["main.py", "a.py", "c.py", "d.py"]
    assert sorted(path.name for path in dest.iterdir()) == sorted(path.name for path in listed)
    assert listed == [inputs / path.name for path in listed]


# -- manim ---------------------------------------------------------------------------------------


def manim(recorder: tuple[str, Path]) -> ManimRenderer:
    return ManimRenderer(ManimSettings(executable=recorder[0]))


def test_manim_names_the_script_and_the_modules_copied_beside_it(
    recorder: tuple[str, Path], two_roots: RendererEnv, inputs: Path, staging: Path
) -> None:
    """The script lies in the second root; the first (a job's files) holds a decoy module: render
    copies, and the key covers, the modules of the script's own folder."""
    uploads = two_roots.input_roots[0]
    (inputs / "intro.py").write_text("import helpers\n")
    (inputs / "helpers.py").write_text("RADIUS = 1\n")
    (inputs / "colors.py").write_text("RED = 1\n")
    (inputs / "logo.svg").write_text("<svg/>")
    (uploads / "helpers.py").write_text("RADIUS = 'decoy'\n")
    renderer = manim(recorder)
    params = renderer.validate({"script": "intro.py", "scene": "Intro", "quality": "low"})

    listed = renderer.cache_inputs(params, two_roots)
    render_quietly(renderer, params, two_roots, staging)

    assert listed == [inputs / "intro.py", inputs / "colors.py", inputs / "helpers.py"]
    assert digests(listed) == read_back(recorder[1])


def test_manim_key_follows_a_sibling_module(
    recorder: tuple[str, Path], env: RendererEnv, inputs: Path
) -> None:
    (inputs / "scenes").mkdir()
    script, helper = inputs / "scenes" / "intro.py", inputs / "scenes" / "helpers.py"
    script.write_text("from helpers import RADIUS\n")
    helper.write_text("RADIUS = 1\n")
    renderer = manim(recorder)
    params = renderer.validate({"script": "scenes/intro.py", "scene": "Intro"})

    def content() -> list[str]:
        return digests(renderer.cache_inputs(params, env))

    before = content()
    (inputs / "scenes" / "notes.txt").write_text("not copied, not keyed")
    assert content() == before
    helper.write_text("RADIUS = 2\n")
    changed = content()
    assert changed != before
    (inputs / "scenes" / "more.py").write_text("X = 1\n")
    assert content() == [*changed, hashlib.sha256(b"X = 1\n").hexdigest()]  # a new module counts too


@pytest.mark.parametrize("case", ["symlink in root", "symlink outside", "outside", "missing", "too large"])
def test_manim_refuses_what_render_refuses(
    recorder: tuple[str, Path], tmp_path: Path, env: RendererEnv, inputs: Path, staging: Path, case: str
) -> None:
    secret = tmp_path / "secret.py"
    secret.write_text("SECRET = 1\n")
    (inputs / "good.py").write_text("X = 1\n")
    (inputs / "in-root-link.py").symlink_to(inputs / "good.py")
    (inputs / "door").symlink_to(tmp_path)
    if case == "too large":
        (inputs / "big.py").write_bytes(b"#" * (16 * 1024**2 + 1))
    script = {
        "symlink in root": "in-root-link.py",
        "symlink outside": "door/secret.py",
        "outside": str(secret),  # absolute: only a renderer without env lets it through validate
        "missing": "nope.py",
        "too large": "big.py",
    }[case]
    renderer = manim(recorder)
    params = renderer.validate({"script": script, "scene": "Intro"})
    ctx = SimpleContext(job_id="job-1", staging_dir=staging, env=env)
    expected = refusal(lambda: renderer.render(params, ctx))
    assert refusal(lambda: renderer.cache_inputs(params, env)) == expected
    assert not recorder[1].exists()  # the tool never ran


# -- ffmpeg --------------------------------------------------------------------------------------


def ffmpeg(recorder: tuple[str, Path]) -> FfmpegRenderer:
    return FfmpegRenderer(FfmpegSettings(executable=recorder[0], ffprobe=recorder[0]))


def media(inputs: Path) -> dict[str, Path]:
    """Small stand-in files (the recorder only hashes them), each with distinct content."""
    files = {name: inputs / name for name in ("a.mp4", "b.mp4", "c.png")}
    for name, path in files.items():
        path.write_text(f"media {name}\n")
    return files


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"preset": "transcode", "input": "a.mp4", "output": "o.mp4"}, ["a.mp4"]),
        ({"preset": "thumbnail", "input": "b.mp4", "output": "t.png"}, ["b.mp4"]),
        ({"preset": "concat", "inputs": ["b.mp4", "a.mp4", "b.mp4"], "output": "o.mp4"},
         ["b.mp4", "a.mp4", "b.mp4"]),
        (
            {"preset": "raw", "args": ["-ss", "1", "-i", "a.mp4", "-i", "{abs}/c.png", "-filter_complex",
                                        "[0:v][1:v]overlay", "-t", "1", "o.mp4"]},
            ["a.mp4", "c.png"],
        ),
    ],
    ids=["transcode", "thumbnail", "concat", "raw"],
)  # fmt: skip
def test_ffmpeg_names_the_files_ffmpeg_reads(
    recorder: tuple[str, Path],
    env: RendererEnv,
    inputs: Path,
    staging: Path,
    params: dict[str, Any],
    expected: list[str],
) -> None:
    media(inputs)
    if params["preset"] == "raw":
        params = {**params, "args": [arg.replace("{abs}", str(inputs)) for arg in params["args"]]}
    renderer = ffmpeg(recorder)
    parsed = renderer.validate(params)

    listed = renderer.cache_inputs(parsed, env)
    render_quietly(renderer, parsed, env, staging)

    assert listed == [inputs / name for name in expected]
    assert digests(listed) == read_back(recorder[1])


def test_ffmpeg_relative_inputs_resolve_in_the_first_root_that_holds_them(
    recorder: tuple[str, Path], two_roots: RendererEnv, inputs: Path, staging: Path
) -> None:
    uploads = two_roots.input_roots[0]
    media(inputs)
    (uploads / "b.mp4").write_text("the job's own b.mp4\n")
    renderer = ffmpeg(recorder)
    params = renderer.validate({"preset": "concat", "inputs": ["a.mp4", "b.mp4"], "output": "o.mp4"})
    listed = renderer.cache_inputs(params, two_roots)
    render_quietly(renderer, params, two_roots, staging)
    assert listed == [inputs / "a.mp4", uploads / "b.mp4"]
    assert digests(listed) == read_back(recorder[1])


@pytest.mark.parametrize("preset", ["transcode", "raw"])
@pytest.mark.parametrize("case", ["symlink in root", "symlink outside", "outside", "missing", "dir"])
def test_ffmpeg_refuses_what_render_refuses(
    recorder: tuple[str, Path],
    tmp_path: Path,
    env: RendererEnv,
    inputs: Path,
    staging: Path,
    case: str,
    preset: str,
) -> None:
    media(inputs)
    (tmp_path / "secret.mp4").write_text("secret")
    (inputs / "in-root-link.mp4").symlink_to(inputs / "a.mp4")
    (inputs / "door").symlink_to(tmp_path)
    (inputs / "folder.mp4").mkdir()
    path = {
        "symlink in root": "in-root-link.mp4",
        "symlink outside": "door/secret.mp4",
        "outside": str(tmp_path / "secret.mp4"),
        "missing": "gone.mp4",
        "dir": "folder.mp4",
    }[case]
    renderer = ffmpeg(recorder)
    if preset == "raw":  # the bad input second: every input is checked, not only the first
        params = renderer.validate({"preset": "raw", "args": ["-i", "a.mp4", "-i", path, "o.mp4"]})
    else:
        params = renderer.validate({"preset": "transcode", "input": path, "output": "o.mp4"})
    ctx = SimpleContext(job_id="job-1", staging_dir=staging, env=env)
    expected = refusal(lambda: renderer.render(params, ctx))
    assert refusal(lambda: renderer.cache_inputs(params, env)) == expected
    assert not recorder[1].exists()


# -- command, http, demo -------------------------------------------------------------------------


def command(recorder: tuple[str, Path]) -> CommandRenderer:
    templates = {
        "mix": {"argv": [recorder[0], "{video}", "--level={level}", "{audio}", "{out}"],
                "vars": {"video": "path", "level": "int", "audio": "path", "out": "output"}},
    }  # fmt: skip
    return CommandRenderer(CommandSettings.model_validate({"templates": templates}))


def test_command_names_its_path_vars(
    recorder: tuple[str, Path], two_roots: RendererEnv, inputs: Path, staging: Path
) -> None:
    uploads = two_roots.input_roots[0]
    files = media(inputs)
    (uploads / "voice.wav").write_text("the job's own voice\n")
    renderer = command(recorder)
    params = renderer.validate(
        {
            "template": "mix",
            "vars": {"video": str(files["b.mp4"]), "level": 3, "audio": "voice.wav", "out": "o.mp4"},
        }
    )
    listed = renderer.cache_inputs(params, two_roots)
    with pytest.raises(RenderError, match="did not create"):
        renderer.render(params, SimpleContext(job_id="job-1", staging_dir=staging, env=two_roots))
    assert listed == [files["b.mp4"], uploads / "voice.wav"]
    assert digests(listed) == read_back(recorder[1])


@pytest.mark.parametrize(
    "case", ["symlink in root", "symlink outside", "outside", "missing", "unknown template"]
)
def test_command_refuses_what_render_refuses(
    recorder: tuple[str, Path], tmp_path: Path, env: RendererEnv, inputs: Path, staging: Path, case: str
) -> None:
    media(inputs)
    (tmp_path / "secret.wav").write_text("secret")
    (inputs / "in-root-link.wav").symlink_to(inputs / "a.mp4")
    (inputs / "door").symlink_to(tmp_path)
    audio = {
        "symlink in root": "in-root-link.wav",
        "symlink outside": "door/secret.wav",
        "outside": str(tmp_path / "secret.wav"),
        "missing": "gone.wav",
        "unknown template": "a.mp4",
    }[case]
    renderer = command(recorder)
    params = renderer.Params.model_validate(
        {"template": "mix", "vars": {"video": "a.mp4", "level": 1, "audio": audio, "out": "o.mp4"}}
    )
    if case == "unknown template":  # config changed between submit and run
        renderer.settings.templates.pop("mix")
    ctx = SimpleContext(job_id="job-1", staging_dir=staging, env=env)
    expected = refusal(lambda: renderer.render(params, ctx))
    assert refusal(lambda: renderer.cache_inputs(params, env)) == expected
    assert not recorder[1].exists()


def test_http_and_demo_read_no_files(env: RendererEnv) -> None:
    http = HttpRenderer()
    assert http.cache_inputs(http.Params.model_validate({"service": "any", "payload": {"a": 1}}), env) == []
    demo = DemoRenderer()
    assert demo.cache_inputs(demo.validate({"duration": 0}), env) == []


def test_mappings_are_validated_first(recorder: tuple[str, Path], env: RendererEnv, inputs: Path) -> None:
    """The farm may hand params as stored (a dict): they are parsed as ``validate`` parses them."""
    media(inputs)
    renderer = ffmpeg(recorder)
    assert renderer.cache_inputs({"preset": "transcode", "input": "a.mp4", "output": "o.mp4"}, env) == [
        inputs / "a.mp4"
    ]
    with pytest.raises(ValidationError, match="output"):
        renderer.cache_inputs({"preset": "transcode", "input": "a.mp4"}, env)
