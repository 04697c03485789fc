"""``farm serve`` as a process (``python -m farm.serve``): memory stays flat however large the
transfer, and SIGTERM/SIGINT stop it cleanly (exit 0, its address withdrawn), even mid-transfer."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import httpx
import pytest
from redis import Redis

from farm import keys
from farm.config import FarmConfig
from farm.files import store, transfer
from farm.files.token import read_token
from tests.serve_helpers import make_job, peak_rss_mb, server_process, write_file

BIG = 300 * 1024 * 1024


@pytest.mark.slow
def test_memory_stays_flat_on_a_large_upload_and_download(
    config: FarmConfig, connection: Redis, tmp_path: Path
) -> None:
    assert config.source is not None
    digest = write_file(tmp_path / "plate.exr", BIG)
    job_id = uuid.uuid4().hex
    with server_process(config.source, connection, tmp_path / "serve.log") as (proc, url):
        token = read_token(config)
        assert httpx.get(url + "/healthz").text == "ok"
        before = peak_rss_mb(proc.pid)
        with transfer.client() as http:
            files = transfer.upload(http, url, token, job_id, [("plate.exr", tmp_path / "plate.exr")])
            after_upload = peak_rss_mb(proc.pid)
            make_job(connection, job_id, **{keys.F_FILES: files})
            transfer.fetch_inputs(url, token, job_id, files, tmp_path / "fetched")
        after_download = peak_rss_mb(proc.pid)
    assert files == [{"name": "plate.exr", "size": BIG, "sha256": digest}]
    assert store.sha256_file(tmp_path / "fetched" / "plate.exr") == digest
    # A server holding the file would grow by its 300 MB; streaming needs a few MB per transfer.
    print(f"farm serve peak RSS: {before:.0f} MB idle, {after_upload:.0f} MB, {after_download:.0f} MB")
    assert after_upload - before < 60, (before, after_upload)
    assert after_download - before < 60, (before, after_download)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly_even_mid_transfer(
    config: FarmConfig, connection: Redis, tmp_path: Path, sig: signal.Signals
) -> None:
    assert config.source is not None
    job_id = uuid.uuid4().hex
    write_file(store.uploads_dir(config, job_id) / "big.bin", 64 * 1024 * 1024)
    with server_process(config.source, connection, tmp_path / "serve.log") as (proc, url):
        headers = {"Authorization": f"Bearer {read_token(config)}"}
        with httpx.stream("GET", f"{url}/inputs/{job_id}/big.bin", headers=headers) as response:
            assert response.status_code == 200
            next(response.iter_bytes(65536))  # a download is open and stalled on this client
            proc.send_signal(sig)
            assert proc.wait(timeout=20) == 0, (tmp_path / "serve.log").read_text()
    assert not connection.exists(keys.SERVE)
    assert "farm serve: stopped" in (tmp_path / "serve.log").read_text()
