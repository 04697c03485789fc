"""The ffmpeg renderer: transcode, concat, thumbnail and a strictly vetted raw preset.

Pure parts (``build_argv``, ``parse_progress``, ``classify_failure``) are tested without
processes; ``FfmpegRenderer.render`` opens the inputs with ``renderers.paths.open_confined`` and
hands ffprobe and ffmpeg the opened files (``/proc/self/fd/N``, concat list entries too), so a
symlink swapped in after the check cannot redirect them; ffmpeg's messages name the inputs as
the job did. It runs ffmpeg through ``renderers.proc`` with ``-progress pipe:1`` and checks what
landed in the staging dir. The params model lives in ``renderers.ffmpeg_params``, the raw
preset's argument policy in ``renderers.ffmpeg_raw``. For the render cache, ``cache_inputs``
names the files ``render`` opens (``input_names`` picks them for both) and ``tool_version`` is
the first line of ``ffmpeg -version``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from farm.models import ErrorKind
from farm.render import Health, RenderContext, Renderer, RendererEnv, RenderError, Settings

from .ffmpeg_params import IMAGE_EXTENSIONS, FfmpegParams
from .ffmpeg_raw import RawPlan, plan_raw
from .media import SAFE_DEMUXERS, probe_duration
from .paths import check_relative_or_within, fd_path, open_confined, resolve_confined
from .proc import run
from .versions import locate, version_line

_FD_PATH = re.compile(r"/proc/self/fd/\d+")
# fmt: off
_INVALID_HINTS = (  # ffmpeg messages that mean "this input or these arguments are wrong"
    "invalid data found", "error opening input", "could not find codec parameters",
    "moov atom not found", "does not contain any stream", "unknown encoder", "unrecognized option",
    "option not found", "invalid argument", "error initializing", "error while opening encoder",
    "matches no streams", "no such filter", "invalid duration", "not supported", "impossible to open",
    "unsafe file name", "invalid input file index", "stream specifier",
)
# fmt: on


class FfmpegSettings(Settings):
    executable: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    demuxers: tuple[str, ...] = SAFE_DEMUXERS  # empty: let ffmpeg pick any demuxer (not advised)
    stats_period: float = Field(default=0.5, gt=0, le=10)  # seconds between progress reports


def parse_progress(line: str, total_seconds: float | None) -> float | None:
    """Percent done from one ``-progress`` line (``out_time_us``/``out_time_ms`` or ``progress=end``).

    Both time keys are in microseconds (``out_time_ms`` is misnamed in ffmpeg). Without a known
    total only ``progress=end`` yields a value. Values stop at 99 until ffmpeg reports the end.
    """
    key, sep, value = line.strip().partition("=")
    if not sep:
        return None
    if key == "progress":
        return 100.0 if value.strip() == "end" else None
    if key not in ("out_time_us", "out_time_ms") or not total_seconds or total_seconds <= 0:
        return None
    try:
        micros = int(value.strip())
    except ValueError:
        return None  # "N/A" before the first frame
    return max(0.0, min(99.0, micros / 1e6 / total_seconds * 100.0))


def _head(executable: str, stats_period: float) -> list[str]:
    return [
        executable, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "warning", "-y",
        "-progress", "pipe:1", "-stats_period", f"{stats_period:g}",
    ]  # fmt: skip


def _whitelist(demuxers: Sequence[str], *extra: str) -> list[str]:
    names = [*demuxers, *extra] if demuxers else []
    return ["-format_whitelist", ",".join(names)] if names else []


def _encode_options(params: FfmpegParams) -> list[str]:
    argv: list[str] = []
    if params.video_codec:
        argv += ["-c:v", params.video_codec]
    if params.crf is not None:
        argv += ["-crf", str(params.crf)]
    if params.speed:
        argv += ["-preset", params.speed]
    if params.scale:
        argv += ["-vf", f"scale={params.scale}"]
    if params.audio == "none":
        argv += ["-an"]
    elif params.audio:
        argv += ["-c:a", params.audio]
    return argv


def build_argv(
    params: FfmpegParams,
    *,
    inputs: Sequence[Path],
    outputs: Sequence[Path],
    list_file: Path | None = None,
    executable: str = "ffmpeg",
    demuxers: Sequence[str] = SAFE_DEMUXERS,
    stats_period: float = 0.5,
) -> list[str]:
    """The full ffmpeg argv for ``params`` given already confined absolute paths.

    ``inputs``/``outputs`` are absolute (so ffmpeg never reads a ``proto:`` prefix into them);
    for ``raw`` they replace the input/output arguments in order; ``concat`` reads ``list_file``.
    """
    argv = _head(executable, stats_period)
    if params.preset == "raw":
        plan = plan_raw(params.args)
        replaced = list(plan.args)
        for index, path in zip(plan.inputs, inputs, strict=True):
            replaced[index] = str(path)
        for index, path in zip(plan.outputs, outputs, strict=True):
            replaced[index] = str(path)
        for index, arg in enumerate(replaced):
            if arg == "-i" and index + 1 in plan.inputs:
                argv += _whitelist(demuxers)
            argv.append(arg)
        return argv
    (output,) = outputs
    if params.preset == "transcode":
        (source,) = inputs
        return [*argv, *_whitelist(demuxers), "-i", str(source), *_encode_options(params), str(output)]
    if params.preset == "concat":
        if list_file is None:
            raise ValueError("concat needs a list file")
        encode = _encode_options(params)
        return [
            *argv, "-f", "concat", "-safe", "0", *_whitelist(demuxers, "concat"), "-i", str(list_file),
            *(encode or ["-c", "copy"]), str(output),
        ]  # fmt: skip
    (source,) = inputs
    scale = ["-vf", f"scale={params.scale}"] if params.scale else []
    return [
        *argv, "-ss", f"{params.time:g}", *_whitelist(demuxers), "-i", str(source),
        "-frames:v", "1", "-update", "1", *scale, str(output),
    ]  # fmt: skip


def input_names(params: FfmpegParams) -> list[str]:
    """The inputs ``params`` reads, as the job named them, in the order ffmpeg gets them: the
    ``-i`` values of ``raw`` (as ``plan_raw`` finds them), ``inputs`` of concat, else ``input``."""
    if params.preset == "raw":
        return [params.args[i] for i in plan_raw(params.args).inputs]
    return list(params.inputs if params.preset == "concat" else (params.input or "",))


def concat_list(paths: Sequence[Path]) -> str:
    """The concat demuxer's list file for ``paths`` (absolute, single quotes escaped)."""
    lines = ["ffconcat version 1.0"]
    for path in paths:
        text = str(path)
        if "\n" in text or "\r" in text:
            raise RenderError(ErrorKind.INVALID_INPUT, f"concat input name has a line break: {text!r}")
        lines.append("file '" + text.replace("'", "'\\''") + "'")
    return "\n".join(lines) + "\n"


def _named(line: str, shown: Mapping[str, str]) -> str:
    """ffmpeg's line with our ``/proc/self/fd/N`` inputs called by the names the job gave."""
    return _FD_PATH.sub(lambda found: shown.get(found.group(0), found.group(0)), line)


def classify_failure(returncode: int, tail: Sequence[str]) -> RenderError:
    """Map a failed ffmpeg run to an error kind, quoting ffmpeg's last lines."""
    text = " | ".join(tail[-4:]) or f"exit code {returncode}"
    if len(text) > 600:
        text = "..." + text[-600:]
    if returncode < 0:
        return RenderError(ErrorKind.UNKNOWN, f"ffmpeg was killed by signal {-returncode}: {text}")
    lowered = text.lower()
    if any(hint in lowered for hint in _INVALID_HINTS):
        return RenderError(ErrorKind.INVALID_INPUT, f"ffmpeg failed: {text}")
    return RenderError(ErrorKind.UNKNOWN, f"ffmpeg failed (exit {returncode}): {text}")


class FfmpegRenderer(Renderer[FfmpegSettings]):
    name = "ffmpeg"
    Params = FfmpegParams
    Settings = FfmpegSettings

    def validate(self, params: Mapping[str, Any]) -> FfmpegParams:
        parsed = FfmpegParams.model_validate(dict(params))
        roots = self.env.input_roots if self.env is not None else ()
        if parsed.preset == "raw":
            plan = plan_raw(parsed.args)
            for index in plan.inputs:
                check_relative_or_within(parsed.args[index], roots)
        for item in [parsed.input, *parsed.inputs]:
            if item is not None:
                check_relative_or_within(item, roots)
        return parsed

    def cache_inputs(self, params: Any, env: RendererEnv) -> list[Path]:
        if not isinstance(params, FfmpegParams):
            params = self.validate(params)
        return [resolve_confined(item, env.input_roots) for item in input_names(params)]

    def tool_version(self) -> str:
        found = locate(self.settings.executable)
        line = version_line([found, "-version"]) if found is not None else None
        return line if line is not None else f"ffmpeg unknown ({found or self.settings.executable})"

    def render(self, params: FfmpegParams, ctx: RenderContext) -> dict[str, Any]:
        with contextlib.ExitStack() as opened:
            wanted = input_names(params)
            fds = []
            for item in wanted:  # ffmpeg reads the files we opened, never their names again
                fds.append(open_confined(item, ctx.env.input_roots))
                opened.callback(os.close, fds[-1])
            return self._render(params, ctx, fds, wanted)

    def _render(
        self, params: FfmpegParams, ctx: RenderContext, fds: list[int], wanted: list[str]
    ) -> dict[str, Any]:
        conf = self.settings
        staging = Path(ctx.staging_dir)
        plan = plan_raw(params.args) if params.preset == "raw" else None
        names = [params.args[i] for i in plan.outputs] if plan is not None else [params.output or ""]
        sources = [Path(fd_path(fd)) for fd in fds]
        shown = dict(zip(map(str, sources), wanted, strict=True))
        ctx.progress(0.0, f"{params.preset}: probing input")
        durations = [
            probe_duration(s, ffprobe=conf.ffprobe, demuxers=conf.demuxers, pass_fds=fds, name=shown[str(s)])
            for s in sources
        ]
        total = self._total(params, plan, durations)
        outputs = [staging / name for name in names]
        list_file = staging / ".ffmpeg-concat.txt" if params.preset == "concat" else None
        if list_file is not None:
            list_file.write_text(concat_list(sources))
        argv = build_argv(
            params,
            inputs=sources,
            outputs=outputs,
            list_file=list_file,
            executable=conf.executable,
            demuxers=conf.demuxers,
            stats_period=conf.stats_period,
        )
        stage = f"{params.preset}: encoding"
        ctx.progress(0.0, stage)
        best = [0.0]

        def on_line(line: str, stream: str) -> None:
            if stream != "stdout":
                return
            percent = parse_progress(line, total)
            if percent is not None and percent >= best[0] + 0.5:
                best[0] = percent
                ctx.progress(percent, stage)

        try:
            done = run(
                argv, ctx, cwd=staging, on_line=on_line, quiet_stdout=True, what="ffmpeg", pass_fds=fds
            )
            if done.returncode != 0:
                raise classify_failure(done.returncode, [_named(line, shown) for line in done.tail])
            missing = [p.name for p in outputs if not p.is_file() or p.stat().st_size == 0]
            if missing:
                kind = ErrorKind.INVALID_INPUT if params.preset == "thumbnail" else ErrorKind.UNKNOWN
                detail = " | ".join(_named(line, shown) for line in done.tail[-3:]) or "no message"
                raise RenderError(kind, f"ffmpeg wrote no {', '.join(missing)}: {detail}")
        except BaseException:
            for path in outputs:
                path.unlink(missing_ok=True)
            raise
        finally:
            if list_file is not None:
                list_file.unlink(missing_ok=True)
        ctx.progress(100.0, "done")
        return {
            "outputs": names,
            "size_bytes": sum(p.stat().st_size for p in outputs),
            "duration": self._output_duration(outputs[0]),
            "render_seconds": round(done.seconds, 3),
            "preset": params.preset,
        }

    def _total(
        self, params: FfmpegParams, plan: RawPlan | None, durations: list[float | None]
    ) -> float | None:
        if params.preset == "thumbnail":
            if durations[0] is not None and params.time > durations[0]:
                raise RenderError(
                    ErrorKind.INVALID_INPUT,
                    f"thumbnail time {params.time:g}s is past the end of the input ({durations[0]:.2f}s)",
                )
            return None
        if params.preset == "concat":
            return sum(d for d in durations if d) or None
        total = durations[0]
        if plan is not None and plan.limit is not None:
            total = plan.limit if total is None else min(total, plan.limit)
        return total

    def _output_duration(self, path: Path) -> float | None:
        if path.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS:
            return None
        try:
            return probe_duration(path, ffprobe=self.settings.ffprobe, demuxers=())
        except RenderError:
            return None

    def doctor(self) -> Health:
        try:
            done = subprocess.run(
                [self.settings.executable, "-version"], capture_output=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Health(False, f"{self.settings.executable}: {exc}")
        first = done.stdout.decode("utf-8", "replace").splitlines()[:1]
        if done.returncode != 0 or not first:
            return Health(False, f"{self.settings.executable} -version exited {done.returncode}")
        return Health(True, first[0])
