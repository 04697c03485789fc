"""Finding renderers by name: the ``farm.renderers`` entry-point group, then config plugins.

Built-in renderers are entry points of this distribution (``pyproject.toml``); other installed
packages can add theirs to the same group, and teams can name one in config
(``[plugins] mine = "package.module:Class"``). Job data only ever carries a *name*, looked up
here; it never names code to import. Listing names imports nothing; loading a renderer imports
exactly its module, on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .base import Renderer, RendererEnv

if TYPE_CHECKING:
    from ..config import FarmConfig

GROUP = "farm.renderers"


class RegistryError(Exception):
    """A renderer named in config cannot be loaded or its settings are wrong."""


@cache
def installed() -> dict[str, str]:
    """Renderer name -> "module:Class" for every entry point of the group (read once)."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def renderer_env(config: FarmConfig) -> RendererEnv:
    """What the farm's config tells renderers about this machine."""
    return RendererEnv(
        data_dir=config.data_dir,
        output_dir=config.output_dir,
        input_roots=config.input_roots,
        log_dir=config.log_dir,
        max_output_bytes=config.limits.max_output_bytes,
        max_result_bytes=config.limits.max_result_bytes,
    )


def _load_class(path: str) -> type[Renderer[Any]]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise RegistryError(f"{path!r} is not of the form 'package.module:Class'")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"cannot import {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Renderer)):
        raise RegistryError(f"{path!r} is not a Renderer subclass")
    return cls


class Registry:
    """Renderer instances by name, built lazily from the farm's config."""

    def __init__(
        self,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        custom: Mapping[str, str] | None = None,
        env: RendererEnv | None = None,
    ) -> None:
        self._paths = dict(installed())
        self._paths.update(custom or {})
        self._settings = {name: dict(value) for name, value in (settings or {}).items()}
        self._env = env
        self._instances: dict[str, Renderer[Any]] = {}

    @classmethod
    def from_config(cls, config: FarmConfig) -> Registry:
        """The registry every farm process uses: settings, plugins and paths from ``config``."""
        return cls(config.renderers, config.plugins, renderer_env(config))

    def names(self) -> list[str]:
        return sorted(self._paths)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._paths

    def get(self, name: str) -> Renderer[Any]:
        """The renderer called ``name``; ``KeyError`` if there is none."""
        if name not in self._paths:
            raise KeyError(name)
        instance = self._instances.get(name)
        if instance is None:
            cls = _load_class(self._paths[name])
            raw = self._settings.get(name, {})
            try:
                settings = cls.Settings.model_validate(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise RegistryError(f"renderers.{name}.{where}: {first['msg']}") from exc
            instance = cls(settings, self._env)
            self._instances[name] = instance
        return instance

    def check_settings(self) -> None:
        """Load every configured renderer once so config mistakes surface at start-up."""
        for name in self._settings:
            if name in self._paths:
                self.get(name)
