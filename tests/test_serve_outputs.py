"""``farm serve``, outputs: runs on other boxes send them (fenced on the run that owns the job),
only the winning run's commit publishes them (the job's result rewritten), and teammates download
them with signed, expiring URLs that resume with Range. Also the store's housekeeping."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer

from farm import keys
from farm.client import Farm
from farm.config import FarmConfig
from farm.errors import InvalidJobError
from farm.files import store, transfer
from farm.files.token import quoted, sign
from farm.serve.housekeeping import UPLOAD_GRACE, clean_store
from tests.serve_helpers import Serving, finish, make_job, own, remote_result, running_server, write_file


@pytest.fixture
def serving(config: FarmConfig, connection: Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serving]:
    monkeypatch.delenv("FARM_TOKEN", raising=False)
    with running_server(config, connection) as running:
        yield running


def rendered_elsewhere(tmp_path: Path, job_id: str, run_token: str) -> tuple[Path, list[dict[str, Any]]]:
    """A remote worker's staging dir with two outputs, and their descriptions."""
    staging = tmp_path / "remote-box" / f"{job_id}.{run_token}"
    write_file(staging / "frames" / "shot 1 é#?.png", 300_000, seed=1)
    write_file(staging / "movie.mp4", 2_000_000, seed=2)
    return staging, store.describe(staging, ["movie.mp4", "frames/shot 1 é#?.png"])


def job_result(connection: Redis, job_id: str) -> dict[str, Any]:
    return dict(json.loads(connection.hget(keys.job(job_id), keys.F_RESULT)))


def test_only_the_run_that_owns_the_job_may_place_outputs(
    serving: Serving, connection: Redis, tmp_path: Path
) -> None:
    job_id, mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    make_job(connection, job_id)
    staging, files = rendered_elsewhere(tmp_path, job_id, mine)
    send = transfer.send_outputs
    with transfer.client() as http:
        own(connection, job_id, theirs)
        with pytest.raises(InvalidJobError, match="no longer owns"):
            send(http, serving.url, serving.token, job_id, mine, staging, files)
        assert not store.staging_dir(serving.config, job_id, mine).exists()
        own(connection, job_id, mine)
        send(http, serving.url, serving.token, job_id, mine, staging, files[:1])
        own(connection, job_id, theirs)  # taken over (its lease ran out): it must place nothing more
        with pytest.raises(InvalidJobError, match="no longer owns"):
            send(http, serving.url, serving.token, job_id, mine, staging, files[1:])
    placed = store.staging_dir(serving.config, job_id, mine)
    assert sorted(p.name for p in placed.rglob("*") if p.is_file()) == ["movie.mp4"]


def test_outputs_are_checksummed_and_bounded(
    make_config: Any, connection: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FARM_TOKEN", raising=False)
    config = make_config(limits={"max_output_bytes": 1_000_000})
    job_id, run = uuid.uuid4().hex, uuid.uuid4().hex
    make_job(connection, job_id)
    own(connection, job_id, run)
    staging, files = rendered_elsewhere(tmp_path, job_id, run)
    with running_server(config, connection) as running, transfer.client() as http:
        with pytest.raises(InvalidJobError, match="max_output_bytes"):  # movie.mp4 is 2 MB
            transfer.send_outputs(http, running.url, running.token, job_id, run, staging, files[:1])
        lying = [{**files[1], "sha256": "0" * 64}]
        with pytest.raises(InvalidJobError, match="sha256 mismatch"):
            transfer.send_outputs(http, running.url, running.token, job_id, run, staging, lying)
        transfer.send_outputs(http, running.url, running.token, job_id, run, staging, files[1:])
    assert [p.name for p in store.staging_dir(config, job_id, run).rglob("*") if p.is_file()] == [
        "shot 1 é#?.png"
    ]
    assert not list((config.output_dir / store.PARTIAL / ".incoming").glob("*"))


def test_a_commit_by_a_run_that_did_not_win_publishes_nothing(
    serving: Serving, connection: Redis, tmp_path: Path
) -> None:
    job_id, loser, winner = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    make_job(connection, job_id)
    staging, files = rendered_elsewhere(tmp_path, job_id, loser)
    with transfer.client() as http:
        own(connection, job_id, loser)
        transfer.send_outputs(http, serving.url, serving.token, job_id, loser, staging, files)
        with pytest.raises(InvalidJobError, match="not recorded its end"):  # still rendering: kept
            transfer.commit_outputs(http, serving.url, serving.token, job_id, loser)
        assert store.staging_dir(serving.config, job_id, loser).is_dir()
        finish(connection, job_id, winner, {"outputs": [], "files": []})  # the other run's end won
        with pytest.raises(InvalidJobError, match="not the run whose end was recorded"):
            transfer.commit_outputs(http, serving.url, serving.token, job_id, loser)
    assert not store.staging_dir(serving.config, job_id, loser).exists()
    assert not (serving.config.output_dir / job_id).exists()
    assert job_result(connection, job_id) == {"outputs": [], "files": []}


def test_the_winning_commit_publishes_and_rewrites_the_result(
    serving: Serving, connection: Redis, farm: Farm, tmp_path: Path
) -> None:
    job_id, run = uuid.uuid4().hex, uuid.uuid4().hex
    make_job(connection, job_id, **{keys.F_NAME: "intro"})
    staging, files = rendered_elsewhere(tmp_path, job_id, run)
    with transfer.client() as http:
        own(connection, job_id, run)
        transfer.send_outputs(http, serving.url, serving.token, job_id, run, staging, files)
        recorded = remote_result(staging, job_id, ["movie.mp4", "frames/shot 1 é#?.png"])
        finish(connection, job_id, run, recorded)
        transfer.commit_outputs(http, serving.url, serving.token, job_id, run)
        transfer.commit_outputs(http, serving.url, serving.token, job_id, run)  # a resent commit: fine
    published = serving.config.output_dir / job_id
    assert store.sha256_file(published / "frames" / "shot 1 é#?.png") == files[1]["sha256"]
    assert not store.staging_dir(serving.config, job_id, run).exists()
    result = job_result(connection, job_id)
    assert result["output_dir"] == str(published)
    assert result["outputs"] == [str(published / "movie.mp4"), str(published / "frames" / "shot 1 é#?.png")]
    assert {k: v for k, v in result.items() if k not in ("output_dir", "outputs")} == {
        k: v for k, v in recorded.items() if k not in ("output_dir", "outputs")
    }
    assert connection.hget(keys.job(job_id), keys.F_NAME) == b"intro"
    rq_record = Result.fetch_latest(Job(job_id, connection=connection), serializer=JSONSerializer)
    assert rq_record is not None and rq_record.return_value == result  # RQ's tools see it too
    assert connection.hget(keys.job(job_id), keys.F_ENDED_BY) == run.encode()

    listed = {item.name: item for item in farm.outputs(job_id)}
    assert sorted(listed) == ["frames/shot 1 é#?.png", "movie.mp4"]
    paths = farm.download(job_id, tmp_path / "mine")
    assert sorted(p.relative_to(tmp_path / "mine").as_posix() for p in paths) == sorted(listed)
    assert store.sha256_file(tmp_path / "mine" / "movie.mp4") == files[0]["sha256"]


def test_a_download_right_after_a_remote_run_finished_does_not_wait_for_its_commit(
    serving: Serving, connection: Redis, farm: Farm, tmp_path: Path
) -> None:
    """The run on another box recorded its end; its commit has not arrived (it is on its way, or
    its worker died): the teammate's download publishes the winner's files and gets them."""
    job_id, run = uuid.uuid4().hex, uuid.uuid4().hex
    make_job(connection, job_id)
    staging, files = rendered_elsewhere(tmp_path, job_id, run)
    with transfer.client() as http:
        own(connection, job_id, run)
        transfer.send_outputs(http, serving.url, serving.token, job_id, run, staging, files)
        recorded = remote_result(staging, job_id, ["movie.mp4", "frames/shot 1 é#?.png"])
        finish(connection, job_id, run, recorded)
        paths = farm.download(job_id, tmp_path / "mine")
        assert store.sha256_file(tmp_path / "mine" / "movie.mp4") == files[0]["sha256"] and len(paths) == 2
        transfer.commit_outputs(http, serving.url, serving.token, job_id, run)  # late: already published
    assert job_result(connection, job_id)["output_dir"] == str(serving.config.output_dir / job_id)


def publish_locally(config: FarmConfig, connection: Redis, job_id: str, size: int) -> str:
    """A finished job whose output the render host published in the store; returns its sha256."""
    out = config.output_dir / job_id
    digest = write_file(out / "movie.mp4", size)
    files = [{"name": "movie.mp4", "size": size, "sha256": digest}]
    result = {"outputs": [str(out / "movie.mp4")], "output_dir": str(out), "files": files}
    make_job(connection, job_id, status="finished", **{keys.F_RESULT: result})
    return digest


def test_downloads_and_listings_need_a_valid_unexpired_signature(serving: Serving, connection: Redis) -> None:
    job_id = uuid.uuid4().hex
    digest = publish_locally(serving.config, connection, job_id, 1000)
    path, listing = quoted("outputs", job_id, "movie.mp4"), quoted("outputs", job_id) + "/"
    good = sign(serving.token, serving.url, path, 60)
    refused = [
        serving.url + path,  # unsigned
        serving.url + listing,
        sign(serving.token, serving.url, path, -5),  # expired
        good.replace("sig=", "sig=0"),  # forged
        good[:-1] + ("0" if good[-1] != "0" else "1"),
        good.replace("expires=", "expires=9"),  # expiry moved: the signature no longer matches
        sign("another farm's token, long enough", serving.url, path, 60),
        sign(serving.token, serving.url, quoted("outputs", job_id, "other.mp4"), 60).replace(
            "other.mp4", "movie.mp4"
        ),  # signed for another file
        sign(serving.token, serving.url, path, 60, method="PUT"),
    ]
    for url in refused:
        response = httpx.get(url)
        assert response.status_code == 403, url
        assert "movie" not in response.text
    assert httpx.get(good).content == (serving.config.output_dir / job_id / "movie.mp4").read_bytes()
    listed = httpx.get(sign(serving.token, serving.url, listing, 60))
    assert listed.json() == [{"name": "movie.mp4", "size": 1000, "sha256": digest}]
    nojob = sign(serving.token, serving.url, quoted("outputs", "nojob") + "/", 60)
    assert httpx.get(nojob).status_code == 404


def test_signed_hostile_paths_and_links_serve_nothing(
    serving: Serving, connection: Redis, tmp_path: Path
) -> None:
    job_id = uuid.uuid4().hex
    publish_locally(serving.config, connection, job_id, 100)
    (tmp_path / "secret.txt").write_text("TOP SECRET CONTENT")
    (serving.config.output_dir / job_id / "link.txt").symlink_to(tmp_path / "secret.txt")
    other = uuid.uuid4().hex  # a job whose result points out of the store
    make_job(connection, other, status="finished", **{keys.F_RESULT: {"output_dir": str(tmp_path)}})
    for raw in [
        f"/outputs/{job_id}/link.txt",
        f"/outputs/{job_id}/../{job_id}/movie.mp4",
        f"/outputs/{job_id}/%2e%2e/%2e%2e/secret.txt",
        f"/outputs/{job_id}/%2fetc%2fpasswd",
        f"/outputs/{job_id}/a%00b",
        f"/outputs/{other}/secret.txt",
        f"/outputs/%2e%2e/{job_id}/movie.mp4",
    ]:
        signed = sign(serving.token, "", raw, 60)
        assert serving.raw("GET", signed) in (400, 404), raw


def test_an_interrupted_download_resumes_with_range_and_verifies(
    serving: Serving, connection: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = uuid.uuid4().hex
    size = 8 * 1024 * 1024 + 5
    digest = publish_locally(serving.config, connection, job_id, size)
    url = sign(serving.token, serving.url, quoted("outputs", job_id, "movie.mp4"), 60)
    target = tmp_path / "got" / "movie.mp4"
    target.parent.mkdir()
    with httpx.stream("GET", url) as response, open(target.with_name("movie.mp4.part"), "wb") as part:
        for chunk in response.iter_bytes(256 * 1024):
            part.write(chunk)
            if part.tell() >= size // 2:
                break  # the connection drops half-way
    had = target.with_name("movie.mp4.part").stat().st_size
    assert 0 < had < size
    seen: list[tuple[str | None, int]] = []  # what the real client asked and got (a spy, no fake)
    request, getresponse = http.client.HTTPConnection.request, http.client.HTTPConnection.getresponse

    def spy_request(self, method, path, body=None, headers={}, **kw):  # type: ignore[no-untyped-def]  # noqa: B006
        seen.append((headers.get("Range"), 0))
        return request(self, method, path, body, headers, **kw)

    def spy_getresponse(self):  # type: ignore[no-untyped-def]
        response = getresponse(self)
        seen[-1] = (seen[-1][0], response.status)
        return response

    monkeypatch.setattr(http.client.HTTPConnection, "request", spy_request)
    monkeypatch.setattr(http.client.HTTPConnection, "getresponse", spy_getresponse)
    transfer.download(url, target, digest)
    monkeypatch.undo()
    assert seen == [(f"bytes={had}-", 206)]
    assert store.sha256_file(target) == digest and not target.with_name("movie.mp4.part").exists()

    piece = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert (piece.status_code, piece.headers["content-range"]) == (206, f"bytes 10-19/{size}")
    assert piece.content == (serving.config.output_dir / job_id / "movie.mp4").read_bytes()[10:20]
    assert httpx.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416


def test_a_download_cut_off_mid_body_keeps_what_came_for_the_resume(tmp_path: Path) -> None:
    """A server that promises 4 MiB and hangs up after 1.5: a TransferError that says to run it
    again, and the bytes that arrived left in the .part file (not a half file under the name)."""
    body = os.urandom(3 * 2**19)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n" + body)

    server = threading.Thread(target=serve_once, daemon=True)
    server.start()
    target = tmp_path / "movie.mp4"
    with pytest.raises(transfer.TransferError, match="run it again to resume"):
        transfer.download(f"http://127.0.0.1:{listener.getsockname()[1]}/x", target, "0" * 64)
    server.join(timeout=5)
    listener.close()
    assert not target.exists()
    assert target.with_name("movie.mp4.part").read_bytes() == body


def test_housekeeping_drops_stale_uploads_and_publishes_orphaned_winners(
    config: FarmConfig, connection: Redis, tmp_path: Path
) -> None:
    old = time.time() - UPLOAD_GRACE - 60
    stale, fresh = store.uploads_partial(config, "stale1"), store.uploads_partial(config, "fresh1")
    write_file(stale / "a.bin", 10)
    write_file(fresh / "a.bin", 10)
    for path in (stale / "a.bin", stale):
        os.utime(path, (old, old))
    gone, alive = store.uploads_dir(config, "gone1"), store.uploads_dir(config, "alive1")
    write_file(gone / "a.bin", 10)
    write_file(alive / "a.bin", 10)
    make_job(connection, "alive1")
    job_id, run = uuid.uuid4().hex, uuid.uuid4().hex  # won, but its worker died before committing
    staging = store.staging_dir(config, job_id, run)
    write_file(staging / "movie.mp4", 1000)
    make_job(connection, job_id)
    finish(connection, job_id, run, remote_result(staging, job_id, ["movie.mp4"]))
    os.utime(staging, (old, old))

    clean_store(connection, config)

    assert not stale.exists() and fresh.is_dir()
    assert not gone.exists() and alive.is_dir()
    assert (config.output_dir / job_id / "movie.mp4").is_file() and not staging.exists()
    assert job_result(connection, job_id)["output_dir"] == str(config.output_dir / job_id)
