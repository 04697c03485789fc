"""The audit panel: the latest operator actions (who, when, what) from the snapshot."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from farm.live.snapshot import Snapshot
from farm.models import AuditEntry

from ..clock import Clock
from ..format import short_id

SHOWN = 4


def audit_line(entry: AuditEntry, clock: Clock) -> Text:
    target = short_id(entry.target) if entry.target and len(entry.target) > 12 else (entry.target or "")
    return Text.assemble(
        (clock.hms(entry.at), "dim"),
        "  ",
        (entry.who, "cyan"),
        "  ",
        (entry.action, "bold"),
        f" {target}" if target else "",
        (f"  {entry.detail}" if entry.detail else "", "dim"),
        no_wrap=True,
        overflow="ellipsis",
    )


class AuditPanel(Widget):
    DEFAULT_CSS = f"""
    AuditPanel {{
        height: {SHOWN + 2};
        padding: 0 1;
        border: round $primary-muted;
    }}
    """

    snapshot: reactive[Snapshot | None] = reactive(None)

    def __init__(self, clock: Clock, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.border_title = "audit log"

    def render(self) -> Group:
        shown = max(1, min(SHOWN, self.size.height))  # a short terminal gets a shorter panel
        entries = self.snapshot.audit[:shown] if self.snapshot else ()
        if not entries:
            return Group(Text("no operator actions yet", style="dim"))
        return Group(*(audit_line(entry, self.clock) for entry in entries))
