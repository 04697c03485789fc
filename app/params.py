"""Parses the enqueue form's params field: a JSON object, ``key=value`` pairs, or both (pairs win)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from farm.errors import InvalidJobError


def parse_params(text: str) -> dict[str, Any]:
    """``{"duration": 3}``, ``duration=3 stages=4`` or ``{"duration": 3} stages=4``.

    A value is read as JSON when it can be (``3``, ``true``, ``[1, 2]``), else kept as text, the
    same rule as ``farm submit --param``. Raises InvalidJobError with a one-line reason.
    """
    rest = text.strip()
    params: dict[str, Any] = {}
    if rest.startswith("{"):
        try:
            loaded, end = json.JSONDecoder().raw_decode(rest)
        except json.JSONDecodeError as exc:
            raise InvalidJobError(f"params JSON: {exc.msg} (column {exc.colno})") from None
        except (ValueError, RecursionError) as exc:  # e.g. nested too deeply, a number too long
            raise InvalidJobError(f"params JSON: {type(exc).__name__}") from None
        if not isinstance(loaded, dict):
            raise InvalidJobError("params JSON must be an object")
        params.update(loaded)
        rest = rest[end:]
    try:
        tokens = shlex.split(rest)
    except ValueError as exc:
        raise InvalidJobError(f"params: {exc}") from None
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise InvalidJobError(f"params: expected key=value, got {token!r}")
        try:
            params[key] = json.loads(value)
        except (ValueError, RecursionError):
            params[key] = value
    return params
