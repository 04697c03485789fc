"""Fitting a line of phrases into a width without wrapping mid-phrase: each phrase has shorter forms
(the last may be empty: dropped), and the least important phrase gives way first.

Used by the stats bar, so a narrow terminal shows fewer, shorter phrases instead of wrapped halves.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text


@dataclass(frozen=True)
class Part:
    """One phrase of a line: ``forms`` from the fullest to the shortest; ``rank`` 0 is the most
    important (it gives way last). A form carries its own leading separator."""

    forms: tuple[Text, ...]
    rank: int = 0

    @classmethod
    def of(cls, rank: int, *forms: Text | str) -> Part:
        return cls(tuple(f if isinstance(f, Text) else Text(f) for f in forms), rank)


def fit_line(parts: list[Part], width: int) -> Text:
    """The line at its fullest that fits ``width`` cells; phrases shorten or drop from the highest
    rank down (the rightmost first among equals). Cropped with an ellipsis only if even the
    shortest forms do not fit."""
    choice = [0] * len(parts)

    def length() -> int:
        return sum(part.forms[c].cell_len for part, c in zip(parts, choice, strict=True))

    while length() > width:
        can = [i for i, part in enumerate(parts) if choice[i] < len(part.forms) - 1]
        if not can:
            break
        worst = max(can, key=lambda i: (parts[i].rank, i))
        choice[worst] += 1
    line = Text(no_wrap=True, overflow="ellipsis")
    for part, c in zip(parts, choice, strict=True):
        line.append_text(part.forms[c])
    if line.cell_len > width:
        line.truncate(max(width, 0), overflow="ellipsis")
    return line
