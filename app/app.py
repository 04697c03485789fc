"""The Textual app: global keys, the screens, the CSS, and ``run_tui`` (for ``farm up`` and ``farm tui``)."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from farm.config import FarmConfig
from farm.connection import redact

from .clock import Clock
from .logs import logs_to_file
from .screens.main import MainScreen
from .source import RedisSource, Source

REFRESH_SECONDS = 1.0


class FarmApp(App[None]):
    """The operator's view of one farm; everything it shows comes from ``source``."""

    CSS_PATH = "app.tcss"
    TITLE = "farm"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("q", "quit", "Quit", tooltip="quit the UI (the farm keeps running)")]

    def __init__(
        self,
        source: Source,
        *,
        clock: Clock | None = None,
        interval: float = REFRESH_SECONDS,
        title: str = "farm",
    ) -> None:
        super().__init__()
        self.source = source
        self.clock = clock or Clock()
        self.interval = interval
        self.farm_title = title

    def on_mount(self) -> None:
        # Pushed rather than returned from get_default_screen(): Textual loads a screen's CSS_PATH
        # only for pushed screens.
        self.push_screen(MainScreen(self.source, self.clock, self.interval, self.farm_title))

    def on_unmount(self) -> None:
        self.source.close()


def run_tui(config: FarmConfig, url: str | None = None) -> None:
    """Run the UI against the farm at ``url`` (default: the config's Redis) until the operator quits."""
    source = RedisSource(config, url)
    with logs_to_file(config.log_dir / "tui.log"):
        FarmApp(source, title=f"farm · {redact(source.url)}").run()
