"""While the UI owns the terminal, log records go to ``<log_dir>/tui.log`` instead of over the screen."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _to_terminal(handler: logging.Handler) -> bool:
    terminal = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    return isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in terminal


@contextlib.contextmanager
def logs_to_file(path: Path) -> Iterator[None]:
    """Swap the root logger's terminal handlers for a file handler until the block ends."""
    root = logging.getLogger()
    moved = [h for h in root.handlers if _to_terminal(h)]
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    for old in moved:
        root.removeHandler(old)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for old in moved:
            root.addHandler(old)
