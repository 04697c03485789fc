"""Retry policy: which error kinds retry, how long to wait, and what happens after a failed run."""

from __future__ import annotations

import random
from enum import Enum

from .config import RetryConfig
from .models import ErrorKind


class Decision(str, Enum):
    FAIL = "fail"  # terminal: failed with its kind
    RETRY_LATER = "retry_later"  # delayed re-enqueue through rq-scheduler
    REQUEUE_NOW = "requeue_now"  # back in line at once (the render itself did not fail)
    CANCELED = "canceled"  # a cancel was pending: never retried (decided by endings.fail, not decide)


def decide(kind: ErrorKind, attempt: int, max_retries: int) -> Decision:
    """After run number ``attempt`` (1-based) failed with ``kind``."""
    if not kind.retryable or attempt > max_retries:
        return Decision.FAIL
    if kind is ErrorKind.WORKER_LOST:
        return Decision.REQUEUE_NOW
    return Decision.RETRY_LATER


def retry_delay(attempt: int, policy: RetryConfig, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed run ``attempt``: base x factor^(attempt-1), capped, jittered."""
    delay = min(policy.base_delay * policy.factor ** max(0, attempt - 1), policy.max_delay)
    if policy.jitter and delay:
        delay *= 1 + (rng or random).uniform(-policy.jitter, policy.jitter)
    return max(0.0, min(delay, policy.max_delay))
