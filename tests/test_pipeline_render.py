"""A three-stage pipeline with the real tools, submitted in one call: two manim scenes, an ffmpeg
concat of their outputs (job:#i/<name> references), then a thumbnail of the concat. And how it
fails: a scene that breaks cancels what follows; a reference to an output that does not exist
fails its job (not_found) and cancels the rest."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from farm import Farm, JobStatus
from farm.models import ErrorKind
from tests.util import require_tool

SCENES = textwrap.dedent(
    """
    from manim import Circle, Create, Scene, Square


    class Left(Scene):
        def construct(self):
            self.play(Create(Circle()), run_time=0.5)


    class Right(Scene):
        def construct(self):
            self.play(Create(Square()), run_time=0.5)


    class Broken(Scene):
        def construct(self):
            raise ValueError("this scene is broken")
    """
)


def tools() -> None:
    require_tool("ffmpeg")
    require_tool("ffprobe")
    if not Path(sys.executable).with_name("manim").exists():
        require_tool("manim")


def seconds(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def scene(name: str) -> dict[str, object]:
    return {"renderer": "manim", "params": {"script": "scenes.py", "scene": name, "quality": "low"}}


def test_scenes_then_concat_then_thumbnail(farm: Farm, config, burst):
    tools()
    (config.paths.input_roots[0]).mkdir(parents=True, exist_ok=True)
    (config.paths.input_roots[0] / "scenes.py").write_text(SCENES)
    ids = farm.submit_many(
        [
            scene("Left"),
            scene("Right"),
            {
                "renderer": "ffmpeg",
                "name": "both",
                "params": {
                    "preset": "concat",
                    "inputs": ["job:#0/Left.mp4", "job:#1/Right.mp4"],
                    "output": "both.mp4",
                },
            },
            {
                "renderer": "ffmpeg",
                "name": "thumb",
                "params": {
                    "preset": "thumbnail",
                    "input": "job:#2/both.mp4",
                    "output": "thumb.jpg",
                    "time": 0.6,
                },
            },
        ]
    )
    left, right, concat, thumb = ids
    assert farm.get(concat).after == (left, right) and farm.get(thumb).after == (concat,)
    assert farm.get(concat).params["inputs"] == [f"job:{left}/Left.mp4", f"job:{right}/Right.mp4"]
    burst()
    infos = [farm.get(j) for j in ids]
    assert [i.status for i in infos] == [JobStatus.FINISHED] * 4, [(i.status, i.error) for i in infos]
    both = config.output_dir / concat / "both.mp4"
    assert (
        abs(
            seconds(both)
            - (
                seconds(config.output_dir / left / "Left.mp4")
                + seconds(config.output_dir / right / "Right.mp4")
            )
        )
        < 0.3
    )
    assert (config.output_dir / thumb / "thumb.jpg").stat().st_size > 500
    assert [o.name for o in farm.outputs(thumb)] == ["thumb.jpg"]
    assert not any((config.data_dir / "refs").glob("*")) if (config.data_dir / "refs").exists() else True


def test_a_broken_stage_cancels_the_rest_and_a_wrong_output_name_fails_its_job(farm: Farm, config, burst):
    tools()
    (config.paths.input_roots[0]).mkdir(parents=True, exist_ok=True)
    (config.paths.input_roots[0] / "scenes.py").write_text(SCENES)
    broken = farm.submit_many(
        [
            scene("Broken"),
            {
                "renderer": "ffmpeg",
                "params": {"preset": "concat", "inputs": ["job:#0/Broken.mp4"], "output": "x.mp4"},
            },
            {
                "renderer": "ffmpeg",
                "params": {"preset": "thumbnail", "input": "job:#1/x.mp4", "output": "t.jpg"},
            },
        ]
    )
    misnamed = farm.submit_many(
        [
            {"renderer": "demo", "params": {"duration": 0}},
            {
                "renderer": "ffmpeg",
                "params": {"preset": "thumbnail", "input": "job:#0/nope.mp4", "output": "t.jpg"},
            },
            {
                "renderer": "ffmpeg",
                "params": {"preset": "thumbnail", "input": "job:#1/t.jpg", "output": "t2.jpg"},
            },
        ]
    )
    burst()
    first = farm.get(broken[0])
    assert first.status is JobStatus.FAILED
    for job_id in broken[1:]:
        info = farm.get(job_id)
        assert info.status is JobStatus.CANCELED and info.error == f"dependency {broken[0]} failed"
    assert farm.get(misnamed[0]).status is JobStatus.FINISHED
    wrong = farm.get(misnamed[1])
    assert wrong.status is JobStatus.FAILED and wrong.error_kind is ErrorKind.NOT_FOUND
    assert "has no output named 'nope.mp4'" in (wrong.error or "")
    assert farm.get(misnamed[2]).error == f"dependency {misnamed[1]} failed"
