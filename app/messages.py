"""App-wide messages: what the poller and the operator-action workers post back to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from farm.live.snapshot import Snapshot


@dataclass
class SnapshotReady(Message):
    """A poll read the farm."""

    snapshot: Snapshot


@dataclass
class SnapshotFailed(Message):
    """A poll failed; ``disconnected`` when Redis could not be reached at all."""

    error: str
    disconnected: bool


@dataclass
class ActionDone(Message):
    """An operator action (cancel, retry, caps, pause, submit) finished; ``text`` says how."""

    text: str
    error: bool = False
