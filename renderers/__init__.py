"""Render backends and the registry that finds them by name.

Built-in renderers are listed in ``BUILTIN``; teams add their own in config
(``[renderers.custom] mine = "package.module:Class"``). Job data only ever carries a *name*,
looked up here; it never names code to import.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .base import Health, Params, RenderContext, Renderer, RendererEnv, RenderError, Settings, SimpleContext

__all__ = [
    "BUILTIN",
    "Health",
    "Params",
    "RenderContext",
    "RenderError",
    "Renderer",
    "RendererEnv",
    "Registry",
    "RegistryError",
    "Settings",
    "SimpleContext",
]

BUILTIN: dict[str, str] = {
    "demo": "renderers.demo:DemoRenderer",
    "manim": "renderers.manim:ManimRenderer",
    "http": "renderers.http:HttpRenderer",
    "ffmpeg": "renderers.ffmpeg:FfmpegRenderer",
    "command": "renderers.command:CommandRenderer",
    # Simulated stand-ins for the real renderers, fed by `farm up --demo` so a newcomer sees
    # several renderers, their caps and their failures move without installing any tool.
    "demo-manim": "renderers.demo:DemoRenderer",
    "demo-ffmpeg": "renderers.demo:DemoRenderer",
    "demo-http": "renderers.demo:DemoRenderer",
}


class RegistryError(Exception):
    """A renderer named in config cannot be loaded or its settings are wrong."""


def _load_class(path: str) -> type[Renderer]:
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
        self._paths = dict(BUILTIN)
        self._paths.update(custom or {})
        self._settings = {name: dict(value) for name, value in (settings or {}).items()}
        self._env = env
        self._instances: dict[str, Renderer] = {}

    def names(self) -> list[str]:
        return sorted(self._paths)

    def __contains__(self, name: object) -> bool:
        return name in self._paths

    def get(self, name: str) -> Renderer:
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
