"""The HTTP client side of the farm's store: moving files to and from ``farm serve``.

The protocol (``farm/serve/app.py`` is the server side):

- ``PUT /uploads/{job_id}/{name}``, bearer token, ``X-Farm-Sha256``: one input of a submit, into
  the store's partial uploads (streamed; 413 over ``limits.max_upload_bytes`` for the job, 422 on
  a checksum mismatch). ``POST /uploads/{job_id}/commit`` after the submit landed (the server
  also commits by itself on first use); ``DELETE /uploads/{job_id}`` after a rejected submit.
- ``GET /inputs/{job_id}/{name}``, bearer token: a job's input, for workers on other boxes.
- ``PUT /outputs/{job_id}/{run_token}/{name}``, bearer token, ``X-Farm-Sha256``: an output of a run
  rendered on another box, accepted only while that run still owns the job (409 otherwise);
  ``POST /outputs/{job_id}/{run_token}/commit`` once the run's end is recorded: published only if
  that run is the one whose end was recorded; ``DELETE`` the same path to discard.
- ``GET /outputs/{job_id}/{name}?expires=...&sig=...``: a published output, signed and expiring,
  with ``Range`` support; ``GET /outputs/{job_id}/?expires=...&sig=...`` lists them (JSON).

Every transfer is streamed in chunks (memory independent of file size) and checksummed;
downloads resume from a ``.part`` file with ``Range``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from redis import Redis

from .. import keys
from ..errors import FarmError, FarmUnavailableError, InvalidJobError
from .store import CHUNK, file_name, sha256_file
from .token import quoted

if TYPE_CHECKING:  # httpx is imported when a transfer happens: ~0.2 s and ~7 MB off every farm process
    import httpx

TIMEOUT = 30.0  # seconds a transfer may wait on a read or a write
CONNECT_TIMEOUT = 5.0
BUFFERS = 4  # CHUNK-sized buffers a download holds: its memory, whatever the file's size


class TransferError(FarmError):
    """A file could not be moved to or from the farm's store."""

    exit_code = 4


def serve_url(connection: Redis) -> str | None:
    """Where ``farm serve`` listens, as it published it (None when it never ran)."""
    value = connection.hget(keys.SERVE, "url")
    return value.decode("utf-8", "replace") if value else None


def serve_info(connection: Redis) -> dict[str, str]:
    raw = connection.hgetall(keys.SERVE)
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _body_headers(path: Path, sha256: str) -> dict[str, str]:
    # A declared length spares chunked framing, and lets farm serve refuse an oversized body early.
    return {"X-Farm-Sha256": sha256, "Content-Length": str(path.stat().st_size)}


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 300:
        _refuse(response.status_code, response.text, response.reason_phrase, what)


def _refuse(status: int, text: str, reason: str, what: str) -> None:
    """Raise for a refused request: the caller's mistake (bad input, a lost run) or a failure."""
    detail = text.strip().splitlines()[0][:200] if text.strip() else reason
    if status in (400, 409, 413, 422):
        raise InvalidJobError(f"{what}: {detail}")
    raise TransferError(f"{what}: HTTP {status} from farm serve: {detail}")


def client() -> httpx.Client:
    import httpx

    return httpx.Client(timeout=httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT), follow_redirects=False)


# -- inputs ---------------------------------------------------------------------------------------


def plan_uploads(paths: Sequence[str | os.PathLike[str]], max_bytes: int) -> list[tuple[str, Path]]:
    """(name in the job, local path) per file: a relative path keeps its relative name
    (``scenes/intro.py``), an absolute one its base name. Checks before anything is sent."""
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
        raise InvalidJobError("files must be a list of paths")
    planned: dict[str, Path] = {}
    total = 0
    for item in paths:
        if not isinstance(item, (str, os.PathLike)):
            raise InvalidJobError(f"files: not a path: {item!r}")
        path = Path(item)
        name = file_name(path.name if path.is_absolute() else path.as_posix(), what="file name")
        if not path.is_file():
            raise InvalidJobError(f"files: {item} is not a readable file")
        if name in planned:
            raise InvalidJobError(f"files: two files would be named {name!r}")
        total += path.stat().st_size
        if total > max_bytes:
            raise InvalidJobError(f"files: more than limits.max_upload_bytes ({max_bytes} bytes)")
        planned[name] = path
    return list(planned.items())


def upload(
    http: httpx.Client, base: str, token: str, job_id: str, planned: Sequence[tuple[str, Path]]
) -> list[dict[str, Any]]:
    """Send a submit's files; returns their {name, size, sha256} as the job records them."""
    import httpx

    described = []
    for name, path in planned:
        digest = sha256_file(path)
        try:
            response = http.put(
                base.rstrip("/") + quoted("uploads", job_id, name),
                content=_chunks(path),
                headers={**_auth(token), **_body_headers(path, digest)},
            )
        except httpx.HTTPError as exc:
            raise FarmUnavailableError(f"upload {name}: farm serve unreachable at {base}: {exc}") from None
        _check(response, f"upload {name}")
        described.append({"name": name, "size": path.stat().st_size, "sha256": digest})
    return described


def commit_uploads(http: httpx.Client, base: str, token: str, job_id: str) -> None:
    import httpx

    # farm serve also commits by itself when a worker first asks for the files
    with contextlib.suppress(httpx.HTTPError):
        http.post(base.rstrip("/") + quoted("uploads", job_id, "commit"), headers=_auth(token))


def abort_uploads(http: httpx.Client, base: str, token: str, job_id: str) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError):  # farm serve removes stale partial uploads by itself
        http.delete(base.rstrip("/") + quoted("uploads", job_id), headers=_auth(token))


def fetch_inputs(base: str, token: str, job_id: str, files: Sequence[dict[str, Any]], dest: Path) -> None:
    """Download a job's inputs into ``dest`` (a worker on another box), checksums verified."""
    for item in files:
        name = file_name(item.get("name"))
        url = base.rstrip("/") + quoted("inputs", job_id, name)
        _download(url, dest / name, str(item.get("sha256") or ""), headers=_auth(token))


# -- outputs --------------------------------------------------------------------------------------


def send_outputs(
    http: httpx.Client,
    base: str,
    token: str,
    job_id: str,
    run_token: str,
    staging: Path,
    files: Sequence[dict[str, Any]],
) -> None:
    """Send a run's outputs to the store's staging for that run (fenced there on the run)."""
    import httpx

    for item in files:
        name = file_name(item.get("name"))
        try:
            response = http.put(
                base.rstrip("/") + quoted("outputs", job_id, run_token, name),
                content=_chunks(staging / name),
                headers={**_auth(token), **_body_headers(staging / name, str(item.get("sha256") or ""))},
            )
        except httpx.HTTPError as exc:
            raise TransferError(f"send output {name}: farm serve unreachable at {base}: {exc}") from None
        _check(response, f"send output {name}")


def commit_outputs(http: httpx.Client, base: str, token: str, job_id: str, run_token: str) -> None:
    import httpx

    try:
        response = http.post(
            base.rstrip("/") + quoted("outputs", job_id, run_token, "commit"), headers=_auth(token)
        )
    except httpx.HTTPError as exc:
        raise TransferError(f"publish outputs: farm serve unreachable at {base}: {exc}") from None
    _check(response, "publish outputs")


def discard_outputs(http: httpx.Client, base: str, token: str, job_id: str, run_token: str) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError):  # farm serve removes abandoned staging dirs by itself
        http.delete(base.rstrip("/") + quoted("outputs", job_id, run_token), headers=_auth(token))


# -- downloads ------------------------------------------------------------------------------------


def _download(url: str, target: Path, sha256: str, headers: dict[str, str] | None = None) -> Path:
    """Stream ``url`` to ``target`` through ``target.part``, resuming it with Range, and verify
    (hashing as it writes; a resumed ``.part`` is hashed first).

    Bodies are read with the standard library's ``http.client`` into one reused 1 MiB buffer:
    httpx (h11 in pure Python, 64 KiB reads) moved ~430 MB/s here against ~1400 MB/s for this,
    and a download is the one place where that is the whole cost (``bench/transfer.py``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    # Identity: the bytes on the wire are the file's, so they are written as they come.
    wanted = {**(headers or {}), "Accept-Encoding": "identity"}
    if have:
        wanted["Range"] = f"bytes={have}-"
    digest = hashlib.sha256()
    where = urlsplit(url)
    kind = http.client.HTTPSConnection if where.scheme == "https" else http.client.HTTPConnection
    conn = kind(where.hostname or "", where.port, timeout=TIMEOUT)
    try:
        conn.request("GET", where.path + (f"?{where.query}" if where.query else ""), headers=wanted)
        response = conn.getresponse()
        if response.status == 416:  # nothing left to fetch: the .part is whole
            _hash_into(digest, part)
        elif response.status not in (200, 206):
            body = response.read(4096).decode("utf-8", "replace")
            _refuse(response.status, body, response.reason, f"download {target.name}")
        else:
            if response.status == 206:
                _hash_into(digest, part)
            with open(part, "ab" if response.status == 206 else "wb") as handle:
                _drain(response, handle, digest)
    except (OSError, http.client.HTTPException) as exc:
        why = str(exc) or type(exc).__name__
        raise TransferError(f"download {target.name}: {why} (run it again to resume)") from None
    finally:
        conn.close()
    if sha256 and digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise TransferError(f"download {target.name}: checksum mismatch (the partial file was removed)")
    os.replace(part, target)
    return target


def _drain(response: http.client.HTTPResponse, handle: BinaryIO, digest: Any) -> None:
    """Copy the body into ``handle`` and ``digest``: this thread reads while another hashes and
    writes the previous buffer (hashlib and file writes release the GIL), through ``BUFFERS``
    reused buffers — reading, hashing and writing one after the other ran at ~350 MB/s here,
    where the disk alone takes ~550."""
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(BUFFERS):
        free.put(bytearray(CHUNK))
    full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
    failed: list[BaseException] = []

    def sink() -> None:
        while (item := full.get()) is not None:
            buffer, size = item
            if not failed:
                try:
                    with memoryview(buffer) as whole, whole[:size] as view:
                        digest.update(view)
                        handle.write(view)
                except BaseException as exc:  # noqa: BLE001 — raised again on the reading thread
                    failed.append(exc)
            free.put(buffer)

    writer = threading.Thread(target=sink, name="download-sink", daemon=True)
    writer.start()
    try:
        while not failed:
            buffer = free.get()
            size = response.readinto(buffer)
            if not size:
                break
            full.put((buffer, size))
        if not failed and response.length:  # http.client ends a cut-off body quietly: say so
            raise http.client.IncompleteRead(b"", response.length)
    finally:
        full.put(None)
        writer.join()
    if failed:
        raise failed[0]


def _hash_into(digest: Any, path: Path) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)


def download(url: str, target: Path, sha256: str) -> Path:
    """One signed output URL to ``target``, resumable, checksum verified."""
    return _download(url, target, sha256)


__all__ = [
    "TransferError",
    "abort_uploads",
    "client",
    "commit_outputs",
    "commit_uploads",
    "discard_outputs",
    "download",
    "fetch_inputs",
    "plan_uploads",
    "send_outputs",
    "serve_info",
    "serve_url",
    "upload",
]
