"""The manim renderer: runs the ``manim`` CLI on a confined script and turns its output into progress.

Pure parts (``build_argv``, ``parse_progress``, ``error_message``) are tested without processes.
What manim 0.22 prints, and what we read from it:

- stderr, one tqdm bar per animation, redrawn with ``\\r``:
  ``Animation 3: Write(Text('Hi')):  40%|####  | 12/30 [00:00<00:00, 95.2it/s]``
  (static waits draw no bar);
- stdout, rich log lines: ``INFO  Animation 3 : Partial movie file written in '...'``, then
  ``Combining to Movie file.``, ``File ready at '...'`` and ``Rendered Scene / Played N animations``;
- on failure a rich traceback box ending in ``ValueError: ...``, or an ``ERROR`` log line such as
  ``Nope is not in the script``.

The number of animations is not printed up front. By default progress grows asymptotically with
the animations done (monotonic, never reaching the 90% reserved for combining); with
``count_animations = true`` a ``--dry_run`` pass counts them first for exact "Animation 3/7" stages.

Which script runs: the one checked. It is opened with ``renderers.paths.open_confined`` (no
symlink below an input root is followed, in-root ones included) and manim runs a private copy
made from that open file, in a fresh 0700 temp dir, never the name a swapped symlink could
redirect. The ``.py`` modules beside the script are copied with it (regular files only, 16 MiB
and 200 files at most), so ``import helpers`` keeps working; sub-packages (folders) are not.
manim's working directory is the script's folder as opened (``/proc/self/fd/N``): the folder the
script was found in, so assets named relative to it still load. A scene is code: what it opens by
itself is not confined.

For the render cache, ``cache_inputs`` names the script and the sibling modules that would be
copied (the same choice), and ``tool_version`` is ``manim <version>``: read in-process when the
``manim`` executable runs this very Python, else from ``manim --version`` once per process.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import Field, field_validator

from farm.models import ErrorKind
from farm.render import Health, Params, RenderContext, Renderer, RendererEnv, RenderError, Settings

from .media import probe_duration
from .paths import (
    again_if_moved,
    as_value_error,
    check_relative_or_within,
    fd_path,
    folder_of,
    open_confined,
    sibling_paths,
    snapshot_with_siblings,
)
from .proc import ProcResult, run
from .versions import locate, runs_this_python, version_line

Quality = Literal["low", "medium", "high", "production", "4k"]
Format = Literal["mp4", "mov", "gif", "webm", "png"]
QUALITY_FLAGS: dict[str, str] = {
    "low": "-ql",
    "medium": "-qm",
    "high": "-qh",
    "production": "-qp",
    "4k": "-qk",
}

RENDER_SHARE = 90.0  # percent of the bar given to rendering animations
COMBINING = 93.0
READY = 97.0
UNKNOWN_TOTAL_KNEE = 4.0  # with an unknown total, this many animations done shows as 45%
CHILD_COLUMNS = "200"  # rich wraps log lines at the terminal width; keep them on one line

_SCENE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
_BAR = re.compile(r"Animation (\d+): (.*?):\s+(\d{1,3})%\|.*?\|\s*(\d+)/(\d+)")
_WRITTEN = re.compile(r"Animation (\d+) : (?:Partial movie file written|Using cached data)")
_PLAYED = re.compile(r"Played (\d+) animations?")
_LOG = re.compile(r"^(?:\[[^\]]*\]\s+)?(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b(.*?)(?:\s+\S+\.py:\d+)?$")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b(?::.*)?$")
_FRAME = re.compile(r"(\S+\.py):(\d+)(?: in (\w+))?")
_BOX_CHARS = "│╭╰─┃━┏┗╮╯"
_PROMPT_NOISE = ("Choose number", "(Use comma", "Choice(s)")
_TRANSIENT = ("MemoryError", "No space left on device")
_VERSION = re.compile(r"\bv?(\d+(?:\.\d+)+[\w.+-]*)")
MAX_SOURCE_BYTES = 16 * 1024**2  # the script and the modules copied beside it
MAX_SIBLINGS = 200


class ManimParams(Params):
    script: str = Field(description="path of the .py file, relative to the first input root")
    scene: str = Field(description="name of the Scene class to render")
    quality: Quality = Field(default="high", description="low 480p15 · medium 720p30 · high 1080p60 ...")
    format: Format = Field(default="mp4", description="png renders only the last frame")

    @field_validator("script")
    @classmethod
    def _script(cls, value: str) -> str:
        try:
            check_relative_or_within(value)
        except RenderError as exc:
            raise as_value_error(exc) from exc
        if PurePosixPath(value).suffix != ".py":
            raise ValueError(f"script must be a .py file: {value!r}")
        return value

    @field_validator("scene")
    @classmethod
    def _scene(cls, value: str) -> str:
        if not _SCENE.match(value):
            raise ValueError(f"scene must be a Python class name, not {value!r}")
        return value


def default_executable() -> str:
    """``manim`` on PATH, else the one installed beside this Python (pip install 'farm[manim]'
    into a venv that is not activated, as under supervisor)."""
    if shutil.which("manim"):
        return "manim"
    beside = Path(sys.executable).with_name("manim")
    return str(beside) if beside.exists() else "manim"


class ManimSettings(Settings):
    executable: str = Field(default_factory=default_executable)
    ffprobe: str = "ffprobe"
    count_animations: bool = False  # run a --dry_run pass first to know the animation count


def build_argv(
    params: ManimParams,
    script_path: Path,
    media_dir: Path,
    *,
    executable: str = "manim",
    dry_run: bool = False,
) -> list[str]:
    """The ``manim render`` argv; the output is named after the scene so it can be found again."""
    argv = [executable, "render", QUALITY_FLAGS[params.quality], "--format", params.format]
    argv += ["--media_dir", str(media_dir), "-o", params.scene]
    argv += ["--silent"]  # no version check against PyPI after every render
    argv += ["--dry_run", "--progress_bar", "none"] if dry_run else ["--progress_bar", "leave"]
    return [*argv, str(script_path), params.scene]


def overall_percent(done: float, total: int | None) -> float:
    """Percent of the whole render once ``done`` animations (fractional) are finished."""
    done = max(0.0, done)
    if total:
        return RENDER_SHARE * min(done, total) / total
    return RENDER_SHARE * done / (done + UNKNOWN_TOTAL_KNEE)


def parse_progress(line: str, total: int | None = None) -> tuple[float | None, str | None]:
    """Overall percent and stage from one line of manim output; ``(None, None)`` if irrelevant.

    Animation numbers are shown 1-based ("Animation 3/7: Write(Text('Hi'))"); ``total`` is the
    animation count when known (from a dry run), else the stage shows no total.
    """
    bar = _BAR.search(line)
    if bar:
        index, desc, pct, count, frames = bar.groups()
        fraction = int(count) / int(frames) if int(frames) else int(pct) / 100
        number = int(index) + 1
        shown = f"{number}/{max(total, number)}" if total else str(number)
        desc = desc if len(desc) <= 60 else desc[:57] + "..."
        return overall_percent(int(index) + min(fraction, 1.0), total), f"Animation {shown}: {desc}"
    written = _WRITTEN.search(line)
    if written:
        return overall_percent(int(written.group(1)) + 1, total), None
    if "Combining to Movie file" in line:
        return COMBINING, "combining movie file"
    if "File ready at" in line or _PLAYED.search(line):
        return READY, "file ready"
    return None, None


def count_animations(lines: Sequence[str]) -> int | None:
    """The N of manim's closing "Played N animations" line."""
    for line in reversed(lines):
        found = _PLAYED.search(line)
        if found:
            return int(found.group(1))
    return None


def error_message(lines: Sequence[str]) -> str:
    """manim's own explanation of a failure, from the tail of its output, as one line."""
    location = ""
    kept: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line[0] in _BOX_CHARS:
            frame = _FRAME.search(line)
            if frame and "site-packages" not in frame.group(1) and "<frozen" not in frame.group(1):
                where = f"{Path(frame.group(1)).name}:{frame.group(2)}"
                location = f"{where} in {frame.group(3)}" if frame.group(3) else where
            continue
        if line.startswith("Manim Community") or _BAR.search(line) or line.startswith(_PROMPT_NOISE):
            continue
        kept.append(line)
    found: list[str] = []
    for index in range(len(kept) - 1, -1, -1):
        log = _LOG.match(kept[index])
        if log and log.group(1) in ("ERROR", "CRITICAL"):
            parts = [log.group(2).strip()] if log.group(2).strip() else []
            for follow in kept[index + 1 : index + 7]:
                if _LOG.match(follow) or _EXCEPTION.match(follow):
                    break
                parts.append(follow)
            found.append(" | ".join(parts) or "manim logged an error")
            break
    for line in reversed(kept):
        if _EXCEPTION.match(line):
            found.append(f"{line} ({location})" if location else line)
            break
    return "; ".join(found) or " | ".join(kept[-3:]) or "manim gave no message"


def _has_error_log(lines: Sequence[str]) -> bool:
    return any((log := _LOG.match(line.strip())) and log.group(1) in ("ERROR", "CRITICAL") for line in lines)


def failure(done: ProcResult) -> RenderError:
    """The RenderError for a manim run that exited non-zero."""
    message = error_message(done.tail)
    if len(message) > 700:
        message = message[:700] + "..."
    if done.returncode < 0:
        return RenderError(ErrorKind.UNKNOWN, f"manim was killed by signal {-done.returncode}: {message}")
    if any(marker in message for marker in _TRANSIENT):
        return RenderError(ErrorKind.UNKNOWN, f"manim failed: {message}")
    return RenderError(ErrorKind.INVALID_INPUT, f"manim failed: {message}")


@dataclass
class ProgressTracker:
    """Feeds manim's lines through ``parse_progress``; reports to ``ctx`` only forward moves."""

    ctx: RenderContext
    total: int | None = None
    percent: float = 0.0
    stage: str = "starting manim"
    animations: int = 0  # animations seen so far (from the bars)

    def feed(self, line: str, stream: str = "stderr") -> None:
        bar = _BAR.search(line)
        if bar:
            self.animations = max(self.animations, int(bar.group(1)) + 1)
        percent, stage = parse_progress(line, self.total)
        if percent is None and stage is None:
            return
        percent = max(self.percent, percent or 0.0)
        stage = stage or self.stage
        if percent >= self.percent + 0.5 or stage != self.stage:
            self.percent, self.stage = percent, stage
            self.ctx.progress(percent, stage)


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    # unbuffered so progress streams live; no __pycache__ littering the input roots
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", COLUMNS=CHILD_COLUMNS)
    return env


def find_output(media_dir: Path, scene: str, fmt: str) -> Path | None:
    """The final file manim wrote for ``scene`` (never one of its partial movie files)."""
    found = [
        path
        for path in media_dir.rglob(f"{scene}.{fmt}")
        if path.is_file() and "partial_movie_files" not in path.parts
    ]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def manim_version(executable: str) -> str:
    """``manim <version>`` for ``executable``, the same whichever way it is read; never raises
    (``manim unknown (<path>)`` when it cannot be read)."""
    found = locate(executable)
    if found is None:
        return f"manim unknown ({executable})"
    if runs_this_python(found):
        try:
            return f"manim {importlib.metadata.version('manim')}"
        except importlib.metadata.PackageNotFoundError:
            pass
    line = version_line([found, "--version"])  # "Manim Community v0.22.0"
    if line is None:
        return f"manim unknown ({found})"
    number = _VERSION.search(line)
    return f"manim {number.group(1) if number else line}"


class ManimRenderer(Renderer[ManimSettings]):
    name = "manim"
    Params = ManimParams
    Settings = ManimSettings

    def validate(self, params: Mapping[str, Any]) -> ManimParams:
        parsed = ManimParams.model_validate(dict(params))
        if self.env is not None:
            check_relative_or_within(parsed.script, self.env.input_roots)
        return parsed

    @staticmethod
    def _open(params: ManimParams, roots: Sequence[Path], opened: contextlib.ExitStack) -> tuple[int, int]:
        """The script and its folder, opened confined (closed with ``opened``). The folder is the
        one the script was found in, not the first root that has a folder of that name."""
        script_fd = open_confined(params.script, roots)
        opened.callback(os.close, script_fd)
        folder = folder_of(script_fd)
        folder_fd = open_confined(folder, roots, directory=True)
        opened.callback(os.close, folder_fd)
        return script_fd, folder_fd

    def cache_inputs(self, params: Any, env: RendererEnv) -> list[Path]:
        """The script, then the sibling modules ``render`` copies beside it (sorted)."""
        if not isinstance(params, ManimParams):
            params = self.validate(params)
        name = PurePosixPath(params.script).name

        def look() -> list[Path]:
            with contextlib.ExitStack() as opened:
                script_fd, folder_fd = self._open(params, env.input_roots, opened)
                return sibling_paths(
                    script_fd, folder_fd, name, max_bytes=MAX_SOURCE_BYTES, max_files=MAX_SIBLINGS
                )

        return again_if_moved(look)  # a file swapped while it was being named: look again

    def tool_version(self) -> str:
        return manim_version(self.settings.executable)

    def render(self, params: ManimParams, ctx: RenderContext) -> dict[str, Any]:
        with contextlib.ExitStack() as opened:
            script_fd, folder_fd = self._open(params, ctx.env.input_roots, opened)
            # private (0700) and short: rich wraps long paths in tracebacks, hiding the failing line
            source = Path(tempfile.mkdtemp(prefix="farm-manim-src-"))
            opened.callback(shutil.rmtree, source, ignore_errors=True)
            # manim imports the script by path: it gets a private copy of the file we checked (and
            # of the modules beside it, so `import helpers` works), never the swappable name
            name = PurePosixPath(params.script).name
            skipped = snapshot_with_siblings(
                script_fd, folder_fd, name, source, max_bytes=MAX_SOURCE_BYTES, max_files=MAX_SIBLINGS
            )
            if skipped:
                ctx.log(f"not copied beside the script: {', '.join(skipped[:20])}")
            return self._render(params, ctx, source / name, folder_fd)

    def _render(self, params: ManimParams, ctx: RenderContext, script: Path, folder: int) -> dict[str, Any]:
        conf = self.settings
        staging = Path(ctx.staging_dir)
        media = Path(tempfile.mkdtemp(prefix=".manim-media-", dir=staging))
        env = child_env()
        cwd = fd_path(folder)  # the script's folder as opened: assets beside the script still load
        started = time.monotonic()
        try:
            total: int | None = None
            if conf.count_animations:
                ctx.progress(0.0, "counting animations")
                argv = build_argv(params, script, media, executable=conf.executable, dry_run=True)
                counted = run(argv, ctx, cwd=cwd, pass_fds=(folder,), env=env, tail_lines=80, what="manim")
                if counted.returncode != 0:
                    raise failure(counted)
                total = count_animations(counted.tail)
            ctx.progress(0.0, "starting manim")
            tracker = ProgressTracker(ctx, total)
            argv = build_argv(params, script, media, executable=conf.executable)
            done = run(
                argv,
                ctx,
                cwd=cwd,
                pass_fds=(folder,),
                env=env,
                on_line=tracker.feed,
                tail_lines=80,
                what="manim",
            )
            if done.returncode != 0:
                raise failure(done)
            produced = find_output(media, params.scene, params.format)
            if produced is None:
                kind = ErrorKind.INVALID_INPUT if _has_error_log(done.tail) else ErrorKind.UNKNOWN
                raise RenderError(kind, f"manim wrote no {params.format} file: {error_message(done.tail)}")
            final = staging / f"{params.scene}.{params.format}"
            os.replace(produced, final)
        finally:
            shutil.rmtree(media, ignore_errors=True)
        seconds = time.monotonic() - started
        duration = None
        if params.format != "png":
            try:
                duration = probe_duration(final, ffprobe=conf.ffprobe, demuxers=())
            except RenderError:
                duration = None
        animations = total if total is not None else count_animations(done.tail)
        ctx.progress(100.0, "done")
        return {
            "outputs": [final.name],
            "size_bytes": final.stat().st_size,
            "duration": duration,
            "render_seconds": round(seconds, 3),
            "animations": animations if animations is not None else tracker.animations,
            "quality": params.quality,
            "format": params.format,
        }

    def doctor(self) -> Health:
        try:
            done = subprocess.run(
                [self.settings.executable, "--version"],
                capture_output=True,
                timeout=60,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Health(False, f"{self.settings.executable}: {exc}")
        text = (done.stdout + done.stderr).decode("utf-8", "replace").strip().splitlines()
        if done.returncode != 0 or not text:
            return Health(False, f"{self.settings.executable} --version exited {done.returncode}")
        return Health(True, text[0])
