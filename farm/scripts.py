"""Loads the farm's Lua scripts (``farm/lua/*.lua``) and registers them with a Redis client."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis import Redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    return resources.files("farm").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def register(connection: Redis, name: str) -> Script:
    """A callable Script bound to ``connection`` (EVALSHA with automatic reload)."""
    return connection.register_script(source(name))
