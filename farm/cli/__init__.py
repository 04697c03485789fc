"""The ``farm`` command and the processes it runs: ``commands`` (the Click commands), ``views``
(their text output), ``up`` (the all-in-one), ``embedded`` and ``redis_conf`` (the embedded
Redis), ``supervisor``, ``doctor`` and ``demo``."""

from .commands import main

__all__ = ["main"]
