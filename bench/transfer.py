"""Moving files through ``farm serve``: a 200 MB file uploaded and downloaded with
``farm/files/transfer.py`` (what ``submit(files=...)`` and ``farm download`` do: streamed,
checksummed both ways, the download through a signed URL) against a plain ``curl`` download of the
same file from a local static server (``python -m http.server``), in the same run.

Prints MB/s for each, the ratios to curl (target >= 0.7) and the peak RSS of the farm serve
process over the transfers (target <= 100 MB). Needs ``curl`` (apt-get install curl).
Run: .venv/bin/python bench/transfer.py [--mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis  # noqa: E402

from bench.common import ROOT, farm_env, private_redis, record  # noqa: E402
from farm import keys  # noqa: E402
from farm.config import load_config  # noqa: E402
from farm.files import transfer  # noqa: E402
from farm.files.token import quoted, read_token, sign  # noqa: E402

RATIO_TARGET = 0.7
RSS_TARGET = 100.0  # MB


def wait_until(predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {predicate}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_file(path: Path, megabytes: int) -> None:
    with open(path, "wb") as handle:
        for _ in range(megabytes):
            handle.write(os.urandom(1024 * 1024))


def mbps(size: int, seconds: float) -> float:
    return size / 1e6 / seconds


def farm_round(
    connection: Redis, config_path: Path, base: str, token: str, source: Path, curl: str
) -> tuple[float, float, float]:
    """One upload and one signed download through farm serve, and curl fetching the same signed
    URL (farm serve alone, without the Python client); MB/s of each."""
    config = load_config(config_path)
    size = source.stat().st_size
    job_id = uuid.uuid4().hex
    with transfer.client() as http:
        started = time.perf_counter()
        files = transfer.upload(http, base, token, job_id, [(source.name, source)])
        upload = mbps(size, time.perf_counter() - started)
        # Publish the upload as the job's output (a hard link: no copy), as a finished render would.
        out = config.output_dir / job_id
        out.mkdir(parents=True)
        os.link(config.data_dir / "uploads" / ".partial" / job_id / source.name, out / source.name)
        result = {"outputs": [str(out / source.name)], "output_dir": str(out), "files": files}
        connection.hset(keys.job(job_id), mapping={"status": "finished", keys.F_RESULT: json.dumps(result)})
        url = sign(token, base, quoted("outputs", job_id, source.name), 600)
        target = source.parent / "farm-download" / source.name
        started = time.perf_counter()
        transfer.download(url, target, files[0]["sha256"])
        download = mbps(size, time.perf_counter() - started)
    target.unlink()
    by_curl = curl_round(curl, url, source)
    shutil.rmtree(out)
    shutil.rmtree(config.data_dir / "uploads" / ".partial" / job_id)
    return upload, download, by_curl


def curl_round(curl: str, url: str, source: Path) -> float:
    target = source.parent / "curl-download"
    started = time.perf_counter()
    subprocess.run([curl, "-sS", "--fail", "-o", str(target), url], check=True)
    seconds = time.perf_counter() - started
    assert target.stat().st_size == source.stat().st_size
    target.unlink()
    return mbps(source.stat().st_size, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("FARM_TOKEN", None)  # the server's own token file is the one to use
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("bench/transfer.py needs curl (apt-get install curl)")
    work = Path(tempfile.mkdtemp(prefix="farm-bench-transfer-"))
    static = work / "static"
    static.mkdir()
    source = static / "plate.bin"
    make_file(source, args.mb)
    port = free_port()
    static_server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(static), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    serve = None
    try:
        with private_redis() as url:
            config_path = work / "farm.toml"
            config_path.write_text(f'[redis]\nurl = "{url}"\n[paths]\ndata_dir = "{work / "data"}"\n')
            connection = Redis.from_url(url)
            serve = subprocess.Popen(
                [sys.executable, "-m", "farm.serve", "--port", "0"],
                cwd=ROOT,
                env=farm_env(config_path),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            base = str(wait_until(lambda: transfer.serve_url(connection)))
            wait_until(lambda: static_server.poll() is None and _answers(port))
            token = read_token(load_config(config_path))
            idle = peak_rss_mb(serve.pid)
            ups, downs, curls, served = [], [], [], []
            for _ in range(args.rounds):
                curls.append(curl_round(curl, f"http://127.0.0.1:{port}/{source.name}", source))
                up, down, by_curl = farm_round(connection, config_path, base, token, source, curl)
                ups.append(up)
                downs.append(down)
                served.append(by_curl)
            peak = peak_rss_mb(serve.pid)
    finally:
        for proc in (serve, static_server):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)
    up, down, peer = statistics.median(ups), statistics.median(downs), statistics.median(curls)
    print(
        f"\nTransfer of a {args.mb} MB file, median of {args.rounds} rounds (MB/s; checksums verified by farm)"
    )
    for label, value in (("farm serve upload", up), ("farm serve download (signed URL)", down)):
        ratio = value / peer
        verdict = "ok" if ratio >= RATIO_TARGET else f"BELOW target {RATIO_TARGET}"
        print(f"  {label:<40} {value:8.1f}   vs curl {peer:8.1f}   ratio {ratio:5.2f}  {verdict}")
        record(
            f"transfer: {label}, {args.mb} MB",
            farm=value,
            peer=peer,
            peer_name="curl from python -m http.server",
            unit="MB/s",
            target=f"ratio >= {RATIO_TARGET}",
            ok=ratio >= RATIO_TARGET,
            better="higher",
        )
    alone = statistics.median(served)
    print(
        f"  {'curl from farm serve (no Python client)':<40} {alone:8.1f}   vs curl {peer:8.1f}   ratio {alone / peer:5.2f}"
    )
    record(
        f"transfer: curl from farm serve (its share without the Python client), {args.mb} MB",
        farm=alone,
        peer=peer,
        peer_name="curl from python -m http.server",
        unit="MB/s",
        target=None,
        ok=None,
        better="higher",
    )
    print(
        f"  farm serve peak RSS {peak:.0f} MB (idle {idle:.0f} MB)  "
        f"{'ok' if peak <= RSS_TARGET else f'ABOVE target {RSS_TARGET:.0f} MB'}"
    )
    record(
        f"transfer: farm serve peak RSS over {args.rounds} x {args.mb} MB up and down",
        farm=peak,
        peer=None,
        peer_name="-",
        unit="MB",
        target=f"<= {RSS_TARGET:.0f} MB",
        ok=peak <= RSS_TARGET,
        better="lower",
    )


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
