"""A render's cache key, and the sha256 of its input files, memoized by inode and mtime.

The key is the sha256 of one JSON document: the renderer's name, its ``tool_version()``, the
params as the renderer's model normalizes them (keys sorted), and the sha256 of every input file
``cache_inputs`` lists, in its order (a concat of a, b is not one of b, a). Job output references
(``job:<id>/<name>``) are already files by then, so two pipelines over identical outputs share
entries. A file is hashed once: its digest is kept in Redis under this host, its device and
inode, stamped with its size, mtime and ctime (a rewrite changes them), for seven days.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis import Redis

from .. import keys
from ..files.store import sha256_file

KEY_RE = re.compile(r"[0-9a-f]{64}")
DIGEST_TTL = 7 * 86_400
HOST = socket.gethostname()


def _stamp(stat: os.stat_result) -> str:
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:"


def digest(connection: Redis, path: Path) -> str:
    """The file's sha256, read from the memo when the file has not changed since it was hashed."""
    before = os.stat(path)
    memo = f"{keys.DIGEST}{HOST}:{before.st_dev}:{before.st_ino}"
    stamp = _stamp(before)
    known = connection.get(memo)
    if known is not None:
        text = known.decode("ascii", "replace")
        if text.startswith(stamp) and KEY_RE.fullmatch(text[len(stamp) :]):
            return text[len(stamp) :]
    sha = sha256_file(path)
    if _stamp(os.stat(path)) == stamp:  # unchanged while it was read: worth remembering
        connection.set(memo, stamp + sha, ex=DIGEST_TTL)
    return sha


def cache_key(renderer: str, version: str, params: dict[str, Any], inputs: Sequence[str]) -> str:
    document = json.dumps(
        {"renderer": renderer, "version": version, "params": params, "inputs": list(inputs)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(document.encode("utf-8")).hexdigest()
