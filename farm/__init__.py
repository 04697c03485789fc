"""The render farm's teammate API: ``from farm import Farm``.

farm = Farm.connect()                      # URL, $FARM_REDIS_URL, or the config file
job_id = farm.submit("manim", {"script": "scenes/intro.py", "scene": "Intro"}, job_type="doubt")
info = farm.wait(job_id, timeout=900)      # JobInfo once finished, failed or canceled
"""

import typing as _typing

from .config import FarmConfig, load_config
from .errors import (
    ConfigError,
    FarmError,
    FarmUnavailableError,
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    UnknownRendererError,
)
from .models import (
    Attempt,
    AuditEntry,
    Caps,
    ErrorKind,
    FarmStats,
    JobInfo,
    JobStatus,
    Priority,
    RendererStats,
    Window,
    WorkerInfo,
)

if _typing.TYPE_CHECKING:
    from .client import Farm


def __getattr__(name: str) -> _typing.Any:
    # Farm is loaded on first use: it needs the renderer registry, and `renderers` itself imports
    # farm.models, so loading it eagerly here would make `import renderers` circular.
    if name == "Farm":
        from .client import Farm

        return Farm
    raise AttributeError(f"module 'farm' has no attribute {name!r}")


__all__ = [
    "Attempt",
    "AuditEntry",
    "Caps",
    "ConfigError",
    "ErrorKind",
    "Farm",
    "FarmConfig",
    "FarmError",
    "FarmStats",
    "FarmUnavailableError",
    "InvalidJobError",
    "InvalidTransitionError",
    "JobInfo",
    "JobNotFoundError",
    "JobStatus",
    "Priority",
    "RendererStats",
    "UnknownRendererError",
    "Window",
    "WorkerInfo",
    "load_config",
]
