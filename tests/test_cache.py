"""The render cache against a real Redis, real workers and real ffmpeg: a hit reuses the earlier
job's outputs (hard links) and says so; what changes the key (params, an input file's bytes,
the cache flag); identical jobs running together render once (the probe renderer's own log
counts real executions); a holder that goes away hands the render on; bounds and clear."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from redis import Redis

from farm import Farm, JobStatus, keys
from farm.cache import entries
from farm.cache.key import digest
from farm.config import FarmConfig
from tests.faults import read_probe
from tests.util import require_tool, wait_for, wait_workers

PROBE = {"probe": "tests.faults:ProbeRenderer"}


def clip(path: Path, seconds: int = 1, color: str = "red") -> Path:
    ffmpeg = require_tool("ffmpeg")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"color=c={color}:size=160x120:duration={seconds}:rate=10", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def thumb(farm: Farm, **extra: object) -> str:
    return farm.submit(
        "ffmpeg", {"preset": "thumbnail", "input": "clip.mp4", "output": "t.jpg", **extra}, cache=True
    )


def test_an_identical_render_reuses_the_earlier_outputs(farm: Farm, config: FarmConfig, burst):
    clip(config.paths.input_roots[0] / "clip.mp4")
    first = thumb(farm)
    burst()
    second = thumb(farm)
    burst()
    one, two = farm.get(first), farm.get(second)
    assert one.status is JobStatus.FINISHED and one.cached_from is None
    assert two.status is JobStatus.FINISHED and two.cached_from == first
    a, b = config.output_dir / first / "t.jpg", config.output_dir / second / "t.jpg"
    assert a.read_bytes() == b.read_bytes() and os.stat(a).st_ino == os.stat(b).st_ino  # a hard link
    assert [o.sha256 for o in farm.outputs(second)] == [o.sha256 for o in farm.outputs(first)]
    assert any("render cache: reusing the outputs of job" in line for line in farm.log_tail(second))
    [entry] = farm.cache_entries()
    assert (entry.job_id, entry.hits, entry.files, entry.renderer) == (first, 1, 1, "ffmpeg")


def test_what_makes_a_different_render(farm: Farm, config: FarmConfig, burst):
    source = clip(config.paths.input_roots[0] / "clip.mp4")
    first = thumb(farm)
    burst()
    other_params = thumb(farm, time=0.5)
    no_cache = farm.submit("ffmpeg", {"preset": "thumbnail", "input": "clip.mp4", "output": "t.jpg"})
    burst()
    clip(source, color="blue")  # same name, new bytes
    new_input = thumb(farm)
    burst()
    assert farm.get(other_params).cached_from is None
    assert farm.get(no_cache).cached_from is None
    assert farm.get(new_input).cached_from is None
    assert (config.output_dir / new_input / "t.jpg").read_bytes() != (
        config.output_dir / first / "t.jpg"
    ).read_bytes()
    assert {e.job_id for e in farm.cache_entries()} == {
        first,
        other_params,
        new_input,
    }  # not the uncached one


def test_identical_jobs_running_together_render_once(
    make_config, connection: Redis, redis_url, procs, tmp_path
):
    config = make_config(plugins=PROBE)
    farm = Farm(connection, config, url=redis_url)
    log = tmp_path / "probe.log"
    procs.worker("--workers", "3")
    wait_workers(connection, 3)
    ids = [farm.submit("probe", {"seconds": 1.5, "log": str(log)}, cache=True) for _ in range(3)]
    wait_for(lambda: all(farm.get(j).status is JobStatus.FINISHED for j in ids), timeout=30)
    runs = read_probe(log).runs
    assert len(runs) == 1, runs  # one real execution
    rendered = runs[0].job
    assert sorted(farm.get(j).cached_from or "" for j in ids) == sorted(["", rendered, rendered])
    assert any(
        "is rendering the same thing; waiting" in line
        for j in ids
        if j != rendered
        for line in farm.log_tail(j)
    )


def test_when_the_render_being_waited_for_is_canceled_a_waiting_job_renders(
    make_config, connection: Redis, redis_url, procs, tmp_path
):
    config = make_config(plugins=PROBE)
    farm = Farm(connection, config, url=redis_url)
    log = tmp_path / "probe.log"
    procs.worker("--workers", "2")
    wait_workers(connection, 2)
    first = farm.submit("probe", {"seconds": 30, "log": str(log)}, cache=True)
    wait_for(lambda: farm.get(first).status is JobStatus.RUNNING)
    second = farm.submit("probe", {"seconds": 1, "log": str(log)}, cache=True)  # a different key
    twin = farm.submit("probe", {"seconds": 30, "log": str(log)}, cache=True)
    wait_for(lambda: "waiting for" in farm.get(twin).stage, what="the twin waiting")
    farm.cancel(first)
    wait_for(lambda: len(read_probe(log).by_job().get(twin, [])) == 1, timeout=20, what="the twin rendering")
    farm.cancel(twin)
    assert farm.get(second).status is JobStatus.FINISHED


def test_entries_are_bounded_and_cleared(make_config, connection: Redis, redis_url, burst):
    config = make_config(cache={"max_bytes": 1})
    farm = Farm(connection, config, url=redis_url)
    clip(config.paths.input_roots[0] / "clip.mp4")
    first = thumb(farm)
    burst()
    time.sleep(0.01)
    second = thumb(farm, time=0.5)
    burst()
    assert {e.job_id for e in farm.cache_entries()} == {first, second}
    assert entries.trim(connection, config) == 2  # both over 1 byte; oldest first
    assert farm.cache_entries() == []
    third = thumb(farm)
    burst()
    assert farm.get(third).cached_from is None  # the entry was gone: rendered again
    assert connection.ttl(keys.CACHE + farm.cache_entries()[0].key) <= config.retention.finished
    assert farm.clear_cache() == 1 and farm.cache_entries() == []
    assert (config.output_dir / third / "t.jpg").exists()  # clearing keeps the outputs


def test_a_hit_whose_outputs_are_gone_renders_again(farm: Farm, config: FarmConfig, burst):
    clip(config.paths.input_roots[0] / "clip.mp4")
    first = thumb(farm)
    burst()
    (config.output_dir / first / "t.jpg").unlink()
    second = thumb(farm)
    burst()
    info = farm.get(second)
    assert info.status is JobStatus.FINISHED and info.cached_from is None
    assert [e.job_id for e in farm.cache_entries()] == [second]


def test_an_input_is_hashed_once_until_it_changes(connection: Redis, tmp_path: Path, monkeypatch):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20))
    calls: list[Path] = []
    import farm.cache.key as key_module

    real = key_module.sha256_file
    monkeypatch.setattr(key_module, "sha256_file", lambda p: calls.append(p) or real(p))
    first = digest(connection, big)
    assert digest(connection, big) == first and len(calls) == 1
    big.write_bytes(os.urandom(1 << 20))
    assert digest(connection, big) != first and len(calls) == 2


def test_cache_flag_is_checked(farm: Farm):
    from farm.errors import InvalidJobError

    with pytest.raises(InvalidJobError, match="cache must be true or false"):
        farm.submit("demo", {}, cache="yes")  # type: ignore[arg-type]
