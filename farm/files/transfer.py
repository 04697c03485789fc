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
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from .. import keys
from ..errors import FarmError, FarmUnavailableError, InvalidJobError
from .store import CHUNK, file_name, sha256_file
from .token import quoted

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


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
    if response.status_code < 300:
        return
    detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
    if response.status_code in (400, 409, 413, 422):
        raise InvalidJobError(f"{what}: {detail}")
    raise TransferError(f"{what}: HTTP {response.status_code} from farm serve: {detail}")


def client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=False)


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
    with contextlib.suppress(
        httpx.HTTPError
    ):  # farm serve commits by itself when a worker first asks for the files
        http.post(base.rstrip("/") + quoted("uploads", job_id, "commit"), headers=_auth(token))


def abort_uploads(http: httpx.Client, base: str, token: str, job_id: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # farm serve removes stale partial uploads by itself
        http.delete(base.rstrip("/") + quoted("uploads", job_id), headers=_auth(token))


def fetch_inputs(
    http: httpx.Client, base: str, token: str, job_id: str, files: Sequence[dict[str, Any]], dest: Path
) -> None:
    """Download a job's inputs into ``dest`` (a worker on another box), checksums verified."""
    for item in files:
        name = file_name(item.get("name"))
        url = base.rstrip("/") + quoted("inputs", job_id, name)
        _download(http, url, dest / name, str(item.get("sha256") or ""), headers=_auth(token))


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
    try:
        response = http.post(
            base.rstrip("/") + quoted("outputs", job_id, run_token, "commit"), headers=_auth(token)
        )
    except httpx.HTTPError as exc:
        raise TransferError(f"publish outputs: farm serve unreachable at {base}: {exc}") from None
    _check(response, "publish outputs")


def discard_outputs(http: httpx.Client, base: str, token: str, job_id: str, run_token: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # farm serve removes abandoned staging dirs by itself
        http.delete(base.rstrip("/") + quoted("outputs", job_id, run_token), headers=_auth(token))


# -- downloads ------------------------------------------------------------------------------------


def _download(
    http: httpx.Client, url: str, target: Path, sha256: str, headers: dict[str, str] | None = None
) -> Path:
    """Stream ``url`` to ``target`` through ``target.part``, resuming it with Range, and verify
    (hashing as it writes; a resumed ``.part`` is hashed first)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    # Identity: the bytes on the wire are the file's, so they are written as they come (iter_raw).
    wanted = {
        **(headers or {}),
        "Accept-Encoding": "identity",
        **({"Range": f"bytes={have}-"} if have else {}),
    }
    digest = hashlib.sha256()
    try:
        with http.stream("GET", url, headers=wanted) as response:
            if response.status_code == 416:  # nothing left to fetch: the .part is whole
                _hash_into(digest, part)
            elif response.status_code not in (200, 206):
                response.read()
                _check(response, f"download {target.name}")
            else:
                if response.status_code == 206:
                    _hash_into(digest, part)
                with open(part, "ab" if response.status_code == 206 else "wb") as handle:
                    for chunk in response.iter_raw():
                        digest.update(chunk)
                        handle.write(chunk)
    except httpx.HTTPError as exc:
        raise TransferError(f"download {target.name}: {exc} (run it again to resume)") from None
    if sha256 and digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise TransferError(f"download {target.name}: checksum mismatch (the partial file was removed)")
    os.replace(part, target)
    return target


def _hash_into(digest: Any, path: Path) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)


def download(http: httpx.Client, url: str, target: Path, sha256: str) -> Path:
    """One signed output URL to ``target``, resumable, checksum verified."""
    return _download(http, url, target, sha256)


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
