"""``farm serve``, uploads and inputs: a real server (uvicorn on a free port) and the real Redis;
``farm/files/transfer.py`` as the client, plain HTTP for what a client would never send."""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from farm import keys
from farm.client import Farm
from farm.config import FarmConfig
from farm.errors import ConfigError, InvalidJobError
from farm.files import store, transfer
from farm.serve import server
from farm.serve.streams import INCOMING
from tests.serve_helpers import Serving, make_job, running_server, write_file
from tests.util import wait_for


@pytest.fixture
def serving(config: FarmConfig, connection: Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serving]:
    monkeypatch.delenv("FARM_TOKEN", raising=False)
    with running_server(config, connection) as running:
        yield running


def incoming(config: FarmConfig) -> list[Path]:
    return list((config.data_dir / store.UPLOADS / store.PARTIAL / INCOMING).glob("*"))


def test_healthz_answers_without_a_token_and_tells_nothing(serving: Serving) -> None:
    response = httpx.get(serving.url + "/healthz")
    assert (response.status_code, response.text) == (200, "ok")
    assert "server" not in response.headers


def test_it_publishes_where_it_listens_and_again_when_redis_loses_it(
    config: FarmConfig, connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "PUBLISH_EVERY", 0.2)
    with running_server(config, connection) as running:
        published = transfer.serve_info(connection)
        assert published["url"] == running.url and running.url.startswith("http://127.0.0.1:")
        assert published["store_id"] == store.store_id(config)
        assert (config.data_dir / "token").stat().st_mode & 0o777 == 0o600
        connection.delete(keys.SERVE)  # a Redis restarted without it
        wait_for(lambda: transfer.serve_url(connection) == running.url, timeout=5, what="published again")
    assert not connection.exists(keys.SERVE), "a stopped server leaves no address behind"


def test_submit_with_files_uploads_commits_and_a_worker_elsewhere_fetches_them(
    serving: Serving, farm: Farm, connection: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    big = write_file(tmp_path / "plates" / "big.bin", 3 * 1024 * 1024 + 17)
    (tmp_path / "intro.py").write_text("print('intro')\n")
    job_id = farm.submit("demo", {"duration": 0}, files=["plates/big.bin", "intro.py"])
    config = serving.config
    committed = store.uploads_dir(config, job_id)
    assert sorted(p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file()) == [
        "intro.py",
        "plates/big.bin",
    ]
    assert not store.uploads_partial(config, job_id).exists() and not incoming(config)
    recorded = list(farm.get(job_id).files)
    assert {f["name"]: f["sha256"] for f in recorded}["plates/big.bin"] == big
    dest = tmp_path / "fetched"
    transfer.fetch_inputs(serving.url, serving.token, job_id, recorded, dest)
    assert store.sha256_file(dest / "plates" / "big.bin") == big
    assert (dest / "intro.py").read_text() == "print('intro')\n"


def test_inputs_asked_before_the_commit_are_committed_first(
    serving: Serving, connection: Redis, tmp_path: Path
) -> None:
    """The submitter died between writing the job and committing: the first worker's request
    commits the upload (the job exists and lists the file)."""
    job_id = uuid.uuid4().hex
    digest = write_file(tmp_path / "in.bin", 100_000)
    with transfer.client() as http:
        files = transfer.upload(http, serving.url, serving.token, job_id, [("in.bin", tmp_path / "in.bin")])
        assert store.uploads_partial(serving.config, job_id).is_dir()
        missing = http.get(f"{serving.url}/inputs/{job_id}/in.bin", headers=serving.auth())
        assert missing.status_code == 404  # no job lists it: nothing is committed on a stranger's word
        make_job(connection, job_id, **{keys.F_FILES: files})
        transfer.fetch_inputs(serving.url, serving.token, job_id, files, tmp_path / "got")
    assert store.sha256_file(tmp_path / "got" / "in.bin") == digest
    assert store.uploads_dir(serving.config, job_id).is_dir()
    assert not store.uploads_partial(serving.config, job_id).exists()


def test_commit_needs_the_job_and_abort_never_touches_committed_uploads(
    serving: Serving, connection: Redis, tmp_path: Path
) -> None:
    job_id = uuid.uuid4().hex
    write_file(tmp_path / "a.bin", 1000)
    base = serving.url
    with transfer.client() as http:
        transfer.upload(http, base, serving.token, job_id, [("a.bin", tmp_path / "a.bin")])
        assert http.post(f"{base}/uploads/{job_id}/commit", headers=serving.auth()).status_code == 409
        make_job(connection, job_id)
        assert http.post(f"{base}/uploads/{job_id}/commit", headers=serving.auth()).status_code == 200
        assert http.post(f"{base}/uploads/{job_id}/commit", headers=serving.auth()).status_code == 200
        with pytest.raises(InvalidJobError, match="already committed"):
            transfer.upload(http, base, serving.token, job_id, [("b.bin", tmp_path / "a.bin")])
        transfer.abort_uploads(http, base, serving.token, job_id)
    assert (store.uploads_dir(serving.config, job_id) / "a.bin").is_file()

    other = uuid.uuid4().hex
    with transfer.client() as http:
        transfer.upload(http, base, serving.token, other, [("a.bin", tmp_path / "a.bin")])
        transfer.abort_uploads(http, base, serving.token, other)
    assert not store.uploads_partial(serving.config, other).exists()


def test_uploads_over_the_limit_are_refused_and_leave_nothing(
    make_config: Callable[..., FarmConfig], connection: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FARM_TOKEN", raising=False)
    config = make_config(limits={"max_upload_bytes": 1_000_000})
    job_id = uuid.uuid4().hex
    write_file(tmp_path / "six.bin", 600_000)
    write_file(tmp_path / "huge.bin", 5_000_000)
    with running_server(config, connection) as running, transfer.client() as http:
        upload = transfer.upload
        upload(http, running.url, running.token, job_id, [("one.bin", tmp_path / "six.bin")])
        with pytest.raises(InvalidJobError, match="max_upload_bytes"):
            upload(http, running.url, running.token, job_id, [("two.bin", tmp_path / "six.bin")])
        with pytest.raises(InvalidJobError, match=r"max_upload_bytes \(1000000\)"):
            upload(http, running.url, running.token, uuid.uuid4().hex, [("huge.bin", tmp_path / "huge.bin")])
        # Replacing a file counts its new size, not both.
        upload(http, running.url, running.token, job_id, [("one.bin", tmp_path / "six.bin")])
        declared = http.put(
            f"{running.url}/uploads/{job_id}/three.bin",
            content=b"x" * 500_000,
            headers={**running.auth(), "X-Farm-Sha256": "0" * 64},
        )
        assert declared.status_code == 413
    partial = store.uploads_partial(config, job_id)
    assert sorted(p.name for p in partial.iterdir()) == ["one.bin"]
    assert not incoming(config)


def test_a_checksum_mismatch_is_refused_and_leaves_nothing(serving: Serving, tmp_path: Path) -> None:
    job_id = uuid.uuid4().hex
    body = b"frame data" * 10_000
    response = httpx.put(
        f"{serving.url}/uploads/{job_id}/f.bin",
        content=iter([body[:50_000], body[50_000:]]),
        headers={**serving.auth(), "X-Farm-Sha256": hashlib.sha256(b"other").hexdigest()},
    )
    assert response.status_code == 422
    assert not (store.uploads_partial(serving.config, job_id) / "f.bin").exists()
    assert not incoming(serving.config)
    missing = httpx.put(f"{serving.url}/uploads/{job_id}/f.bin", content=body, headers=serving.auth())
    assert missing.status_code == 400  # no checksum, no upload


def test_everything_but_healthz_needs_the_token(serving: Serving, connection: Redis) -> None:
    job_id = uuid.uuid4().hex
    make_job(connection, job_id)
    sha = {"X-Farm-Sha256": hashlib.sha256(b"x").hexdigest()}
    for headers in ({}, {"Authorization": "Bearer " + "w" * 43}, {"Authorization": serving.token}):
        for method, path in [
            ("PUT", f"/uploads/{job_id}/a.bin"),
            ("POST", f"/uploads/{job_id}/commit"),
            ("DELETE", f"/uploads/{job_id}"),
            ("GET", f"/inputs/{job_id}/a.bin"),
            ("PUT", f"/outputs/{job_id}/tok/a.bin"),
            ("POST", f"/outputs/{job_id}/tok/commit"),
            ("DELETE", f"/outputs/{job_id}/tok"),
        ]:
            response = httpx.request(method, serving.url + path, headers={**headers, **sha}, content=b"x")
            assert response.status_code == 401, (method, path, headers)
    assert not store.uploads_partial(serving.config, job_id).exists()


HOSTILE_NAMES = [
    "../escaped.bin",
    "%2e%2e/escaped.bin",
    "a/%2e%2e/%2e%2e/escaped.bin",
    "..%2fescaped.bin",
    "%2fetc%2fescaped.bin",
    "/escaped.bin",
    "a%00b.bin",
    "a%5c..%5cescaped.bin",
    ".",
    "-rf",
]


def test_hostile_names_never_leave_their_directory(serving: Serving, tmp_path: Path) -> None:
    job_id = uuid.uuid4().hex
    sha = {"X-Farm-Sha256": hashlib.sha256(b"x").hexdigest(), **serving.auth()}
    store_files_before = _all_files(serving.config.data_dir)
    for name in HOSTILE_NAMES:
        assert serving.raw("PUT", f"/uploads/{job_id}/{name}", sha, b"x") in (400, 404, 405), name
        assert serving.raw("GET", f"/inputs/{job_id}/{name}", serving.auth()) in (400, 404), name
    for bad_id in ("..", "%2e%2e", ".hidden", "-x", "a%00", "x" * 200):
        assert serving.raw("PUT", f"/uploads/{bad_id}/a.bin", sha, b"x") in (400, 404), bad_id
        assert serving.raw("POST", f"/uploads/{bad_id}/commit", serving.auth()) in (400, 404), bad_id
    assert _all_files(serving.config.data_dir) == store_files_before
    assert not list(tmp_path.glob("**/escaped.bin"))


def test_links_inside_the_store_lead_nowhere(serving: Serving, connection: Redis, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET CONTENT")
    job_id = uuid.uuid4().hex
    partial = store.uploads_partial(serving.config, job_id)
    partial.mkdir(parents=True)
    (partial / "sub").symlink_to(outside)
    sha = {"X-Farm-Sha256": hashlib.sha256(b"x").hexdigest(), **serving.auth()}
    assert serving.raw("PUT", f"/uploads/{job_id}/sub/planted.txt", sha, b"x") == 400
    assert not (outside / "planted.txt").exists()

    linked = uuid.uuid4().hex  # a job's whole input dir linked out of the store
    store.uploads_dir(serving.config, linked).parent.mkdir(parents=True, exist_ok=True)
    store.uploads_dir(serving.config, linked).symlink_to(outside)
    make_job(connection, linked)
    committed = store.uploads_dir(serving.config, job_id)
    committed.mkdir(parents=True)
    (committed / "link.txt").symlink_to(outside / "secret.txt")
    for path in (f"/inputs/{linked}/secret.txt", f"/inputs/{job_id}/link.txt"):
        response = httpx.get(serving.url + path, headers=serving.auth())
        assert response.status_code in (400, 404) and "CONTENT" not in response.text, path


def _all_files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file() and p.name not in ("token", "store-id")}


def test_listen_address_and_public_url(make_config: Callable[..., FarmConfig]) -> None:
    config = make_config()
    assert server.listen_address(config) == ("127.0.0.1", 8642)
    assert server.listen_address(config, 9000) == ("127.0.0.1", 9000)
    assert server.public_url(config, "127.0.0.1", 9000) == "http://127.0.0.1:9000"
    wide = make_config(serve={"bind": "0.0.0.0:8700"})
    assert server.listen_address(wide) == ("0.0.0.0", 8700)
    assert server.public_url(wide, "0.0.0.0", 8700) == f"http://{socket.gethostname()}:8700"
    assert server.public_url(wide, "10.1.2.3", 8700) == "http://10.1.2.3:8700"
    assert server.listen_address(make_config(serve={"bind": "[::]:8701"})) == ("::", 8701)
    named = make_config(serve={"bind": "0.0.0.0:8700", "url": "https://farm.studio.lan/"})
    assert server.public_url(named, "0.0.0.0", 8700) == "https://farm.studio.lan"
    with pytest.raises(ConfigError, match="serve.bind"):
        server.listen_address(make_config(serve={"bind": "8642"}))
