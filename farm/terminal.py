"""Text bound for a terminal: control characters (ESC, C1, BEL, CR...) escaped, so job data and
errors written by anyone never drive the operator's terminal. Used by the CLI and the TUI."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import BaseModel

# C0 controls but tab, DEL, C1 controls, and the bidi overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char == "\n":
        return "\\n"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``); lone surrogates too."""
    value = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    if keep_newlines:
        return "\n".join(_CONTROL.sub(_escape, line) for line in value.split("\n"))
    return _CONTROL.sub(_escape, value)


def sanitized(value: Any) -> Any:
    """``value`` (text, containers, pydantic models) with every string made ``printable`` (line
    breaks kept): what a screen shows of stored data can then never drive the terminal."""
    if isinstance(value, Enum):
        return value
    if isinstance(value, str):
        return printable(value, keep_newlines=True)
    if isinstance(value, BaseModel):
        return type(value).model_validate(sanitized(dict(value)))
    if isinstance(value, dict):
        return {sanitized(k): sanitized(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(sanitized(v) for v in value)
    return value
