"""How big a worker pool is: ``PoolSize`` (``N`` or ``MIN:MAX``, from the command line or the
config) and ``Scaler``, the pool's once-a-second look at the farm (``lua/scale.lua``) that says
how many workers to start and publishes the pool's counts in ``farm:pool:<name>``.

Scaling up is decided here; scaling down is not: a worker above the minimum exits by itself once
it has been idle for ``worker.idle_exit`` seconds (RQ's ``max_idle_time``), between two looks for
work, so no busy worker is ever stopped to shrink the pool. Pure apart from ``Scaler``'s Redis
calls; used by ``pool.py`` and the CLI."""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from .. import keys
from ..caps import read_caps
from ..config import FarmConfig, WorkerConfig
from ..scripts import Scaling, scripts_for

SCAN_BUDGET = 200  # queue and held-set entries scale.lua looks at, at most, per look
RECORD_TTL = 10  # seconds a pool's record outlives its last report


@dataclass(frozen=True)
class PoolSize:
    """``minimum`` processes always (respawned when they die), up to ``maximum`` while work waits."""

    minimum: int
    maximum: int

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum or self.maximum < 1:
            raise ValueError(f"{self.minimum}:{self.maximum} is not a pool size (0 <= MIN <= MAX, MAX >= 1)")

    @property
    def fixed(self) -> bool:
        return self.minimum == self.maximum

    def __str__(self) -> str:
        return str(self.maximum) if self.fixed else f"{self.minimum}:{self.maximum}"

    @classmethod
    def parse(cls, text: str, limit: int = 256) -> PoolSize:
        """``"4"`` (a fixed pool) or ``"1:4"``; ValueError says what is wrong."""
        low, colon, high = text.strip().partition(":")
        try:
            minimum, maximum = int(low), int(high if colon else low)
        except ValueError:
            raise ValueError(f"{text!r} is not N or MIN:MAX (e.g. 4 or 1:4)") from None
        size = cls(minimum, maximum)
        if size.maximum > limit:
            raise ValueError(f"{text!r}: at most {limit} processes")
        return size

    @classmethod
    def from_config(cls, worker: WorkerConfig) -> PoolSize:
        return cls(worker.processes, max(worker.max_processes, worker.processes))


def idle_exit_seconds(config: FarmConfig) -> int:
    """``worker.idle_exit`` as RQ's ``max_idle_time`` takes it (whole seconds, at least 1)."""
    return max(1, math.ceil(config.worker.idle_exit))


class Scaler:
    """One pool's look at the farm: read the effective caps, run scale.lua (which reserves the
    workers to start), publish the pool's counts. Raises Redis errors (the pool carries on)."""

    def __init__(self, connection: Redis, config: FarmConfig, name: str, size: PoolSize) -> None:
        self.connection = connection
        self.config = config
        self.name = name
        self.size = size
        self.host = socket.gethostname()

    def look(self, workers: Sequence[str], gone: Sequence[str], *, burst: bool = False) -> Scaling:
        """``workers``: this pool's live processes' worker names; ``gone``: its workers that died
        lately (their heartbeats linger for a while and must not count as idle workers). A burst
        pool keeps no minimum: its workers quit when nothing is left, and are not replaced."""
        caps = read_caps(self.connection, self.config)
        return scripts_for(self.connection).scale(
            self.name,
            minimum=0 if burst else self.size.minimum,
            maximum=self.size.maximum,
            alive_within=self.config.scheduler.worker_timeout,
            ttl=RECORD_TTL,
            budget=SCAN_BUDGET,
            total_cap=caps.effective_total,
            renderer_caps=caps.effective_renderers,
            workers=workers,
            gone=gone,
        )

    def publish(self, decision: Scaling, current: int) -> None:
        """The counts ``farm workers`` and the TUI show (``current``: processes alive now, the
        ones just started included)."""
        values = (
            current,
            decision.target,
            self.size.minimum,
            self.size.maximum,
            decision.busy,
            decision.idle,
            decision.starting,
            decision.eligible,
        )
        where = (self.host, os.getpid(), f"{time.time():.3f}")
        record = keys.pool(self.name)
        fields = dict(zip(keys.POOL_FIELDS + keys.POOL_WHERE, values + where, strict=True))
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hset(record, mapping=fields)
            pipe.expire(record, RECORD_TTL)
            pipe.sadd(keys.POOLS, self.name)
            pipe.execute()

    def forget(self) -> None:
        """The pool stopped: drop its record (else it expires after ``RECORD_TTL`` seconds)."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.delete(keys.pool(self.name))
            pipe.srem(keys.POOLS, self.name)
            pipe.execute()
