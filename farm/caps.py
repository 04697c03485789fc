"""Concurrency caps: the values in Redis, the time windows that stretch them, and changing them live.

Why home-made and not RQ's ``RateLimit``: RQ 3's rate limit admits jobs into the queue
oldest-first across queues at *enqueue* time and counts queued jobs against the limit, so a low
job enqueued earlier takes a freed slot before a high one, and priority is lost. The farm's
contract (SPEC §5) is that a freed slot goes to the best waiting job of that renderer by priority
then FIFO, and that no interleaving of workers ever exceeds a cap. So the caps live in one Redis
hash (``farm:caps``) and are enforced at *dispatch* by ``lua/dispatch.lua``, which counts the
slots in use and takes one in the same atomic step. This module only reads, seeds and writes
the hash; it never decides who runs.

Stored in ``farm:caps``: ``total``, ``r:<renderer>`` (base values the operator sets) and
``windows`` ("start-end-multiplier" in local minutes of the day, comma separated). Windows come
from config and are rewritten by every farm process that starts, so all workers agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from redis import Redis

from . import keys
from .config import FarmConfig
from .errors import InvalidJobError
from .models import Caps, Window
from .timeutil import local_minute_of_day
from .transitions import event, wake

MAX_CAP = 10_000


def windows_field(windows: tuple[Window, ...]) -> str:
    parts = []
    for window in windows:
        start, end = window.minutes()
        parts.append(f"{start}-{end}-{window.multiplier:g}")
    return ",".join(parts)


def parse_windows(value: str) -> tuple[Window, ...]:
    """Windows as stored in farm:caps; a part that cannot be read is skipped (as dispatch.lua does)."""
    windows = []
    for part in filter(None, value.split(",")):
        try:
            start, end, mult = part.split("-")
            minutes = int(start), int(end)
            multiplier = float(mult)
        except ValueError:
            continue
        if all(0 <= m < 24 * 60 for m in minutes) and 0 < multiplier <= 100:
            windows.append(Window(start=_hhmm(minutes[0]), end=_hhmm(minutes[1]), multiplier=multiplier))
    return tuple(windows)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def seed(connection: Redis, config: FarmConfig) -> None:
    """Write config caps where Redis has none yet (keeps live changes); windows always follow config."""
    with connection.pipeline() as pipe:
        pipe.hsetnx(keys.CAPS, keys.CAPS_TOTAL, config.caps.total)
        for name, cap in config.caps.renderers.items():
            pipe.hsetnx(keys.CAPS, keys.CAPS_RENDERER + name, cap)
        pipe.hset(keys.CAPS, keys.CAPS_WINDOWS, windows_field(config.windows()))
        pipe.execute()


def window_in_force(windows: tuple[Window, ...], minute_of_day: int) -> Window | None:
    for window in windows:
        if window.contains(minute_of_day):
            return window
    return None


def scaled(value: int, window: Window | None) -> int:
    # Same rounding as dispatch.lua: floor(value * multiplier).
    return value if window is None else math.floor(value * window.multiplier + 1e-9)


def _cap(value: str | None) -> int | None:
    """A stored cap; None when unreadable (dispatch.lua then uses the default total, or 0 for a
    renderer: a cap that cannot be read never lets more run)."""
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and 0 <= number <= MAX_CAP else None


def caps_from_hash(
    raw: Mapping[bytes, bytes], config: FarmConfig, minute_of_day: int | None = None, processes: int = 0
) -> Caps:
    text = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()}
    total = _cap(text.get(keys.CAPS_TOTAL))
    if total is None:
        total = config.caps.total
    prefix = keys.CAPS_RENDERER
    renderers = {k[len(prefix) :]: _cap(v) or 0 for k, v in text.items() if k.startswith(prefix)}
    if not raw:
        renderers = dict(config.caps.renderers)
    stored = text.get(keys.CAPS_WINDOWS)
    windows = parse_windows(stored) if stored is not None else config.windows()
    minute = local_minute_of_day() if minute_of_day is None else minute_of_day
    window = window_in_force(windows, minute)
    return Caps(
        total=total,
        renderers=renderers,
        effective_total=scaled(total, window),
        effective_renderers={name: scaled(cap, window) for name, cap in renderers.items()},
        window=window,
        windows=windows,
        processes=processes,
    )


def read_caps(connection: Redis, config: FarmConfig, processes: int = 0) -> Caps:
    return caps_from_hash(connection.hgetall(keys.CAPS), config, processes=processes)


def _check_cap(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"{name} must be an integer, got {value!r}")
    if not 0 <= value <= MAX_CAP:
        raise InvalidJobError(f"{name} must be between 0 and {MAX_CAP}, got {value}")
    return value


def validate_changes(total: Any = None, renderers: Mapping[str, Any] | None = None) -> dict[str, int | None]:
    """Field -> new value (None removes a renderer's cap). Raises before anything is written."""
    changes: dict[str, int | None] = {}
    if total is not None:
        changes[keys.CAPS_TOTAL] = _check_cap("total cap", total)
    if renderers is not None:
        if not isinstance(renderers, Mapping):
            raise InvalidJobError("renderers must map renderer names to caps")
        for name, value in renderers.items():
            if not isinstance(name, str) or not name or len(name) > 64:
                raise InvalidJobError(f"bad renderer name {name!r}")
            changes[keys.CAPS_RENDERER + name] = None if value is None else _check_cap(f"{name} cap", value)
    return changes


def apply_changes(connection: Redis, changes: Mapping[str, int | None]) -> None:
    """Write cap changes in one transaction and wake idle workers (a raised cap starts jobs now)."""
    with connection.pipeline() as pipe:
        for field, value in changes.items():
            if value is None:
                pipe.hdel(keys.CAPS, field)
            else:
                pipe.hset(keys.CAPS, field, value)
        event(pipe, e="caps", **{k: "" if v is None else str(v) for k, v in changes.items()})
        wake(pipe)
        pipe.execute()
