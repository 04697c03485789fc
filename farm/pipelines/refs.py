"""``job:<id>/<name>`` in params: an earlier job's output, by the name it was published under.

A reference is a whole string value anywhere in the params (nested lists and dicts included). In
``submit_many`` the id may be ``#<index>``, a job of the same batch. At submit the renderer
validates the params with each reference standing in as a plain relative path; at render time
the worker puts the referenced files in a directory of the attempt's own and rewrites each
reference to its path there (``farm/worker/refs.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidJobError
from ..files.store import file_name

PREFIX = "job:"
REF_RE = re.compile(r"job:(#\d{1,5}|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/(.+)", re.DOTALL)
MAX_REFS = 256


@dataclass(frozen=True)
class Ref:
    job: str  # a job id, or "#<index>" of a job in the same submit_many batch
    name: str  # the output's name, relative to that job's output dir

    def text(self) -> str:
        return f"{PREFIX}{self.job}/{self.name}"

    @property
    def index(self) -> int | None:
        return int(self.job[1:]) if self.job.startswith("#") else None


def parse(value: str) -> Ref | None:
    """The reference a string is, or None. A string that starts with ``job:`` but is no valid
    reference is an error (it was surely meant as one)."""
    if not value.startswith(PREFIX):
        return None
    match = REF_RE.fullmatch(value)
    if match is None:
        raise InvalidJobError(f"{value[:80]!r} is not a job output reference (job:<id>/<name>)")
    return Ref(match.group(1), file_name(match.group(2), what="referenced output name"))


def find(params: Any) -> list[Ref]:
    """Every reference in ``params``, in walk order (repeats kept)."""
    found: list[Ref] = []

    def visit(value: Any) -> Any:
        if isinstance(value, str) and (ref := parse(value)) is not None:
            found.append(ref)
            if len(found) > MAX_REFS:
                raise InvalidJobError(f"params hold more than {MAX_REFS} job output references")
        return value

    walk(params, visit)
    return found


def rewrite(params: Any, to: Callable[[Ref], str]) -> Any:
    """A copy of ``params`` with each reference replaced by ``to(ref)``."""

    def visit(value: Any) -> Any:
        if isinstance(value, str) and (ref := parse(value)) is not None:
            return to(ref)
        return value

    return walk(params, visit)


def replace_strings(params: Any, mapping: dict[str, str]) -> Any:
    """A copy of ``params`` with every string found in ``mapping`` replaced."""
    return walk(params, lambda v: mapping.get(v, v) if isinstance(v, str) else v)


def walk(value: Any, visit: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        return {k: walk(v, visit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(walk(v, visit) for v in value)
    return visit(value)


def stand_in(number: int, ref: Ref) -> str:
    """The plain relative path a reference stands as while the renderer validates the params."""
    return f"farm-ref-{number}/{ref.name}"
