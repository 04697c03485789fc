"""The ffmpeg renderer's params model: presets, their fields, and the checks that need no disk.

Used by ``renderers.ffmpeg`` (``FfmpegRenderer.Params``); the raw preset's arguments are vetted
by ``renderers.ffmpeg_raw``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, field_validator, model_validator

from farm.render import Params, RenderError

from .ffmpeg_raw import check_input, plan_raw
from .paths import as_value_error, plain_name

Preset = Literal["transcode", "concat", "thumbnail", "raw"]
VideoCodec = Literal["libx264", "libx265", "libvpx-vp9", "libaom-av1", "mpeg4", "gif", "copy"]
AudioMode = Literal["copy", "aac", "libopus", "libmp3lame", "none"]
Speed = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]  # fmt: skip

# fmt: off
VIDEO_EXTENSIONS = frozenset((
    "mp4", "mov", "mkv", "webm", "gif", "avi", "m4v", "mp3", "m4a", "wav", "ogg", "opus", "flac", "aac",
))
IMAGE_EXTENSIONS = frozenset(("png", "jpg", "jpeg", "webp", "bmp"))
# fmt: on
MAX_CONCAT_INPUTS = 500
_SCALE = re.compile(r"^(-1|-2|\d{1,5}):(-1|-2|\d{1,5})$")


def _check_input(value: str) -> str:
    try:
        check_input(value)
    except RenderError as exc:
        raise as_value_error(exc) from exc
    return value


class FfmpegParams(Params):
    preset: Preset = Field(default="transcode", description="what to do")
    input: str | None = Field(default=None, description="input file (transcode, thumbnail)")
    inputs: tuple[str, ...] = Field(default=(), description="input files, in order (concat)")
    output: str | None = Field(default=None, description="output file name, no directories")
    video_codec: VideoCodec | None = None
    crf: int | None = Field(default=None, ge=0, le=63)
    speed: Speed | None = Field(default=None, description="encoder preset (-preset)")
    scale: str | None = Field(default=None, description="W:H, -1/-2 keep the aspect ratio")
    audio: AudioMode | None = None
    time: float = Field(default=0.0, ge=0, le=86_400, description="thumbnail offset in seconds")
    args: tuple[str, ...] = Field(default=(), description="raw preset: ffmpeg arguments")

    @field_validator("input")
    @classmethod
    def _lexical_input(cls, value: str | None) -> str | None:
        return None if value is None else _check_input(value)

    @field_validator("inputs")
    @classmethod
    def _lexical_inputs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_input(item) for item in value)

    @field_validator("output")
    @classmethod
    def _plain_output(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return plain_name(value)
        except RenderError as exc:
            raise as_value_error(exc) from exc

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: str | None) -> str | None:
        if value is not None and not _SCALE.match(value):
            raise ValueError(f"scale must look like 1280:720 or -2:720, not {value!r}")
        return value

    @model_validator(mode="after")
    def _fits_preset(self) -> FfmpegParams:
        given = {name for name in self.model_fields_set if name != "preset"}
        allowed = {
            "transcode": {"input", "output", "video_codec", "crf", "speed", "scale", "audio"},
            "concat": {"inputs", "output", "video_codec", "crf", "speed", "scale", "audio"},
            "thumbnail": {"input", "output", "time", "scale"},
            "raw": {"args"},
        }[self.preset]
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"preset {self.preset!r} does not take {', '.join(extra)}")
        if self.preset == "raw":
            try:
                plan_raw(self.args)
            except RenderError as exc:
                raise as_value_error(exc) from exc
            return self
        if self.preset == "concat":
            if not 1 <= len(self.inputs) <= MAX_CONCAT_INPUTS:
                raise ValueError(f"concat needs 1 to {MAX_CONCAT_INPUTS} inputs")
            if any("\n" in item or "\r" in item for item in self.inputs):
                raise ValueError("concat inputs may not contain line breaks")
        elif self.input is None:
            raise ValueError(f"preset {self.preset!r} needs 'input'")
        if self.output is None:
            raise ValueError(f"preset {self.preset!r} needs 'output'")
        suffix = PurePosixPath(self.output).suffix.lower().lstrip(".")
        wanted = IMAGE_EXTENSIONS if self.preset == "thumbnail" else VIDEO_EXTENSIONS
        if suffix not in wanted:
            raise ValueError(f"output of {self.preset!r} must end in one of: {', '.join(sorted(wanted))}")
        if self.video_codec == "copy" and (self.crf is not None or self.scale or self.speed):
            raise ValueError("video_codec 'copy' cannot be combined with crf, speed or scale")
        return self
