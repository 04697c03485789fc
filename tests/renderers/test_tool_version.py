"""Renderer.tool_version: stable across calls, instances and processes; changes when what decides
the outputs changes (a tool replaced, a template or a service edited); never raises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from renderers import versions
from renderers.command import CommandRenderer, CommandSettings
from renderers.demo import DemoRenderer
from renderers.ffmpeg import FfmpegRenderer, FfmpegSettings
from renderers.http import HttpRenderer, HttpSettings
from renderers.manim import ManimRenderer, ManimSettings


def tool(folder: Path, name: str, body: str) -> str:
    """An executable shell script ``folder/name`` running ``body``."""
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The version commands ``renderers.versions`` runs during the test."""
    seen: list[list[str]] = []
    real = subprocess.run

    def counting(argv: list[str], **kwargs: Any) -> Any:
        seen.append(list(argv))
        return real(argv, **kwargs)

    monkeypatch.setattr(versions.subprocess, "run", counting)
    return seen


# -- manim and ffmpeg: the real tools -----------------------------------------------------------


def test_manim_version_is_the_same_read_in_process_or_from_the_cli(
    manim_exe: str, tmp_path: Path, runs: list[list[str]]
) -> None:
    """The venv's manim is read in-process; behind a wrapper it is asked (`manim --version`,
    ~2 s, once per process). Both give the same string, so boxes agree however manim is installed."""
    direct = ManimRenderer(ManimSettings(executable=manim_exe)).tool_version()
    wrapper = tool(tmp_path, "manim-wrapper", f'exec "{manim_exe}" "$@"')
    asked = ManimRenderer(ManimSettings(executable=wrapper))
    assert asked.tool_version() == direct
    assert [argv[1:] for argv in runs] == [["--version"]]
    assert ManimRenderer(ManimSettings(executable=wrapper)).tool_version() == direct  # another instance
    assert asked.tool_version() == direct
    assert len(runs) == 1  # cached for the process
    assert direct.startswith("manim ") and direct.split()[1][0].isdigit(), direct


def test_ffmpeg_version_is_its_version_line(ffmpeg_exe: str, runs: list[list[str]]) -> None:
    first = FfmpegRenderer(FfmpegSettings(executable=ffmpeg_exe)).tool_version()
    second = FfmpegRenderer(FfmpegSettings(executable="ffmpeg")).tool_version()
    with subprocess.Popen([ffmpeg_exe, "-version"], stdout=subprocess.PIPE, text=True) as asked:
        line = asked.communicate()[0]  # not through subprocess.run, which `runs` counts
    assert first == second == line.splitlines()[0]
    assert first.startswith("ffmpeg version ")
    assert len([argv for argv in runs if argv[1:] == ["-version"]]) <= 1  # once per process at most


def test_versions_agree_in_another_process(manim_exe: str, ffmpeg_exe: str) -> None:
    script = f"""
import json
from renderers.command import CommandRenderer, CommandSettings
from renderers.demo import DemoRenderer
from renderers.ffmpeg import FfmpegRenderer, FfmpegSettings
from renderers.http import HttpRenderer, HttpSettings
from renderers.manim import ManimRenderer, ManimSettings
print(json.dumps([
    ManimRenderer(ManimSettings(executable={manim_exe!r})).tool_version(),
    FfmpegRenderer(FfmpegSettings(executable={ffmpeg_exe!r})).tool_version(),
    CommandRenderer(CommandSettings.model_validate({COMMAND!r})).tool_version(),
    HttpRenderer(HttpSettings.model_validate({HTTP!r})).tool_version(),
    DemoRenderer().tool_version(),
]))
"""
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    )
    here = [
        ManimRenderer(ManimSettings(executable=manim_exe)).tool_version(),
        FfmpegRenderer(FfmpegSettings(executable=ffmpeg_exe)).tool_version(),
        CommandRenderer(CommandSettings.model_validate(COMMAND)).tool_version(),
        HttpRenderer(HttpSettings.model_validate(HTTP)).tool_version(),
        DemoRenderer().tool_version(),
    ]
    assert json.loads(done.stdout) == here
    assert here[-1] == "demo/1"


# -- never raises: missing, failing and hanging tools -------------------------------------------


def test_a_missing_or_failing_tool_gives_a_stable_fallback(tmp_path: Path) -> None:
    failing = tool(tmp_path, "broken", "echo 'no such option' >&2; exit 3")
    for executable, shown in (("no-such-tool-here", "no-such-tool-here"), (failing, failing)):
        ffmpeg = FfmpegRenderer(FfmpegSettings(executable=executable))
        manim = ManimRenderer(ManimSettings(executable=executable))
        assert ffmpeg.tool_version() == ffmpeg.tool_version() == f"ffmpeg unknown ({shown})"
        assert manim.tool_version() == manim.tool_version() == f"manim unknown ({shown})"


def test_a_hanging_tool_times_out_and_is_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = tmp_path / "hang"
    gate.touch()
    slow = tool(tmp_path, "slow", f'[ -e "{gate}" ] && exec sleep 30; echo "slow 1.0"')
    monkeypatch.setattr(versions, "VERSION_TIMEOUT", 0.3)
    started = time.monotonic()
    assert FfmpegRenderer(FfmpegSettings(executable=slow)).tool_version() == f"ffmpeg unknown ({slow})"
    assert time.monotonic() - started < 5
    gate.unlink()  # a timeout is not remembered: the next call asks again
    assert FfmpegRenderer(FfmpegSettings(executable=slow)).tool_version() == "slow 1.0"


def test_a_tool_replaced_in_place_is_asked_again(tmp_path: Path) -> None:
    path = tool(tmp_path, "mytool", "echo 'mytool 1.0'")
    assert versions.version_line([path, "-version"]) == "mytool 1.0"
    tool(tmp_path, "mytool", "echo 'mytool 2.0'")  # same size, new mtime
    os.utime(path, ns=(1, 1))
    assert versions.version_line([path, "-version"]) == "mytool 2.0"


# -- command: the templates and their executables -----------------------------------------------

COMMAND: dict[str, Any] = {
    "templates": {
        "copy": {"argv": ["cp", "{src}", "{out}"], "vars": {"src": "path", "out": "output"}},
        "head": {
            "argv": ["head", "-n", "{n}", "{src}"],
            "vars": {"n": "int", "src": "path"},
            "exit_codes": {2: "invalid_input"},
            "env": {"LC_ALL": "C"},
        },
    }
}


def command_version(config: dict[str, Any]) -> str:
    return CommandRenderer(CommandSettings.model_validate(config)).tool_version()


def edited(**head: Any) -> dict[str, Any]:
    return {"templates": {**COMMAND["templates"], "head": {**COMMAND["templates"]["head"], **head}}}


def test_command_version_is_stable_and_ignores_the_order_of_templates() -> None:
    base = command_version(COMMAND)
    assert base == command_version(COMMAND) and base.startswith("command/1 ")
    reordered = {"templates": dict(reversed(list(COMMAND["templates"].items())))}
    assert command_version(reordered) == base


@pytest.mark.parametrize(
    "change",
    [
        {"argv": ["head", "-c", "{n}", "{src}"]},
        {"vars": {"n": {"type": "int", "signed": True}, "src": "path"}},
        {"exit_codes": {2: "invalid_input", 3: "not_found"}},
        {"env": {"LC_ALL": "C.UTF-8"}},
        {"progress": r"(\d+)%"},
    ],
    ids=["argv", "vars", "exit_codes", "env", "progress"],
)
def test_command_version_changes_with_the_template(change: dict[str, Any]) -> None:
    assert command_version(edited(**change)) != command_version(COMMAND)


def test_command_version_changes_with_the_executable(tmp_path: Path) -> None:
    script = tool(tmp_path, "render-it", 'cat "$1"')
    config = {"templates": {"it": {"argv": [script, "{src}"], "vars": {"src": "path"}}}}
    base = command_version(config)
    assert command_version(config) == base
    os.utime(script, (1_700_000_000, 1_700_000_000))  # replaced by another build
    touched = command_version(config)
    assert touched != base
    Path(script).write_text('#!/bin/sh\ncat "$1" "$1"\n')
    os.utime(script, (1_700_000_000, 1_700_000_000))  # same mtime, other size
    assert command_version(config) not in (base, touched)
    os.unlink(script)  # gone: still an answer, not an error
    assert command_version(config) == command_version(config)


# -- http: address and shape, never the secret --------------------------------------------------

HTTP: dict[str, Any] = {
    "services": {
        "orch": {
            "base_url": "http://127.0.0.1:9000/api",
            "mode": "async",
            "auth_header": "Authorization",
            "auth_env": "ORCH_TOKEN",
            "auth_prefix": "Bearer ",
        },
        "thumbs": {"base_url": "https://thumbs.example", "preset": "generic"},
    }
}


def http_version(**orch: Any) -> str:
    services = {**HTTP["services"], "orch": {**HTTP["services"]["orch"], **orch}}
    return HttpRenderer(HttpSettings.model_validate({"services": services})).tool_version()


def test_http_version_names_the_service_not_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TOKEN", "s3cret-token")
    base = http_version()
    assert base == http_version() and base.startswith("http/1 ") and "s3cret" not in base
    monkeypatch.setenv("ORCH_TOKEN", "another-token")
    assert http_version() == base
    for unchanged in ({"auth_env": "OTHER_TOKEN"}, {"read_timeout": 30.0}, {"poll_interval": 0.5}):
        assert http_version(**unchanged) == base, unchanged
    for changed in (
        {"base_url": "http://127.0.0.1:9001/api"},
        {"mode": "sync"},
        {"preset": "generic"},
        {"render_path": "/v2/render"},
        {"status_path": "/v2/status/{id}"},
    ):
        assert http_version(**changed) != base, changed
