"""Cache entries in Redis: ``farm:cache:<key>`` names the finished job whose outputs a hit
reuses. An entry lasts ``cache.max_age`` (never longer than the job it names is kept), is
dropped when that job is gone or no longer finished, and the oldest entries go first when the
outputs they point to pass ``cache.max_bytes`` together. ``farm:cache:lock:<key>`` holds the job
rendering a key now; an identical job waits for it while it runs, and takes over otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from .. import keys
from ..config import FarmConfig
from ..records import safe_json

LOCK_MARGIN = 60  # seconds a lock outlives its job's timeout


@dataclass(frozen=True)
class Entry:
    key: str
    job_id: str
    renderer: str
    files: list[dict[str, Any]]
    bytes: int
    at: float
    hits: int


def _text(raw: dict[bytes, bytes], name: str) -> str:
    return raw.get(name.encode(), b"").decode("utf-8", "replace")


def _entry(key: str, raw: dict[bytes, bytes]) -> Entry | None:
    try:
        files = safe_json(raw.get(b"files") or b"[]")
        entry = Entry(
            key=key,
            job_id=_text(raw, "job"),
            renderer=_text(raw, "renderer"),
            files=files if isinstance(files, list) else [],
            bytes=int(_text(raw, "bytes") or 0),
            at=float(_text(raw, "at") or 0),
            hits=int(_text(raw, "hits") or 0),
        )
    except ValueError:
        return None
    return entry if entry.job_id and all(isinstance(f, dict) for f in entry.files) else None


def lookup(connection: Redis, key: str) -> Entry | None:
    """The live entry for ``key``: its job still exists and is finished (else it is dropped)."""
    entry = _entry(key, connection.hgetall(keys.CACHE + key))
    if entry is None:
        return None
    if connection.hget(keys.job(entry.job_id), keys.RQ_STATUS) != b"finished":
        drop(connection, [key])
        return None
    return entry


def take_lock(connection: Redis, key: str, job_id: str, ttl: float) -> str | None:
    """Hold ``key`` for ``job_id``; None when held now, else the id of the running job holding it.
    A lock whose job is not running (it failed, was requeued, or is gone) is taken over."""
    lock = keys.CACHE_LOCK + key
    millis = int((ttl + LOCK_MARGIN) * 1000)
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(lock)
                holder = pipe.get(lock)
                holder_id = holder.decode("utf-8", "replace") if holder else ""
                running = holder_id and pipe.hget(keys.job(holder_id), keys.RQ_STATUS) == b"started"
                if running and holder_id != job_id:
                    pipe.unwatch()
                    return holder_id
                pipe.multi()
                pipe.set(lock, job_id, px=millis)
                pipe.execute()
                return None
            except WatchError:
                continue


def record(
    pipe: Pipeline, config: FarmConfig, key: str, job_id: str, renderer: str, files: list[Any]
) -> None:
    """An entry for a finished miss (queued with the writes that record the job's end)."""
    size = sum(int(f.get("size") or 0) for f in files if isinstance(f, dict))
    now = time.time()
    pipe.hset(
        keys.CACHE + key,
        mapping={
            "job": job_id,
            "renderer": renderer,
            "files": json.dumps(files),
            "bytes": size,
            "at": repr(now),
            "hits": 0,
        },
    )
    pipe.expire(keys.CACHE + key, min(config.cache.max_age, config.retention.finished))
    pipe.zadd(keys.CACHE_INDEX, {key: now})
    pipe.delete(keys.CACHE_LOCK + key)


def count_hit(pipe: Pipeline, key: str) -> None:
    pipe.hincrby(keys.CACHE + key, "hits", 1)


def entries(connection: Redis, limit: int | None = None) -> list[Entry]:
    """Live entries, newest first (the index's expired members are dropped on the way)."""
    members = connection.zrevrange(keys.CACHE_INDEX, 0, -1 if limit is None else limit - 1)
    names = [m.decode("ascii", "replace") for m in members]
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.CACHE + name)
        raws = pipe.execute()
    found, gone = [], []
    for name, raw in zip(names, raws, strict=True):
        entry = _entry(name, raw) if raw else None
        if entry is None:
            gone.append(name)
        else:
            found.append(entry)
    if gone:
        drop(connection, gone)
    return found


def drop(connection: Redis, names: list[str]) -> None:
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.delete(keys.CACHE + name)
        pipe.zrem(keys.CACHE_INDEX, *names)
        pipe.execute()


def trim(connection: Redis, config: FarmConfig) -> int:
    """Drop the oldest entries while their outputs pass ``cache.max_bytes``; returns how many."""
    live = entries(connection)
    total = sum(e.bytes for e in live)
    evict = []
    for entry in reversed(live):  # oldest first
        if total <= config.cache.max_bytes:
            break
        evict.append(entry.key)
        total -= entry.bytes
    if evict:
        drop(connection, evict)
    return len(evict)


def clear(connection: Redis) -> int:
    """Forget every entry (the outputs stay where they are); returns how many there were."""
    names = [m.decode("ascii", "replace") for m in connection.zrange(keys.CACHE_INDEX, 0, -1)]
    if names:
        drop(connection, names)
    return len(names)
