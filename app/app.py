"""The Textual app: global keys, the screens, the CSS, and ``run_tui`` (for ``farm up`` and ``farm tui``)."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen

from farm.config import FarmConfig
from farm.connection import redact

from .clock import Clock
from .logs import logs_to_file
from .screens.main import MainScreen
from .source import RedisSource, Source

REFRESH_SECONDS = 1.0


class FarmApp(App[None]):
    """The operator's view of one farm (``farm tui``: quitting leaves the farm running)."""

    CSS_PATH = "app.tcss"
    TITLE = "farm"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("q", "quit", "Quit", tooltip="quit this UI; the farm keeps running")]
    QUIT_NOTE = "q closes this UI only: the workers, the scheduler and Redis keep running."

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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A dialog has its own keys (its footer shows them); q must not quit from under it.
        return not (action == "quit" and isinstance(self.screen, ModalScreen))


class FarmUpApp(FarmApp):
    """The UI of ``farm up``, which owns the farm: quitting it stops the whole farm."""

    BINDINGS = [Binding("q", "quit", "Quit", tooltip="quit and stop the whole farm (farm up)")]
    QUIT_NOTE = (
        "q stops the whole farm (this is farm up): running jobs finish or go back in line, "
        "then the scheduler and Redis stop. To leave the farm running, use farm up --no-tui "
        "and farm tui."
    )


def run_tui(config: FarmConfig, url: str | None = None, *, stops_farm: bool | None = None) -> None:
    """Run the UI against the farm at ``url`` (default: the config's Redis) until the operator quits.

    ``farm up`` passes the URL of the farm it started and stops that farm when this returns;
    ``farm tui`` passes None and leaves the farm running. ``stops_farm`` says which explicitly
    (default: a given URL means ``farm up``), so the help tells the operator what ``q`` does.
    """
    source = RedisSource(config, url)
    with logs_to_file(config.log_dir / "tui.log"):
        app_class(url, stops_farm)(source, title=f"farm · {redact(source.url)}").run()


def app_class(url: str | None, stops_farm: bool | None = None) -> type[FarmApp]:
    """FarmUpApp for ``farm up`` (it passes the URL of the farm it started), else FarmApp."""
    return FarmUpApp if (url is not None if stops_farm is None else stops_farm) else FarmApp
