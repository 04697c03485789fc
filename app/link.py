"""UI state values shared by the main screen and its widgets: the Redis link and the status filter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from farm.models import JobStatus


class LinkState(str, Enum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"  # Redis unreachable
    ERROR = "error"  # Redis answered but the refresh failed


@dataclass(frozen=True)
class Link:
    """How the last refresh went, and when the last good one was."""

    state: LinkState = LinkState.CONNECTING
    last_good: datetime | None = None
    error: str = ""

    @property
    def up(self) -> bool:
        return self.state is LinkState.UP


# What `f` cycles through; None shows every status.
STATUS_CYCLE: tuple[JobStatus | None, ...] = (
    None,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.FAILED,
    JobStatus.FINISHED,
    JobStatus.CANCELED,
    JobStatus.SCHEDULED,
)


def next_status(current: JobStatus | None) -> JobStatus | None:
    index = STATUS_CYCLE.index(current) if current in STATUS_CYCLE else 0
    return STATUS_CYCLE[(index + 1) % len(STATUS_CYCLE)]
