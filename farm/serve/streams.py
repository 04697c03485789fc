"""Receiving a request body into the store, for ``app.py``'s uploads and outputs: streamed to a
temporary file in chunks and hashed as it goes (memory independent of the file's size), bounded in
size, then placed by one rename; and the per-key locks that keep two requests off the same files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
from anyio import to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..files.store import CHUNK

DRAIN_LIMIT = 64 * 1024**2  # bytes of a refused body read and dropped so the client sees the answer
INCOMING = ".incoming"  # temporary files, beside the dirs they are renamed into (one filesystem)


@dataclass(frozen=True)
class Received:
    path: Path  # the temporary file holding the body
    size: int
    sha256: str


async def drain(request: Request) -> None:
    """Read and drop what is left of a body we refuse (up to DRAIN_LIMIT): a client still sending
    would otherwise meet a reset connection instead of the refusal."""
    dropped = 0
    with contextlib.suppress(Exception):
        async for chunk in request.stream():
            dropped += len(chunk)
            if dropped > DRAIN_LIMIT:
                return


async def refuse(request: Request, status: int, message: str) -> HTTPException:
    """The HTTP error to raise for ``request``, once its body was drained."""
    if request.method in ("PUT", "POST"):
        await drain(request)
    return HTTPException(status, message)


def _write(handle: IO[bytes], digest: hashlib._Hash, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)
        handle.write(chunk)


async def receive(request: Request, incoming: Path, limit: int, too_large: str) -> Received:
    """Stream the body of ``request`` into a new file in ``incoming``; 413 with ``too_large`` past
    ``limit`` bytes (nothing left behind). Disk writes and hashing run off the event loop, CHUNK
    bytes at a time."""
    await to_thread.run_sync(lambda: incoming.mkdir(parents=True, exist_ok=True))
    fd, name = tempfile.mkstemp(dir=incoming, prefix="in-")
    path = Path(name)
    handle = os.fdopen(fd, "wb", buffering=0)
    digest = hashlib.sha256()
    size = 0
    pending: list[bytes] = []
    pending_bytes = 0
    kept = False
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                await drain(request)
                raise HTTPException(413, too_large)
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= CHUNK:
                await to_thread.run_sync(_write, handle, digest, pending)
                pending, pending_bytes = [], 0
        if pending:
            await to_thread.run_sync(_write, handle, digest, pending)
        kept = True
        return Received(path, size, digest.hexdigest())
    finally:
        handle.close()
        if not kept:
            path.unlink(missing_ok=True)


def place(received: Received, target: Path) -> None:
    """Move a received file to ``target`` (its directories made) in one rename."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_dir():
            raise HTTPException(409, f"{target.name}: another file or directory has that name")
        os.replace(received.path, target)
    except (NotADirectoryError, IsADirectoryError, FileExistsError):
        raise HTTPException(409, f"{target.name}: another file or directory has that name") from None


def used_bytes(directory: Path, besides: Path) -> int:
    """Bytes held by the files under ``directory`` (links not followed), ``besides`` left out."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root) / name
            if path != besides:
                with contextlib.suppress(OSError):
                    total += path.lstat().st_size
    return total


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class KeyedLocks:
    """One asyncio lock per key (a job's uploads, a run's outputs), dropped when nobody holds it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = anyio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
