"""The renderer contract (``base``) and the registry that finds renderers by name (``registry``).

Backends live in the top-level ``renderers`` package (and in any package that registers in the
``farm.renderers`` entry-point group); they import only this contract, and the farm never
imports them by module: it loads them through the registry.
"""

from .base import (
    Health,
    Params,
    RenderContext,
    Renderer,
    RendererEnv,
    RenderError,
    Settings,
    SimpleContext,
    format_validation_error,
)
from .registry import GROUP, Registry, RegistryError, renderer_env

__all__ = [
    "GROUP",
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
    "format_validation_error",
    "renderer_env",
]
