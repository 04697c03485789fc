"""The policy for the ffmpeg renderer's ``raw`` preset: which arguments job data may pass to ffmpeg.

Strict by design (allowlists, not denylists): every option must be known, inputs (``-i``) are
paths confined at render time, outputs are plain file names in the staging dir, ``-f`` only names
ordinary container formats (no ``lavfi``, ``concat``, capture devices or network protocols), and
filter graphs may only use filters, and filter options, that cannot open files or sockets (see
``renderers.ffmpeg_filters``). No option value ffmpeg may open is accepted: the options that name
files (``-passlogfile``, ``-vstats_file``, ``-attach``, ``-dump_attachment``, ``-sdp_file``,
``-filter_script``, ``-fpre``/``-vpre``, ``-x264-params``/``-x265-params``/``-svtav1-params`` with
their stats files, ffmpeg 7's ``-/option file``...) are simply not on the list. Pure, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from farm.models import ErrorKind
from farm.render import RenderError

from .ffmpeg_filters import check_filtergraph
from .paths import check_relative_or_within, is_text, plain_name, show


class Arg(Enum):
    FLAG = "flag"  # no value
    VALUE = "value"  # a value ffmpeg never opens as a file
    INPUT = "input"  # -i: an input path
    FORMAT = "format"  # -f: a container format from FORMATS
    FILTER = "filter"  # a filter graph checked by renderers.ffmpeg_filters


# fmt: off
_FLAGS = (
    "-an", "-vn", "-sn", "-dn", "-shortest", "-re", "-copyts", "-start_at_zero", "-y",
    "-accurate_seek", "-noaccurate_seek", "-nostdin", "-hide_banner",
)
# Each of these takes a number, a name from a fixed set or free text ffmpeg only stores
# (-metadata); none makes ffmpeg open a path. Keep it that way when adding one.
_VALUES = (
    "-c", "-codec", "-vcodec", "-acodec", "-b", "-crf", "-qp", "-preset", "-tune", "-profile",
    "-level", "-pix_fmt", "-r", "-s", "-aspect", "-ss", "-sseof", "-t", "-to", "-frames",
    "-vframes", "-aframes", "-ar", "-ac", "-q", "-qscale", "-g", "-bf", "-maxrate", "-minrate",
    "-bufsize", "-movflags", "-map", "-map_metadata", "-map_chapters", "-threads", "-loop",
    "-stream_loop", "-itsoffset", "-sample_fmt", "-tag", "-fps_mode", "-vsync", "-strict",
    "-disposition", "-color_primaries", "-color_trc", "-colorspace", "-color_range",
    "-avoid_negative_ts", "-max_muxing_queue_size", "-cpu-used", "-deadline", "-row-mt",
    "-update", "-compression_level", "-lossless", "-metadata", "-framerate", "-video_size",
)
FORMATS = frozenset((
    "mp4", "mov", "matroska", "webm", "gif", "apng", "webp", "image2", "mp3", "wav", "ogg", "opus",
    "flac", "adts", "ipod", "avi", "mpegts", "null",
))
# fmt: on

OPTIONS: dict[str, Arg] = {
    **dict.fromkeys(_FLAGS, Arg.FLAG),
    **dict.fromkeys(_VALUES, Arg.VALUE),
    "-i": Arg.INPUT,
    "-f": Arg.FORMAT,
    **dict.fromkeys(("-vf", "-af", "-filter", "-filter_complex", "-lavfi"), Arg.FILTER),
}

MAX_ARGS = 200
MAX_VALUE_CHARS = 2000
_DURATION = re.compile(r"^\d+(\.\d+)?$")
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.,-]*:")  # what ffmpeg would read as "proto:"


def _invalid(message: str) -> RenderError:
    return RenderError(ErrorKind.INVALID_INPUT, message)


@dataclass(frozen=True)
class RawPlan:
    """Where the inputs and outputs sit in a vetted raw argument list."""

    args: tuple[str, ...]
    inputs: tuple[int, ...]  # indexes of -i values
    outputs: tuple[int, ...]  # indexes of output file names
    limit: float | None  # seconds from an output-side -t, for progress


def check_input(value: str) -> None:
    """Lexically vet an ffmpeg input: a path, never a URL or ``proto:`` (http:, file:, concat:...)."""
    if _PROTOCOL.match(value) or "://" in value:
        raise _invalid(f"ffmpeg inputs must be plain paths, not URLs or protocols: {show(value, 80)}")
    check_relative_or_within(value)


def _plain_text(value: object) -> bool:
    return isinstance(value, str) and "\x00" not in value and len(value) <= MAX_VALUE_CHARS and is_text(value)


def option_kind(arg: str) -> Arg:
    base = arg.split(":", 1)[0]
    kind = OPTIONS.get(base)
    if kind is None:
        raise _invalid(f"ffmpeg option {show(arg, 80)} is not allowed in raw mode")
    return kind


def plan_raw(args: Sequence[str]) -> RawPlan:
    """Vet a raw ffmpeg argument list (without the executable); pure, paths checked lexically."""
    if not args:
        raise _invalid("raw preset needs a non-empty 'args' list")
    if len(args) > MAX_ARGS:
        raise _invalid(f"raw preset takes at most {MAX_ARGS} arguments")
    inputs: list[int] = []
    outputs: list[int] = []
    limit: float | None = None
    index = 0
    while index < len(args):
        arg = args[index]
        if not _plain_text(arg):
            raise _invalid(f"bad ffmpeg argument at position {index}: {show(str(arg), 80)}")
        if not arg.startswith("-") or arg == "-":
            plain_name(arg, what="ffmpeg output name")
            outputs.append(index)
            index += 1
            continue
        kind = option_kind(arg)
        if kind is Arg.FLAG:
            index += 1
            continue
        if index + 1 >= len(args):
            raise _invalid(f"ffmpeg option {show(arg, 80)} needs a value")
        value = args[index + 1]
        if (
            not isinstance(value, str)
            or "\x00" in value
            or len(value) > MAX_VALUE_CHARS
            or not is_text(value)
        ):
            raise _invalid(f"bad value for ffmpeg option {show(arg, 80)}")
        if kind is Arg.INPUT:
            check_input(value)
            inputs.append(index + 1)
        elif kind is Arg.FORMAT and value not in FORMATS:
            raise _invalid(
                f"ffmpeg format {show(value, 80)} is not allowed (allowed: {', '.join(sorted(FORMATS))})"
            )
        elif kind is Arg.FILTER:
            check_filtergraph(value)
        elif arg == "-t" and _DURATION.match(value) and math.isfinite(float(value)):
            limit = float(value) if limit is None else min(limit, float(value))
        index += 2
    if not inputs:
        raise _invalid("raw preset needs at least one '-i' input")
    if not outputs:
        raise _invalid("raw preset needs at least one output file name")
    if outputs[0] < inputs[-1]:
        raise _invalid("in raw mode every '-i' input must come before the outputs")
    names = [args[i] for i in outputs]
    if len(set(names)) != len(names):
        raise _invalid("raw preset names the same output twice")
    return RawPlan(tuple(args), tuple(inputs), tuple(outputs), limit)
