"""The banner over the job table: "disconnected — retrying" and the farm's alerts; hidden when all is well."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from farm.live.snapshot import Snapshot

from ..clock import Clock
from ..link import Link, LinkState


def banner_lines(snapshot: Snapshot | None, link: Link, clock: Clock) -> list[Text]:
    lines = []
    if link.state in (LinkState.DOWN, LinkState.ERROR):
        what = "disconnected — retrying" if link.state is LinkState.DOWN else "refresh failed — retrying"
        last = f"last good refresh {clock.hms(link.last_good)}" if link.last_good else "no good refresh yet"
        lines.append(Text.assemble(("● ", "bold"), (what, "bold"), f"  ·  {last}  ·  {link.error}"))
    if snapshot is not None and snapshot.alerts:
        lines.append(Text.assemble(("alert: ", "bold"), "  ·  ".join(snapshot.alerts)))
    return lines


class AlertsBanner(Widget):
    DEFAULT_CSS = """
    AlertsBanner {
        height: auto;
        padding: 0 1;
        background: $warning-muted;
        color: $text;
        display: none;
    }
    AlertsBanner.-down {
        background: $error;
    }
    """

    # Not layout reactives: the banner changes the screen's layout only when its lines change
    # (most refreshes leave them alone, and a relayout repaints the whole screen).
    snapshot: reactive[Snapshot | None] = reactive(None, repaint=False)
    link: reactive[Link] = reactive(Link, repaint=False)

    def __init__(self, clock: Clock, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.lines: list[Text] = []

    def _update(self) -> None:
        lines = banner_lines(self.snapshot, self.link, self.clock)
        if lines == self.lines:
            return
        resized = len(lines) != len(self.lines)
        self.lines = lines
        self.display = bool(lines)
        self.set_class(self.link.state in (LinkState.DOWN, LinkState.ERROR), "-down")
        self.refresh(layout=resized)

    def watch_snapshot(self) -> None:
        self._update()

    def watch_link(self) -> None:
        self._update()

    def render(self) -> Group:
        return Group(*self.lines)
