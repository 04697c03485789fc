"""The ``--demo`` trickle: a steady, realistic mix of demo renders so a newcomer sees every feature move
(priorities, caps holding jobs back, progress, retries, failures)."""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from ..client import Farm
from ..config import FarmConfig
from ..connection import connect_redis
from ..errors import FarmError
from ..models import JobStatus

log = logging.getLogger("farm.demo")

NAMES = ("intro", "outro", "lesson-3", "doubt-417", "daily-ca", "topic-short", "recap", "teaser", "thumbs")
JOB_TYPES = ("doubt", "topic_short", "daily_ca", None)
MAX_QUEUED = 25
# Simulated renderers (entry points in pyproject.toml), how often each is picked, its run time range, and
# the cap the demo gives it when the farm has none, so a held-back renderer is visible.
RENDERERS = {
    "demo-manim": (4, (4.0, 12.0), 2),
    "demo-ffmpeg": (3, (1.0, 4.0), None),
    "demo-http": (2, (0.5, 2.0), None),
    "demo": (1, (2.0, 6.0), None),
}


def demo_request(rng: random.Random) -> dict[str, Any]:
    renderer = rng.choices(list(RENDERERS), weights=[w for w, _, _ in RENDERERS.values()])[0]
    low, high = RENDERERS[renderer][1]
    params: dict[str, Any] = {"duration": round(rng.uniform(low, high), 1), "stages": rng.randint(2, 6)}
    roll = rng.random()
    if roll < 0.06:
        params["fail_with"] = "invalid_input"
    elif roll < 0.14:
        params["fail_with"] = "api_error" if renderer == "demo-http" else rng.choice(["api_error", "timeout"])
        params["fail_attempts"] = 1  # fails once, then the retry succeeds
    return {
        "renderer": renderer,
        "params": params,
        "job_type": rng.choice(JOB_TYPES),
        "name": f"{rng.choice(NAMES)}-{rng.randint(1, 99)}",
        "max_retries": 2,
    }


def feed_forever(config: FarmConfig, url: str, stop: threading.Event, seed: int | None = None) -> None:
    """Submit a burst at start, then a job every second or two while fewer than MAX_QUEUED wait."""
    rng = random.Random(seed)
    farm = Farm(connect_redis(url, config, check=False), config, url=url, who="demo")
    try:
        uncapped = {n: cap for n, (_, _, cap) in RENDERERS.items() if cap and n not in farm.caps().renderers}
        if uncapped:
            farm.set_caps(renderers=uncapped)
        farm.submit_many([demo_request(rng) for _ in range(12)])
    except FarmError as exc:
        log.warning("demo: %s", exc)
    while not stop.wait(rng.uniform(0.8, 2.0)):
        try:
            queued = sum(farm.stats().counts[JobStatus.QUEUED].values())
            if queued < MAX_QUEUED:
                farm.submit_many([demo_request(rng) for _ in range(rng.randint(1, 3))])
        except FarmError as exc:
            log.warning("demo: %s", exc)
