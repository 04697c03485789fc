"""The render cache: what a hit costs against the miss it replaces, and what the key costs.

Hit vs miss: one `farm worker` process; each round submits an ffmpeg transcode of a 10 s clip
with cache=True (a miss: the params differ per round), waits for it, then submits the identical
job (a hit) and waits again. Latency = submit to finished as the client sees it (farm.wait).
Key cost: the sha256 of a 1 GiB input the first time (read and hashed) and after (the digest
memoized by host, device, inode, size, mtime and ctime in Redis), via farm.cache.key.digest.
Run: .venv/bin/python bench/cache.py [--rounds 5] [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402

from bench.common import farm_command, farm_env, private_redis, record  # noqa: E402


def make_clip(path: Path) -> None:
    subprocess.run(
        [shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc=duration=10:size=640x360:rate=25", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip


def hit_vs_miss(url: str, tmp: Path, rounds: int) -> tuple[list[float], list[float]]:
    inputs = tmp / "inputs"
    inputs.mkdir()
    make_clip(inputs / "clip.mp4")
    config_path = tmp / "farm.toml"
    config_path.write_text(
        f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{tmp / "data"}"\ninput_roots = ["{inputs}"]\n'
        "[caps]\nwindows = []\n"
    )
    from farm import Farm
    from farm.config import load_config

    connection = Redis.from_url(url)
    farm = Farm(connection, load_config(config_path), url=url)
    worker = subprocess.Popen(
        farm_command("worker", "--workers", "1"),
        cwd=ROOT,
        env=farm_env(config_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    misses, hits = [], []
    try:
        for n in range(rounds):
            params = {"preset": "transcode", "input": "clip.mp4", "output": "out.mp4", "crf": 30 + n}
            for into in (misses, hits):
                start = time.perf_counter()
                job = farm.submit("ffmpeg", params, cache=True)
                info = farm.wait(job, timeout=300)
                into.append((time.perf_counter() - start) * 1000)
                assert info.status.value == "finished", info.error
                assert (info.cached_from is not None) == (into is hits)
    finally:
        worker.terminate()
        worker.wait()
    return misses, hits


def key_cost(url: str, tmp: Path, size_mb: int) -> tuple[float, float]:
    from farm.cache.key import digest

    big = tmp / "big.bin"
    with open(big, "wb") as handle:
        chunk = os.urandom(1 << 20)
        for _ in range(size_mb):
            handle.write(chunk)
    connection = Redis.from_url(url)
    start = time.perf_counter()
    digest(connection, big)
    first = time.perf_counter() - start
    start = time.perf_counter()
    digest(connection, big)
    again = time.perf_counter() - start
    big.unlink()
    return first * 1000, again * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        misses, hits = hit_vs_miss(url, Path(tmp), args.rounds)
        first, again = key_cost(url, Path(tmp), args.size_mb)
    miss, hit = statistics.median(misses), statistics.median(hits)
    print(f"\nrender cache, {args.rounds} rounds (ffmpeg transcode of a 10 s clip, 1 worker)")
    print(f"  miss (renders)          median {miss:8.1f} ms")
    print(f"  hit (reuses outputs)    median {hit:8.1f} ms   hit/miss {hit / miss:.3f}")
    print(f"  key of a {args.size_mb} MiB input: first {first:8.1f} ms, memoized {again:6.2f} ms")
    record(
        "render cache: hit latency vs the miss it replaces",
        farm=hit,
        peer=miss,
        peer_name="the same job rendered (a miss), same run",
        unit="ms",
        target="a hit well under its miss",
        ok=hit < miss / 2,
        better="lower",
    )
    record(
        f"render cache: key of a {args.size_mb} MiB input, memoized vs first hash",
        farm=again,
        peer=first,
        peer_name="the first hash of the same file",
        unit="ms",
        target="hashed once",
        ok=again < first / 10,
        better="lower",
    )


if __name__ == "__main__":
    main()
