"""ffmpeg renderer against real ffmpeg/ffprobe on clips generated with lavfi: presets, errors, cancel."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError, SimpleContext
from renderers.ffmpeg import FfmpegRenderer, FfmpegSettings
from renderers.proc import descendants
from tests.renderers.conftest import ContextFactory
from tests.renderers.helpers import ffprobe_json, processes_mentioning
from tests.util import wait_for

pytestmark = pytest.mark.ffmpeg


@pytest.fixture
def renderer(ffmpeg_exe: str) -> FfmpegRenderer:
    return FfmpegRenderer(FfmpegSettings(executable=ffmpeg_exe, stats_period=0.1))


def render(renderer: FfmpegRenderer, ctx: SimpleContext, **params: Any) -> dict[str, Any]:
    started = time.monotonic()
    result = renderer.render(renderer.validate(params), ctx)
    print(f"ffmpeg {params.get('preset', 'transcode')} took {time.monotonic() - started:.2f}s")
    return result


def test_transcode_reports_progress_and_makes_a_valid_video(
    renderer: FfmpegRenderer, clips: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    ctx = make_ctx()
    result = render(
        renderer,
        ctx,
        input="clip4.mp4",
        output="small.webm",
        video_codec="libvpx-vp9",
        crf=40,
        scale="320:-2",
    )
    assert result["outputs"] == ["small.webm"]
    assert sorted(p.name for p in staging.iterdir()) == ["small.webm"]
    probe = ffprobe_json(staging / "small.webm")
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("vp9", 320, 180)
    assert result["duration"] == pytest.approx(4.0, abs=0.1)
    percents = [p for p, _ in ctx.progress_calls if p is not None]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any(0 < p < 100 for p in percents), percents  # real progress from -progress pipe:1
    assert not any(line.startswith("out_time") for line in ctx.lines)  # progress lines are not logged


def test_thumbnail(renderer: FfmpegRenderer, clips: Path, make_ctx: ContextFactory, staging: Path) -> None:
    result = render(
        renderer, make_ctx(), preset="thumbnail", input="clip2.mp4", output="t.png", time=1.0, scale="160:-1"
    )
    assert result["outputs"] == ["t.png"] and result["duration"] is None
    stream = ffprobe_json(staging / "t.png")["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("png", 160, 120)


def test_thumbnail_past_the_end_is_invalid_input(
    renderer: FfmpegRenderer, clips: Path, make_ctx: ContextFactory
) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), preset="thumbnail", input="clip2.mp4", output="t.png", time=30)
    assert caught.value.kind is ErrorKind.INVALID_INPUT and "past the end" in caught.value.message


def test_concat_joins_inputs_and_cleans_its_list(
    renderer: FfmpegRenderer, clips: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    (clips / "it's here.mp4").write_bytes((clips / "clip2.mp4").read_bytes())  # quote in a name
    result = render(
        renderer, make_ctx(), preset="concat", inputs=["clip2.mp4", "it's here.mp4"], output="both.mp4"
    )
    assert result["duration"] == pytest.approx(4.0, abs=0.2)
    assert sorted(p.name for p in staging.iterdir()) == ["both.mp4"]


def test_raw_preset_with_a_filter(
    renderer: FfmpegRenderer, clips: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    args = ["-i", "clip4.mp4", "-t", "1", "-vf", "scale=160:-2,fps=10", "-an", "tiny.mp4"]
    result = render(renderer, make_ctx(), preset="raw", args=args)
    assert result["outputs"] == ["tiny.mp4"] and result["duration"] == pytest.approx(1.0, abs=0.15)
    assert ffprobe_json(staging / "tiny.mp4")["streams"][0]["width"] == 160


def test_corrupt_input_is_invalid_input_with_ffmpegs_message(
    renderer: FfmpegRenderer, inputs: Path, make_ctx: ContextFactory
) -> None:
    (inputs / "broken.mp4").write_bytes(b"this is not a video\n" * 200)  # random bytes can pass for mp3
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), input="broken.mp4", output="out.mp4")
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "Invalid data found when processing input" in caught.value.message
    assert "broken.mp4" in caught.value.message


def test_playlist_reaching_outside_the_roots_is_refused(
    renderer: FfmpegRenderer,
    ffmpeg_exe: str,
    clip_dir: Path,
    tmp_path: Path,
    inputs: Path,
    make_ctx: ContextFactory,
) -> None:
    outside = tmp_path / "outside.ts"  # a file outside every input root
    subprocess.run(
        [ffmpeg_exe, "-loglevel", "error", "-i", str(clip_dir / "clip2.mp4"), "-c", "copy", str(outside)]
    )
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{outside}\n#EXT-X-ENDLIST\n"
    (inputs / "evil.mp4").write_text(playlist)  # an HLS playlist dressed up as a video
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), input="evil.mp4", output="out.mp4")
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    # the control: without the demuxer whitelist ffmpeg would have read the outside file
    permissive = FfmpegRenderer(FfmpegSettings(executable=ffmpeg_exe, demuxers=()))
    assert render(permissive, make_ctx(), input="evil.mp4", output="out.mp4")["duration"] > 1


def test_encoder_failure_is_reported_from_ffmpegs_output(
    renderer: FfmpegRenderer, clips: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), preset="raw", args=["-i", "clip2.mp4", "-c:v", "no_such_codec", "o.mp4"])
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "no_such_codec" in caught.value.message
    assert list(staging.iterdir()) == []


def test_missing_input_is_not_found(renderer: FfmpegRenderer, inputs: Path, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), input="nope.mp4", output="out.mp4")
    assert caught.value.kind is ErrorKind.NOT_FOUND


def test_input_symlinked_outside_is_refused(
    renderer: FfmpegRenderer, clip_dir: Path, inputs: Path, make_ctx: ContextFactory
) -> None:
    (inputs / "link.mp4").symlink_to(clip_dir / "clip2.mp4")
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), input="link.mp4", output="out.mp4")
    assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_cancel_mid_encode_leaves_no_ffmpeg_behind(
    renderer: FfmpegRenderer, clips: Path, make_ctx: ContextFactory, staging: Path, children_before: set[int]
) -> None:
    ctx = make_ctx(cancel_after=1.0)
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:  # -re reads at real speed: 4 s of input takes 4 s
        render(renderer, ctx, preset="raw", args=["-re", "-i", "clip4.mp4", "slow.mp4"])
    assert caught.value.kind is ErrorKind.CANCELED
    assert time.monotonic() - started < 2.5
    assert any(0 < (p or 0) < 100 for p, _ in ctx.progress_calls)  # it was really encoding
    wait_for(lambda: not processes_mentioning(str(staging)), timeout=5, what="ffmpeg gone")
    assert set(descendants(os.getpid())) <= children_before
    assert list(staging.iterdir()) == []  # the partial output was removed


def test_deadline_is_a_timeout(
    renderer: FfmpegRenderer, clips: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    ctx = make_ctx(deadline=time.monotonic() + 0.8)
    with pytest.raises(RenderError) as caught:
        render(renderer, ctx, preset="raw", args=["-re", "-i", "clip4.mp4", "slow.mp4"])
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert not processes_mentioning(str(staging))


def test_doctor(renderer: FfmpegRenderer) -> None:
    health = renderer.doctor()
    assert health.ok and health.detail.startswith("ffmpeg version")
    assert not FfmpegRenderer(FfmpegSettings(executable="/nonexistent/ffmpeg")).doctor().ok


def test_endless_output_stops_at_the_size_limit(
    renderer: FfmpegRenderer, clips: Path, env: RendererEnv, staging: Path
) -> None:
    limited = replace(env, max_output_bytes=2_000_000)
    # the deadline only bounds the damage were the limit ever missing (~100 MB/s of output)
    ctx = SimpleContext(job_id="loop", staging_dir=staging, env=limited, deadline=time.monotonic() + 3)
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(
            renderer,
            ctx,
            preset="raw",
            args=["-stream_loop", "-1", "-i", "clip2.mp4", "-c", "copy", "loop.mkv"],
        )
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "ffmpeg exceeded limits.max_output_bytes (2000000 bytes)" in caught.value.message
    assert time.monotonic() - started < 10
    assert list(staging.iterdir()) == []
