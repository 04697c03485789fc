"""manim renderer against the real manim CLI: tiny scenes at low quality, failures, cancel."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError, SimpleContext
from renderers.manim import ManimRenderer, ManimSettings
from renderers.proc import descendants
from tests.renderers.conftest import ContextFactory
from tests.renderers.helpers import SCENES, ffprobe_json, processes_mentioning
from tests.util import wait_for

pytestmark = pytest.mark.manim


@pytest.fixture
def script(inputs: Path) -> Path:
    path = inputs / "scenes" / "tiny.py"
    path.parent.mkdir()
    path.write_text(SCENES)
    return path


@pytest.fixture
def renderer(manim_exe: str) -> ManimRenderer:
    return ManimRenderer(ManimSettings(executable=manim_exe))


def assert_staging_holds_only(staging: Path, *names: str) -> None:
    assert sorted(p.name for p in staging.iterdir()) == sorted(names)


def test_real_render_produces_a_valid_video_with_progress(
    renderer: ManimRenderer, script: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    ctx = make_ctx()
    params = renderer.validate({"script": "scenes/tiny.py", "scene": "Tiny", "quality": "low"})
    started = time.monotonic()
    result = renderer.render(params, ctx)
    print(f"manim low-quality render took {time.monotonic() - started:.2f}s")

    assert result["outputs"] == ["Tiny.mp4"]
    assert_staging_holds_only(staging, "Tiny.mp4")  # media dir and partial movie files are gone
    video = staging / "Tiny.mp4"
    probe = ffprobe_json(video)
    stream = probe["streams"][0]
    assert (stream["codec_type"], stream["width"], stream["height"]) == ("video", 854, 480)
    assert result["duration"] == pytest.approx(1.4, abs=0.15)
    assert result["size_bytes"] == video.stat().st_size
    assert result["animations"] == 4 and result["render_seconds"] > 0

    percents = [percent for percent, _ in ctx.progress_calls if percent is not None]
    assert percents[0] == 0.0 and percents[-1] == 100.0
    assert percents == sorted(percents)
    stages = [stage for _, stage in ctx.progress_calls]
    assert any(s and s.startswith("Animation 1: Create(Square)") for s in stages)
    assert any(s and s.startswith("Animation 4: FadeOut") for s in stages)
    assert "combining movie file" in stages and stages[-1] == "done"
    assert len(set(stages)) >= 5
    assert any("File ready at" in line for line in ctx.lines)
    assert [p.name for p in script.parent.iterdir()] == ["tiny.py"]  # nothing written next to the script


def test_counted_animations_give_exact_stages(
    manim_exe: str, script: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    renderer = ManimRenderer(ManimSettings(executable=manim_exe, count_animations=True))
    ctx = make_ctx()
    result = renderer.render(
        renderer.validate({"script": "scenes/tiny.py", "scene": "Tiny", "quality": "low"}), ctx
    )
    assert result["animations"] == 4
    stages = [stage or "" for _, stage in ctx.progress_calls]
    assert stages[0] == "counting animations"
    assert any(s.startswith("Animation 2/4:") for s in stages)
    assert any(s.startswith("Animation 4/4: FadeOut") for s in stages)
    percents = [p for p, _ in ctx.progress_calls if p is not None]
    assert percents == sorted(percents)


def test_png_renders_the_last_frame(
    renderer: ManimRenderer, script: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    params = renderer.validate(
        {"script": "scenes/tiny.py", "scene": "Tiny", "quality": "low", "format": "png"}
    )
    result = renderer.render(params, make_ctx())
    assert result["outputs"] == ["Tiny.png"] and result["duration"] is None
    assert_staging_holds_only(staging, "Tiny.png")
    assert ffprobe_json(staging / "Tiny.png")["streams"][0]["codec_name"] == "png"


def test_scene_that_raises_is_invalid_input_with_manims_message(
    renderer: ManimRenderer, script: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    with pytest.raises(RenderError) as caught:
        renderer.render(
            renderer.validate({"script": "scenes/tiny.py", "scene": "Boom", "quality": "low"}), make_ctx()
        )
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "ValueError: kaboom from the scene" in caught.value.message
    assert "tiny.py:" in caught.value.message  # where in the script it failed
    assert "\n" not in caught.value.message
    assert_staging_holds_only(staging)


def test_unknown_scene_is_invalid_input(
    renderer: ManimRenderer, script: Path, make_ctx: ContextFactory
) -> None:
    with pytest.raises(RenderError) as caught:
        renderer.render(
            renderer.validate({"script": "scenes/tiny.py", "scene": "Nope", "quality": "low"}), make_ctx()
        )
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "Nope is not in the script" in caught.value.message


def test_missing_script_is_not_found(renderer: ManimRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        renderer.render(renderer.validate({"script": "scenes/missing.py", "scene": "Tiny"}), make_ctx())
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert "scenes/missing.py" in caught.value.message


def test_script_symlinked_outside_the_roots_is_refused(
    renderer: ManimRenderer, tmp_path: Path, inputs: Path, make_ctx: ContextFactory
) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text(SCENES)
    (inputs / "innocent.py").symlink_to(outside)
    with pytest.raises(RenderError) as caught:
        renderer.render(renderer.validate({"script": "innocent.py", "scene": "Tiny"}), make_ctx())
    assert caught.value.kind is ErrorKind.INVALID_INPUT


class CancelWhenAnimating(SimpleContext):
    """Asks to cancel once manim reports its first animation: a fixed delay is flaky on a busy box."""

    canceled_at: float | None = None

    def cancelled(self) -> bool:
        if self.canceled_at is None and any(
            (stage or "").startswith("Animation") for _, stage in self.progress_calls
        ):
            self.canceled_at = time.monotonic()
        return self.canceled_at is not None


def test_cancel_mid_render_leaves_no_process_behind(
    renderer: ManimRenderer, script: Path, env: RendererEnv, staging: Path, children_before: set[int]
) -> None:
    ctx = CancelWhenAnimating(job_id="job-1", staging_dir=staging, env=env)
    params = renderer.validate({"script": "scenes/tiny.py", "scene": "Slow", "quality": "low"})
    with pytest.raises(RenderError) as caught:
        renderer.render(params, ctx)
    assert caught.value.kind is ErrorKind.CANCELED
    assert ctx.canceled_at is not None and time.monotonic() - ctx.canceled_at < 1.5  # it was rendering
    wait_for(lambda: not processes_mentioning(str(staging)), timeout=5, what="manim gone")
    assert set(descendants(os.getpid())) <= children_before
    assert_staging_holds_only(staging)


def test_doctor_reports_the_version(renderer: ManimRenderer) -> None:
    health = renderer.doctor()
    assert health.ok and "Manim" in health.detail
    assert not ManimRenderer(ManimSettings(executable="/nonexistent/manim")).doctor().ok


def test_scene_imports_sibling_modules_and_reads_assets_beside_it(
    renderer: ManimRenderer, inputs: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    folder = inputs / "lesson"
    folder.mkdir()
    (folder / "helpers.py").write_text("SIDE = 1.5\n")
    (folder / "label.txt").write_text("from the asset\n")
    (folder / "main.py").write_text(
        "from pathlib import Path\n"
        "from manim import *\n"
        "from helpers import SIDE\n\n\n"
        "class UsesHelpers(Scene):\n"
        "    def construct(self):\n"
        "        print('asset says', Path('label.txt').read_text().strip(), flush=True)\n"
        "        self.add(Square(side_length=SIDE))\n"
    )
    ctx = make_ctx()
    params = renderer.validate(
        {"script": "lesson/main.py", "scene": "UsesHelpers", "quality": "low", "format": "png"}
    )
    assert renderer.render(params, ctx)["outputs"] == ["UsesHelpers.png"]
    assert "asset says from the asset" in ctx.lines
    assert sorted(p.name for p in folder.iterdir()) == ["helpers.py", "label.txt", "main.py"]


def test_script_symlinked_inside_the_roots_is_refused_too(
    renderer: ManimRenderer, script: Path, inputs: Path, make_ctx: ContextFactory
) -> None:
    (inputs / "alias.py").symlink_to(script)
    with pytest.raises(RenderError, match="symlinks are not allowed") as caught:
        renderer.render(renderer.validate({"script": "alias.py", "scene": "Tiny"}), make_ctx())
    assert caught.value.kind is ErrorKind.INVALID_INPUT
