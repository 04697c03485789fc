"""Exceptions raised by the farm API, all in one place.

    FarmError
    ├── InvalidJobError (also ValueError)   bad renderer params, options, ids, sizes
    │   └── UnknownRendererError            renderer name not registered
    ├── JobNotFoundError (also KeyError)    no job with that id
    ├── InvalidTransitionError              e.g. cancel a finished job, retry a running one
    ├── ConfigError                         the config file is wrong (names the key)
    └── FarmUnavailableError                Redis cannot be reached

The CLI maps them to exit codes: 2 bad input, 3 not found, 4 unavailable.
"""

from __future__ import annotations


class FarmError(Exception):
    """Base class of every error the farm API raises on purpose."""

    exit_code = 1


class InvalidJobError(FarmError, ValueError):
    exit_code = 2


class UnknownRendererError(InvalidJobError):
    pass


class JobNotFoundError(FarmError, KeyError):
    exit_code = 3

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "job not found"


class InvalidTransitionError(FarmError):
    exit_code = 2


class ConfigError(FarmError):
    exit_code = 2


class FarmUnavailableError(FarmError):
    exit_code = 4
