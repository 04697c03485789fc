"""The render farm's teammate API: ``from farm import Farm``.

farm = Farm.connect()                      # URL, $FARM_REDIS_URL, or the config file
job_id = farm.submit("manim", {"script": "scenes/intro.py", "scene": "Intro"}, job_type="doubt")
info = farm.wait(job_id, timeout=900)      # JobInfo once finished, failed or canceled
"""

from .client import Farm
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
    OutputFile,
    Priority,
    RendererStats,
    Window,
    WorkerInfo,
)

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
    "OutputFile",
    "Priority",
    "RendererStats",
    "UnknownRendererError",
    "Window",
    "WorkerInfo",
    "load_config",
]
