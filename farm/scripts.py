"""Loads the farm's Lua scripts (``farm/lua/*.lua``) and registers them with a Redis client."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from redis import Redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    return (Path(__file__).parent / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def register(connection: Redis, name: str) -> Script:
    """A callable Script bound to ``connection`` (EVALSHA with automatic reload)."""
    return connection.register_script(source(name))
