"""Real renders through the whole farm: a teammate submits from Python, real workers run manim,
ffmpeg and an orchestrator-style HTTP service, and the outputs/URLs and error kinds come back."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from redis import Redis

from farm import ErrorKind, Farm, JobStatus
from tests.renderers.helpers import SCENES
from tests.renderers.http_server import FakeService
from tests.util import wait_for


@pytest.fixture
def farm_e2e(
    make_config, connection: Redis, redis_url: str, http_service: FakeService, manim_exe: str, ffmpeg_exe: str
) -> Farm:
    services = {
        "orchestrator": {"base_url": http_service.url, "mode": "sync", "preset": "orchestrator"},
        "flaky": {"base_url": http_service.url, "render_path": "/e500", "preset": "orchestrator"},
        "strict": {"base_url": http_service.url, "render_path": "/e422", "preset": "orchestrator"},
        "gone": {"base_url": http_service.url, "render_path": "/nowhere", "preset": "orchestrator"},
    }
    config = make_config(
        renderers={"manim": {"executable": manim_exe}, "http": {"services": services}},
        retry={"base_delay": 0.5, "max_delay": 1.0, "jitter": 0.0},
    )
    return Farm(connection, config, url=redis_url)


def inputs(farm: Farm) -> Path:
    return farm.config.input_roots[0]


def ffprobe_duration(path: str) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def test_manim_scene_renders_through_the_farm(farm_e2e: Farm, procs, connection: Redis):
    farm = farm_e2e
    (inputs(farm) / "scenes").mkdir()
    (inputs(farm) / "scenes" / "tiny.py").write_text(SCENES)
    job_id = farm.submit(
        "manim",
        {"script": "scenes/tiny.py", "scene": "Longer", "quality": "low"},
        job_type="doubt",
        name="intro",
    )
    procs.worker("--processes", "1")
    stages: set[str] = set()

    def done() -> bool:
        info = farm.get(job_id)
        if info.status is JobStatus.RUNNING and info.stage:
            stages.add(info.stage)
        return info.status.terminal

    started = time.monotonic()
    wait_for(done, timeout=120, interval=0.05)
    took = time.monotonic() - started
    info = farm.get(job_id)
    assert info.status is JobStatus.FINISHED, info.error
    output = info.result["outputs"][0]
    assert output.startswith(str(farm.config.output_dir / job_id)) and output.endswith("Longer.mp4")
    assert 2.8 < ffprobe_duration(output) < 3.3
    assert info.progress == 100
    assert any("Animation" in s for s in stages), stages
    assert not list(farm.config.output_dir.glob(".*.partial"))  # nothing half-written left behind
    assert farm.log_tail(job_id)
    print(f"manim low-quality render through the farm: {took:.1f}s")


def test_manim_scene_error_is_invalid_input(farm_e2e: Farm, config, redis_url):
    from tests.util import run_burst

    farm = farm_e2e
    (inputs(farm) / "boom.py").write_text(SCENES)
    job_id = farm.submit("manim", {"script": "boom.py", "scene": "Boom", "quality": "low"})
    missing = farm.submit("manim", {"script": "nope.py", "scene": "Tiny", "quality": "low"})
    run_burst(farm.config, redis_url)
    info = farm.get(job_id)
    assert (info.status, info.error_kind) == (JobStatus.FAILED, ErrorKind.INVALID_INPUT)
    assert "kaboom from the scene" in info.error
    info = farm.get(missing)
    assert (info.status, info.error_kind) == (JobStatus.FAILED, ErrorKind.NOT_FOUND)


def test_cancel_manim_render_leaves_no_manim_process(farm_e2e: Farm, procs):
    farm = farm_e2e
    (inputs(farm) / "slow.py").write_text(SCENES)
    job_id = farm.submit("manim", {"script": "slow.py", "scene": "Slow", "quality": "low"})
    procs.worker("--processes", "1")
    wait_for(lambda: "Animation" in (farm.get(job_id).stage or ""), timeout=60)
    assert farm.cancel(job_id).status is JobStatus.CANCELED
    time.sleep(0.5)
    out = subprocess.run(["pgrep", "-af", "manim"], capture_output=True, text=True)
    assert "slow.py" not in out.stdout


def test_ffmpeg_transcode_and_thumbnail(farm_e2e: Farm, clip_dir: Path, config, redis_url):
    from tests.util import run_burst

    farm = farm_e2e
    shutil.copy(clip_dir / "clip2.mp4", inputs(farm) / "clip.mp4")
    transcode = farm.submit(
        "ffmpeg", {"preset": "transcode", "input": "clip.mp4", "output": "small.mp4", "scale": "160:-2"}
    )
    thumb = farm.submit(
        "ffmpeg", {"preset": "thumbnail", "input": "clip.mp4", "output": "thumb.jpg", "time": 1}
    )
    (inputs(farm) / "corrupt.mp4").write_bytes(b"not a video at all" * 100)
    corrupt = farm.submit("ffmpeg", {"preset": "transcode", "input": "corrupt.mp4", "output": "x.mp4"})
    run_burst(farm.config, redis_url)
    info = farm.get(transcode)
    assert info.status is JobStatus.FINISHED, info.error
    assert abs(ffprobe_duration(info.result["outputs"][0]) - 2.0) < 0.2
    assert Path(farm.get(thumb).result["outputs"][0]).stat().st_size > 0
    info = farm.get(corrupt)
    assert (info.status, info.error_kind) == (JobStatus.FAILED, ErrorKind.INVALID_INPUT)


PAYLOAD = {
    "job_type": "doubt",
    "input": "What is a derivative?",
    "style": "chalk",
    "length": 60,
    "voice": "en-1",
}


def test_orchestrator_http_render(farm_e2e: Farm, http_service: FakeService, config, redis_url):
    from tests.util import run_burst

    farm = farm_e2e
    job_id = farm.submit("http", {"service": "orchestrator", "payload": PAYLOAD})
    gone = farm.submit("http", {"service": "gone", "payload": PAYLOAD})
    strict = farm.submit("http", {"service": "strict", "payload": PAYLOAD})
    run_burst(farm.config, redis_url)
    info = farm.get(job_id)
    assert info.status is JobStatus.FINISHED, info.error
    assert info.result["video_url"] == f"https://cdn.example/{job_id}.mp4"
    assert info.result["processing_time_ms"] == 1234
    assert farm.get(gone).error_kind is ErrorKind.NOT_FOUND
    strict_info = farm.get(strict)
    assert (strict_info.status, strict_info.error_kind, strict_info.attempts) == (
        JobStatus.FAILED,
        ErrorKind.INVALID_INPUT,
        1,
    )


def test_http_500_is_retried_then_failed(farm_e2e: Farm, procs):
    farm = farm_e2e
    job_id = farm.submit("http", {"service": "flaky", "payload": PAYLOAD}, max_retries=2)
    procs.scheduler()
    procs.worker("--processes", "1")
    info = farm.wait(job_id, timeout=60)
    assert (info.status, info.error_kind, info.attempts) == (JobStatus.FAILED, ErrorKind.API_ERROR, 3)
    assert all(a.error_kind is ErrorKind.API_ERROR for a in info.history)
