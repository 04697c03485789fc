"""The local outcome journal: run endings that could not be written to Redis, kept on this host's
disk and replayed once Redis answers again.

A render that completed while Redis was away must be recorded as finished, not rendered again.
So the horse (or the worker, for endings it decides) writes one JSON file per ending into
``data_dir/journal/`` (temp file, fsync, rename) when Redis cannot take it, then moves on. Every
worker on the host replays pending entries before it asks for new work. An entry is applied
through the run's own fenced claim, so it lands only if nobody took the run over meanwhile, and
once however many workers try (claims are idempotent, see ``transitions.claim``). A finished entry
publishes its staging dir when its claim wins and discards it when it lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from .. import endings, transitions
from ..config import FarmConfig
from ..models import ErrorKind
from . import exchange, rendering

log = logging.getLogger("farm.journal")

OUTCOMES = ("finished", "failed", "canceled", "requeued")


@dataclass(frozen=True)
class Entry:
    """One run ending, as the party that decided it would have written it."""

    run: endings.Run
    outcome: str  # one of OUTCOMES
    result: dict[str, Any] | None = None  # finished: the result to record (files still staged)
    kind: ErrorKind | None = None  # failed: the error kind
    error: str = ""  # failed/canceled: the message
    log_lines: list[str] = field(default_factory=list)  # the render's last log lines

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run.to_json(),
            "outcome": self.outcome,
            "result": self.result,
            "kind": self.kind.value if self.kind else None,
            "error": self.error,
            "log_lines": self.log_lines,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        if data.get("outcome") not in OUTCOMES:
            raise ValueError(f"unknown outcome {data.get('outcome')!r}")
        kind = data.get("kind")
        return cls(
            run=endings.Run.from_json(data["run"]),
            outcome=data["outcome"],
            result=data.get("result"),
            kind=ErrorKind(kind) if kind else None,
            error=str(data.get("error") or ""),
            log_lines=[str(line) for line in data.get("log_lines") or []],
        )


def journal_dir(config: FarmConfig) -> Path:
    return config.data_dir / "journal"


def record(config: FarmConfig, entry: Entry) -> Path:
    """Write an entry durably (temp file, fsync, rename); returns its path."""
    directory = journal_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{entry.run.job_id}.{entry.run.token}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(entry.to_json(), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    log.warning(
        "journal: Redis unreachable; %s of %s kept in %s until it answers",
        entry.outcome,
        entry.run.job_id,
        path,
    )
    return path


def pending(config: FarmConfig) -> bool:
    try:
        with os.scandir(journal_dir(config)) as entries:
            return any(e.name.endswith(".json") for e in entries)
    except OSError:
        return False


def replay(connection: Redis, config: FarmConfig, place: exchange.Place | None = None) -> int:
    """Apply every pending entry of this host; returns how many were applied. A RedisError stops
    the replay (the entries stay for the next try)."""
    done = 0
    for path in sorted(journal_dir(config).glob("*.json")):
        with contextlib.ExitStack() as stack:
            try:
                handle = stack.enter_context(open(path, encoding="utf-8"))
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (OSError, BlockingIOError):
                continue  # gone, or another worker of this host is replaying it
            if not path.exists():
                continue
            try:
                entry = Entry.from_json(json.load(handle))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("journal: unreadable entry %s (%s); set aside", path.name, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            apply(connection, config, entry, place or exchange.Place(local=True))
            path.unlink()
            done += 1
    return done


def apply(connection: Redis, config: FarmConfig, entry: Entry, place: exchange.Place) -> bool:
    """Record one ending (fenced on its run's token); True when it was this entry that landed."""
    run = entry.run
    wip = transitions.wip_cleanup(connection, run.job_id, run.priority)
    tail = rendering.log_tail_writes(run.job_id, entry.log_lines)

    def extra(pipe: Any) -> None:
        tail(pipe)
        wip(pipe)

    if entry.outcome == "finished":
        result = entry.result or {"outputs": []}
        won = endings.finish(connection, config, run, result, extra)
        if won:
            exchange.publish(config, place, run.job_id, run.token, result)
        else:
            exchange.discard(config, place, run.job_id, run.token)
    elif entry.outcome == "failed":
        won = (
            endings.fail(connection, config, run, entry.kind or ErrorKind.UNKNOWN, entry.error, extra)
            is not None
        )
        exchange.discard(config, place, run.job_id, run.token)
    elif entry.outcome == "canceled":
        won = endings.cancel(connection, config, run, entry.error or "canceled while running", extra)
        exchange.discard(config, place, run.job_id, run.token)
    else:
        won = endings.requeue(connection, config, run, extra)
        exchange.discard(config, place, run.job_id, run.token)
    log.warning(
        "journal: %s of %s %s",
        entry.outcome,
        run.job_id,
        "recorded" if won else "was overtaken (already ended)",
    )
    return won
