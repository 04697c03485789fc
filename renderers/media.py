"""ffprobe helpers shared by the ffmpeg and manim renderers: media duration and readability."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Sequence
from pathlib import Path

from farm.models import ErrorKind
from farm.render import RenderError

# Demuxers ffmpeg may use on job inputs. Playlist/list formats (hls, concat, ...) are left out:
# they make ffmpeg open further files or URLs named inside an input.
SAFE_DEMUXERS: tuple[str, ...] = (
    "mov",
    "mp4",
    "m4a",
    "matroska",
    "webm",
    "avi",
    "mpegts",
    "flv",
    "gif",
    "image2",
    "png_pipe",
    "jpeg_pipe",
    "webp_pipe",
    "bmp_pipe",
    "wav",
    "mp3",
    "ogg",
    "flac",
    "aac",
    "h264",
    "hevc",
    "ivf",
)


def probe_duration(
    path: Path,
    *,
    ffprobe: str = "ffprobe",
    demuxers: tuple[str, ...] = SAFE_DEMUXERS,
    timeout: float = 30.0,
    pass_fds: Sequence[int] = (),
    name: str | None = None,
) -> float | None:
    """Duration of a media file in seconds; ``None`` for stills or when ffprobe is missing.

    An unreadable or corrupt file raises ``RenderError(INVALID_INPUT)`` with ffprobe's message.
    ``path`` may be an opened input's ``/proc/self/fd/N`` (its fd in ``pass_fds``); messages
    then call it ``name``.
    """
    shown = name if name is not None else path.name
    argv = [ffprobe, "-v", "error"]
    if demuxers:
        argv += ["-format_whitelist", ",".join(demuxers)]
    argv += ["-show_entries", "format=duration", "-of", "default=noprint_wrappers=1:nokey=1", str(path)]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired as exc:
        raise RenderError(ErrorKind.TIMEOUT, f"ffprobe took over {timeout:g}s on {shown}") from exc
    if done.returncode != 0:
        message = last_lines(done.stderr.decode("utf-8", "replace")) or f"exit code {done.returncode}"
        message = message.replace(str(path), shown)
        raise RenderError(ErrorKind.INVALID_INPUT, f"cannot read media {shown}: {message}")
    return parse_duration(done.stdout.decode("utf-8", "replace"))


def parse_duration(text: str) -> float | None:
    """ffprobe's ``format=duration`` value (``N/A`` for stills) as seconds."""
    for line in text.splitlines():
        try:
            value = float(line.strip())
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


def last_lines(text: str, count: int = 3, limit: int = 500) -> str:
    """The last ``count`` non-blank lines of ``text`` joined with ' | ', cut to ``limit`` chars."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = " | ".join(lines[-count:])
    return joined if len(joined) <= limit else "..." + joined[-limit:]
