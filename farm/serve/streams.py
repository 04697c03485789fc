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
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from ..files.store import CHUNK

WRITE_AHEAD = 2  # received chunks that may wait while the previous one is written
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
    data = b"".join(chunks)  # one write and one hash call per CHUNK, not one per socket read
    digest.update(data)
    handle.write(data)


class _Writer:
    """Writes and hashes batches of chunks in a worker thread while the next batch arrives."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.error: OSError | None = None

    async def run(self, batches: MemoryObjectReceiveStream[list[bytes]]) -> None:
        async with batches:
            async for chunks in batches:
                if self.error is None:  # after a failed write, keep taking batches so nobody waits
                    try:
                        await to_thread.run_sync(_write, self.handle, self.digest, chunks)
                    except OSError as exc:
                        self.error = exc


async def receive(request: Request, incoming: Path, limit: int, too_large: str) -> Received:
    """Stream the body of ``request`` into a new file in ``incoming``; 413 with ``too_large`` past
    ``limit`` bytes (nothing left behind). Writing and hashing run in a worker thread, CHUNK bytes
    at a time, while the next chunk arrives; at most WRITE_AHEAD chunks wait, so memory stays
    a few MB whatever the file's size."""
    await to_thread.run_sync(lambda: incoming.mkdir(parents=True, exist_ok=True))
    fd, name = tempfile.mkstemp(dir=incoming, prefix="in-")
    path = Path(name)
    handle = os.fdopen(fd, "wb", buffering=0)
    writer = _Writer(handle)
    size, outcome, kept = 0, "whole", False
    try:
        async with anyio.create_task_group() as group:
            send, batches = anyio.create_memory_object_stream[list[bytes]](max_buffer_size=WRITE_AHEAD)
            group.start_soon(writer.run, batches)
            async with send:
                pending: list[bytes] = []
                pending_bytes = 0
                try:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > limit:
                            outcome = "too large"
                            break
                        pending.append(chunk)
                        pending_bytes += len(chunk)
                        if pending_bytes >= CHUNK:
                            await send.send(pending)
                            pending, pending_bytes = [], 0
                except ClientDisconnect:
                    outcome = "gone"
                if pending and outcome == "whole":
                    await send.send(pending)
        if outcome == "too large":
            await drain(request)
            raise HTTPException(413, too_large)
        if outcome == "gone":
            raise HTTPException(400, "the client went away before the end of the file")
        if writer.error is not None:
            raise HTTPException(507, f"the store cannot write the file: {writer.error.strerror}")
        kept = True
        return Received(path, size, writer.digest.hexdigest())
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
