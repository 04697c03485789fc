"""Teammates on other machines: a render host (``farm up`` with Redis on TCP and a password,
``farm serve``), a second box (its own data dir and input roots, a worker pointed at the host's
Redis), and a teammate process in another directory with no config file and no shared disk.

The teammate submits a manim scene file it owns, a worker on either box renders it, and the
teammate downloads the video with its checksum verified. Policy comes from the render host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from farm import Farm, InvalidJobError
from tests.util import free_port, require_tool, wait_for, write_toml

PASSWORD = "teammate-password-1234"
TOKEN = "teammate-token-abcdefghijklmnop"
SCENE = textwrap.dedent(
    """
    from manim import Circle, Create, Scene


    class Intro(Scene):
        def construct(self):
            self.play(Create(Circle()), run_time=0.5)
    """
)


class Box:
    """One machine of the farm: its own directory, config and processes."""

    def __init__(self, root: Path, name: str, config: dict[str, Any], env: dict[str, str]) -> None:
        self.root = root / name
        self.root.mkdir(parents=True)
        (self.root / "inputs").mkdir()
        self.name = name
        self.config_path = self.root / "farm.toml"
        write_toml(self.config_path, config)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FARM_")},
            "FARM_CONFIG": str(self.config_path),
            "FARM_TOKEN": TOKEN,
            "HOME": str(self.root),  # no user-level config from the machine
            **env,
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{args[0]}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "farm", *args],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def farm_of_two(tmp_path: Path) -> Iterator[dict[str, Any]]:
    short = Path(os.environ.get("TMPDIR", "/tmp")) / f"farm-tm-{os.getpid()}-{time.monotonic_ns()}"
    redis_port, serve_port = free_port(), free_port()
    common = {
        "caps": {"windows": []},
        "scheduler": {"interval": 0.2, "sweep_interval": 1.0, "worker_timeout": 3.0},
        "worker": {"heartbeat_interval": 0.5},
    }
    host = Box(
        short,
        "host",
        {
            **common,
            "redis": {"bind": f"127.0.0.1:{redis_port}"},
            "paths": {
                "data_dir": str(short / "host" / "data"),
                "input_roots": [str(short / "host" / "inputs")],
            },
            "serve": {"port": serve_port},
            "retry": {"max_retries": 0},
            "renderers": {"manim": {"timeout": 300}},
        },
        {"FARM_REDIS_PASSWORD": PASSWORD},
    )
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/0"
    box = Box(
        short,
        "box",
        {
            **common,
            "redis": {"url": url},
            "paths": {
                "data_dir": str(short / "box" / "data"),
                "input_roots": [str(short / "box" / "inputs")],
            },
        },
        {},
    )
    host.start("up", "--no-tui", "--workers", "1")
    connection = Redis.from_url(url)
    wait_for(lambda: _answers(connection), timeout=30, what="the host's Redis on TCP")
    wait_for(lambda: connection.hget("farm:serve", "url"), timeout=30, what="farm serve")
    wait_for(lambda: connection.exists("farm:policy"), timeout=30, what="the host's policy")
    box.start("worker", "--processes", "1", "--name", "box")
    try:
        yield {"host": host, "box": box, "url": url, "connection": connection, "root": short}
    finally:
        box.stop()
        host.stop()
        connection.close()
        subprocess.run(["rm", "-rf", str(short)], check=False)


def _answers(connection: Redis) -> bool:
    try:
        return bool(connection.ping())
    except Exception:
        return False


TEAMMATE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from farm import Farm

    url, count = sys.argv[1], int(sys.argv[2])
    Path("scenes").mkdir()
    Path("scenes/intro.py").write_text(sys.stdin.read())
    farm = Farm.connect(url, who="ana@laptop")
    ids = [
        farm.submit("manim", {"script": "scenes/intro.py", "scene": "Intro", "quality": "low"},
                    files=["scenes/intro.py"], name=f"intro-{n}")
        for n in range(count)
    ]
    report = []
    for job_id in ids:
        info = farm.wait(job_id, timeout=240)
        files = farm.download(job_id, f"renders/{job_id}") if info.status.value == "finished" else []
        report.append({"id": job_id, "status": info.status.value, "error": info.error, "worker": info.worker,
                       "max_retries": info.max_retries, "by": info.by,
                       "files": [str(p) for p in files],
                       "outputs": [o.model_dump() for o in farm.outputs(job_id)]})
    print(json.dumps(report))
    """
)


def test_a_teammate_without_config_or_shared_disk_renders_on_either_box_and_downloads(
    farm_of_two: dict[str, Any], tmp_path: Path
):
    require_tool("ffmpeg")
    manim = Path(sys.executable).with_name("manim")
    if not manim.exists():
        require_tool("manim")
    teammate = tmp_path / "teammate"
    teammate.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(HOME=str(teammate), FARM_TOKEN=TOKEN)
    done = subprocess.run(
        [sys.executable, "-c", TEAMMATE, farm_of_two["url"], "4"],
        input=SCENE,
        cwd=teammate,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:] + farm_of_two["host"].logs()[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["status"] for r in report] == ["finished"] * 4, report
    boxes = {("box" if r["worker"] == "box" else "host") for r in report}
    assert boxes == {"host", "box"}, report  # placement never decides success
    for job in report:
        assert job["max_retries"] == 0  # the render host's policy, not the teammate's defaults
        assert job["by"] == "ana@laptop"
        (video,) = [Path(p) for p in job["files"]]
        assert (teammate / video).stat().st_size > 1000
        (output,) = job["outputs"]
        assert output["url"] and "sig=" in output["url"]
        import hashlib

        assert hashlib.sha256((teammate / video).read_bytes()).hexdigest() == output["sha256"]
    # Every box's outputs landed in the host's store, none on the second box.
    host_outputs = farm_of_two["root"] / "host" / "data" / "output"
    assert all((host_outputs / job["id"]).is_dir() for job in report)
    box_outputs = farm_of_two["root"] / "box" / "data" / "output"
    assert not box_outputs.exists() or not any(p for p in box_outputs.iterdir() if p.name != ".partial")


def test_a_refused_submit_with_files_leaves_nothing_behind(farm_of_two: dict[str, Any], tmp_path: Path):
    connection: Redis = farm_of_two["connection"]
    scene = tmp_path / "scene.py"
    scene.write_text(SCENE)
    os.environ["FARM_TOKEN"] = TOKEN
    try:
        farm = Farm.connect(farm_of_two["url"])
        farm.submit("demo", {"duration": 0}, job_id="taken-id")
        uploads = farm_of_two["root"] / "host" / "data" / "uploads"
        before = sorted(connection.scan_iter("rq:job:*"))
        with pytest.raises(InvalidJobError, match="already exists"):
            farm.submit(
                "manim", {"script": "scene.py", "scene": "Intro"}, files=[str(scene)], job_id="taken-id"
            )
        with pytest.raises(InvalidJobError):
            farm.submit("manim", {"script": "scene.py", "scene": "not a class"}, files=[str(scene)])
        assert sorted(connection.scan_iter("rq:job:*")) == before
        leftovers = [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []
        assert leftovers == []
    finally:
        os.environ.pop("FARM_TOKEN", None)


def test_cli_ids_accept_unique_prefixes(farm_of_two: dict[str, Any]):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_REDIS_URL"] = farm_of_two["url"]
    farm = Farm.connect(farm_of_two["url"])
    farm.submit("demo", {"duration": 0}, job_id="abcdef-one")
    farm.submit("demo", {"duration": 0}, job_id="abcdef-two")
    one = subprocess.run(
        [sys.executable, "-m", "farm", "show", "abcdef-o"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert one.returncode == 0 and "abcdef-one" in one.stdout, one.stderr
    both = subprocess.run(
        [sys.executable, "-m", "farm", "show", "abcdef"], env=env, capture_output=True, text=True, timeout=60
    )
    assert both.returncode == 2 and "abcdef-one" in both.stderr and "abcdef-two" in both.stderr
    assert both.stderr.count("\n") == 1
    listed = subprocess.run(
        [sys.executable, "-m", "farm", "ls"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    short = next(line.split()[0] for line in listed.splitlines() if line.startswith("abcdef-one"[:12]))
    assert (
        subprocess.run(
            [sys.executable, "-m", "farm", "show", short], env=env, capture_output=True, timeout=60
        ).returncode
        == 0
    )


def test_the_farm_up_banner_shows_every_url(farm_of_two: dict[str, Any]):
    logs = farm_of_two["host"].logs()
    wait_for(lambda: "farm serve" in farm_of_two["host"].logs(), timeout=10, what="the banner")
    logs = farm_of_two["host"].logs()
    assert "redis://:***@" in logs and PASSWORD not in logs
    assert "farm serve  http://127.0.0.1:" in logs


def test_a_pipeline_stage_on_the_other_box_fetches_its_input_through_the_store(
    farm_of_two: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The host's worker is kept busy, so both stages run on the second box: the scene's video is
    sent to the host's store, and the thumbnail's job:#0/Intro.mp4 is downloaded back from it."""
    require_tool("ffmpeg")
    if not Path(sys.executable).with_name("manim").exists():
        require_tool("manim")
    scene = tmp_path / "intro.py"
    scene.write_text(SCENE)
    os.environ["FARM_TOKEN"] = TOKEN
    try:
        farm = Farm.connect(farm_of_two["url"])
        blocker = farm.submit("demo", {"duration": 120}, priority="high", name="keeps-the-host-busy")
        wait_for(lambda: farm.get(blocker).worker not in (None, "box"), timeout=30, what="the host busy")
        monkeypatch.chdir(tmp_path)
        scene_id, thumb_id = farm.submit_many(
            [
                {
                    "renderer": "manim",
                    "params": {"script": "intro.py", "scene": "Intro", "quality": "low"},
                    "files": ["intro.py"],
                },
                {
                    "renderer": "ffmpeg",
                    "params": {"preset": "thumbnail", "input": "job:#0/Intro.mp4", "output": "thumb.jpg"},
                },
            ]
        )
        info = farm.wait(thumb_id, timeout=240)
        assert info.status.value == "finished", (info.error, farm_of_two["box"].logs()[-3000:])
        assert farm.get(scene_id).worker == "box" and info.worker == "box"
        (thumb,) = farm.download(thumb_id, tmp_path / "out")
        assert thumb.name == "thumb.jpg" and thumb.stat().st_size > 500
        refs_left = farm_of_two["root"] / "box" / "data" / "refs"
        assert not refs_left.exists() or not any(refs_left.iterdir())
        farm.cancel(blocker)
    finally:
        os.environ.pop("FARM_TOKEN", None)
