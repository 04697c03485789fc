"""The main screen's footer: Textual's Footer, fitted to the width. When every key does not fit,
the compact style comes first, then the least needed keys go (``drop_order``) and the help key
says "More keys" (the help lists them all). Nothing is ever cut off at the right edge."""

from __future__ import annotations

from collections.abc import Sequence

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

MORE = "More keys"


def key_width(key_display: str, description: str, compact: bool) -> int:
    """Cells a FooterKey takes: key and description with Footer's paddings and margin."""
    if compact:
        return len(key_display) + 1 + len(description) + 1
    return len(key_display) + 2 + len(description) + 1


def fit_keys(
    keys: Sequence[tuple[str, str, str]], width: int, drop_order: Sequence[str], help_action: str
) -> tuple[bool, list[str]]:
    """(compact?, actions kept) for keys given as (action, key display, description)."""
    for compact in (False, True):
        if sum(key_width(k, d, compact) for _, k, d in keys) <= width:
            return compact, [a for a, _, _ in keys]
    kept = [a for a, _, _ in keys]
    shown = {a: (k, d) for a, k, d in keys}
    for action in drop_order:
        if action not in kept:
            continue
        kept.remove(action)
        total = sum(key_width(shown[a][0], MORE if a == help_action else shown[a][1], True) for a in kept)
        if total <= width:
            break
    return True, kept


class KeysFooter(Footer):
    """A Footer that drops keys in ``drop_order`` rather than run off the screen."""

    def __init__(self, drop_order: Sequence[str] = (), help_action: str = "help") -> None:
        super().__init__(show_command_palette=False)
        self.drop_order = tuple(drop_order)
        self.help_action = help_action
        self._fitted_for = -1

    def compose(self) -> ComposeResult:
        keys = [k for k in super().compose() if isinstance(k, FooterKey)]
        width = self.size.width or self.app.size.width
        self._fitted_for = width
        compact, kept = fit_keys(
            [(k.action, k.key_display, k.description) for k in keys], width, self.drop_order, self.help_action
        )
        self.set_reactive(Footer.compact, compact)
        self.set_class(compact, "-compact")
        dropped = len(kept) < len(keys)
        for key in keys:
            if key.action not in kept:
                continue
            if dropped and key.action == self.help_action:
                key.description = MORE
            key.compact = compact
            yield key

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._fitted_for:
            self.call_after_refresh(self.recompose)
