"""The caps editor (``k``): the total cap and each renderer's cap, with the time windows in force.

Shows the base values the operator sets and what is in force now (windows multiply them); a
blank renderer cap means "no cap". Saving sends only what changed, through the ``Farm`` API
(audited), from a thread worker; the editor closes with a one-line summary.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from farm.caps import MAX_CAP, scaled
from farm.errors import FarmError
from farm.models import Caps

from ..source import Source


def windows_text(caps: Caps) -> Text:
    text = Text()
    if caps.window is not None:
        text.append(f"window in force: {caps.window.label()}", style="bold yellow")
        text.append(" — caps in force are the base values x", style="dim")
        text.append(f"{caps.window.multiplier:g}", style="dim")
    else:
        text.append("no time window in force: caps in force are the base values", style="dim")
    windows = ", ".join(w.label() for w in caps.windows) or "none configured"
    text.append(f"\nwindows (local time): {windows}")
    if caps.processes < caps.effective_total:
        text.append(
            f"\n{caps.processes} worker processes alive: no more than {caps.processes} jobs run at once, "
            "whatever the caps",
            style="yellow",
        )
    return text


def parse_cap(value: str, *, blank_ok: bool) -> int | None:
    """The cap typed in a field; None for blank (no cap). ValueError with a short reason."""
    text = value.strip()
    if not text:
        if blank_ok:
            return None
        raise ValueError("required")
    number = int(text)
    if not 0 <= number <= MAX_CAP:
        raise ValueError(f"must be 0 to {MAX_CAP}")
    return number


class CapsScreen(ModalScreen[str | None]):
    CSS_PATH = "caps.tcss"

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]

    class Saved(Message):
        def __init__(self, caps: Caps) -> None:
            super().__init__()
            self.caps = caps

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, source: Source, caps: Caps, renderers: list[str]) -> None:
        super().__init__()
        self.source = source
        self.caps = caps
        self.renderers = sorted(set(renderers) | set(caps.renderers))

    def compose(self) -> ComposeResult:
        caps = self.caps
        with VerticalScroll(id="dialog"):
            with Vertical(id="actions"):  # docked: the buttons stay in view while the fields scroll
                yield Static(id="problem")
                with Horizontal(id="buttons"):
                    yield Button("Save (ctrl+s)", variant="primary", id="save", compact=True)
                    yield Button("Cancel (esc)", id="cancel", compact=True)
            yield Static(windows_text(caps), id="windows")
            with Grid(id="head"):
                yield Label("cap")
                yield Label("base (blank: no cap)")
                yield Label("in force now")
            with Grid(id="fields"):
                yield Label("total")
                yield Input(str(caps.total), type="integer", id="cap-total", compact=True)
                yield Static(id="eff-total", classes="effective")
                for name in self.renderers:
                    base = caps.renderers.get(name)
                    yield Label(name)
                    yield Input(
                        "" if base is None else str(base),
                        type="integer",
                        placeholder="no cap",
                        id=f"cap-r-{name}",
                        compact=True,
                    )
                    yield Static(id=f"eff-r-{name}", classes="effective")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "caps"
        self.query_one("#cap-total", Input).focus()
        self.read()

    def read(self) -> tuple[int, dict[str, int | None]] | None:
        """The values typed, with what they mean now; None (and the reason shown) if one is bad."""
        problems = []
        window = self.caps.window
        try:
            total = parse_cap(self.query_one("#cap-total", Input).value, blank_ok=False)
            assert total is not None
            self.query_one("#eff-total", Static).update(str(scaled(total, window)))
        except ValueError as exc:
            problems.append(f"total: {exc}")
            total = None
        renderers: dict[str, int | None] = {}
        for name in self.renderers:
            try:
                cap = parse_cap(self.query_one(f"#cap-r-{name}", Input).value, blank_ok=True)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            renderers[name] = cap
            shown = "no cap" if cap is None else str(scaled(cap, window))
            self.query_one(f"#eff-r-{name}", Static).update(shown)
        self.query_one("#problem", Static).update(Text("; ".join(problems), style="bold red"))
        if problems or total is None:
            return None
        return total, renderers

    @on(Input.Changed)
    def _changed(self) -> None:
        self.read()

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        values = self.read()
        if values is None:
            return
        total, renderers = values
        changed = {n: v for n, v in renderers.items() if v != self.caps.renderers.get(n)}
        if total == self.caps.total and not changed:
            self.dismiss(None)
            return
        self._save(None if total == self.caps.total else total, changed)

    @work(thread=True, group="caps", exit_on_error=False)
    def _save(self, total: int | None, renderers: dict[str, int | None]) -> None:
        try:
            caps = self.source.set_caps(total=total, renderers=renderers or None)
        except FarmError as exc:
            self.post_message(self.Failed(str(exc)))
        except Exception as exc:  # report inline, keep the editor open
            self.post_message(self.Failed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.Saved(caps))

    def on_caps_screen_saved(self, message: CapsScreen.Saved) -> None:
        caps = message.caps
        per = ", ".join(f"{n} {v}" for n, v in sorted(caps.renderers.items())) or "no renderer caps"
        self.dismiss(f"caps saved: total {caps.total}; {per}")

    def on_caps_screen_failed(self, message: CapsScreen.Failed) -> None:
        self.query_one("#problem", Static).update(Text(f"not saved: {message.error}", style="bold red"))
