"""The app's clock: "now" and the time zone times are shown in; fixed in tests so screens are stable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo


class Clock:
    """Wall time, shown in the machine's local time zone."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def local(self, when: datetime) -> datetime:
        return when.astimezone()

    def hms(self, when: datetime | None) -> str:
        return "-" if when is None else self.local(when).strftime("%H:%M:%S")


@dataclass(frozen=True)
class FixedClock(Clock):
    """A clock stopped at ``at`` that shows times in ``tz`` (tests and screenshots)."""

    at: datetime
    tz: tzinfo = UTC

    def now(self) -> datetime:
        return self.at

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.tz)
