"""How often the main screen polls and redraws: every ``interval`` while the farm changes; while
nothing but the clock moves (an idle farm), polls come twice as far apart after each unchanged
one, up to ``IDLE_FACTOR`` times the interval, and the clock-driven figures (waited, ETAs, the
scheduler's beat) are redrawn every ``3 * IDLE_FACTOR`` intervals. A key, an action or any change
brings it back to the interval at once.

An idle UI on a big farm then costs a fraction of a busy one (``bench/ui.py`` measures it).
"""

from __future__ import annotations

from dataclasses import dataclass

from farm.live.snapshot import Snapshot

IDLE_FACTOR = 4.0


def same_farm(a: Snapshot | None, b: Snapshot | None) -> bool:
    """True when ``b`` shows the farm as ``a`` did: only the clock (and what it derives, such as
    the scheduler's heartbeat age and the Redis round trip) moved."""
    if a is None or b is None:
        return False
    if (a.rows, a.alerts, a.audit, a.workers_alive, a.redis_restarts, _pool_counts(a)) != (
        b.rows,
        b.alerts,
        b.audit,
        b.workers_alive,
        b.redis_restarts,
        _pool_counts(b),
    ):
        return False
    left, right = dict(a.stats.__dict__), dict(b.stats.__dict__)
    for key in ("scheduler_heartbeat_age",):
        left.pop(key, None)
        right.pop(key, None)
    return left == right


def _pool_counts(snapshot: Snapshot) -> list[tuple[str, int, int, int, int]]:
    """What the screen shows of the pools (not their report times, which move every second)."""
    return [(p.name, p.current, p.target, p.minimum, p.maximum) for p in snapshot.pools]


@dataclass
class Cadence:
    interval: float
    idle_polls: int = 0

    @property
    def idle_max(self) -> float:
        return self.interval * IDLE_FACTOR

    @property
    def redraw_after(self) -> float:
        """Seconds an unchanged farm's figures may stay on screen before they are redrawn."""
        return 3 * self.idle_max

    def next(self, unchanged: bool) -> float:
        """Seconds until the next poll, after a poll that found the farm ``unchanged`` or not."""
        self.idle_polls = self.idle_polls + 1 if unchanged else 0
        return min(self.idle_max, self.interval * 2**self.idle_polls)

    def wake(self) -> bool:
        """Back to the full rate; True if it was slowed down."""
        slowed = self.idle_polls > 0
        self.idle_polls = 0
        return slowed
