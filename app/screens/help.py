"""The help screen: every key of the main screen (the same bindings the footer shows), with what it does;
it scrolls when the terminal is too short for the list."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

OTHER_KEYS = (
    ("↑ ↓ PgUp PgDn", "move through the jobs"),
    ("Home End", "first / last job"),
    ("esc", "clear the filters; close a dialog or view"),
    ("tab", "next field in a form"),
    ("ctrl+s", "save or submit a form"),
)


def key_label(binding: Binding) -> str:
    return binding.key_display or binding.key


def help_table(bindings: list[BindingType]) -> Table:
    table = Table.grid(padding=(0, 3))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for binding in Binding.make_bindings(bindings):
        if binding.key == "escape":
            continue
        table.add_row(key_label(binding), binding.tooltip or binding.description)
    for key, text in OTHER_KEYS:
        table.add_row(key, Text(text, style="dim"))
    return table


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", key_display="?"),
    ]

    def __init__(self, bindings: list[BindingType], note: str = "") -> None:
        super().__init__()
        self.key_bindings = bindings
        self.note = note

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(help_table(self.key_bindings), id="keys")
            if self.note:
                yield Static(self.note, id="note")
            yield Static("esc or ? closes this help; ↑ ↓ scroll it", id="hint")
        yield Footer()

    def on_mount(self) -> None:
        dialog = self.query_one("#dialog")
        dialog.border_title = "keys"
        dialog.focus()
