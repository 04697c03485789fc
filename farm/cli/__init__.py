"""The ``farm`` command and the processes it runs: ``commands`` (the Click commands), ``views``
(their text output), ``up`` (the all-in-one), ``embedded``, ``redis_conf`` and
``redis_foreground`` (the embedded Redis; ``farm redis``), ``supervisor`` and ``systemd`` (their
configs), ``doctor`` and ``demo``."""

from .commands import main

__all__ = ["main"]
