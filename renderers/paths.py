"""Path confinement for renderer inputs and outputs: lexical checks at submit time, real ones at render.

``check_relative_or_within`` is pure (no disk access) and runs inside ``validate()``;
``confine`` resolves symlinks and checks existence inside ``render()``; ``plain_name`` vets output
file names. Every refusal is a ``RenderError`` naming the offending path in one line.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from farm.models import ErrorKind

from .base import RenderError

MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255


def _invalid(message: str) -> RenderError:
    return RenderError(ErrorKind.INVALID_INPUT, message)


def _show(path: str) -> str:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return repr(shown)


def _basic_checks(path_str: str) -> None:
    if not isinstance(path_str, str) or not path_str.strip():
        raise _invalid("empty path")
    if "\x00" in path_str:
        raise _invalid(f"path contains a NUL byte: {_show(path_str)}")
    if len(path_str) > MAX_PATH_CHARS:
        raise _invalid(f"path is longer than {MAX_PATH_CHARS} characters: {_show(path_str)}")


def _escapes(parts: Sequence[str]) -> bool:
    """True if walking ``parts`` (a relative path) ever climbs above its starting directory."""
    depth = 0
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False


def _within(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path == root or root in path.parents


def check_relative_or_within(path_str: str, roots: Sequence[Path] = ()) -> PurePosixPath:
    """Lexically vet an input path given in job data; return it normalised.

    A relative path must not climb out of its root with ``..``. An absolute path must lie inside
    one of ``roots``; when no roots are known (a submitter without the farm's config) absolute
    paths pass here and ``confine`` decides at render time. No filesystem access.
    """
    _basic_checks(path_str)
    pure = PurePosixPath(path_str)
    if not pure.is_absolute():
        if _escapes(pure.parts):
            raise _invalid(f"path escapes its root with '..': {_show(path_str)}")
        return PurePosixPath(posixpath.normpath(path_str))
    normal = PurePosixPath(posixpath.normpath(path_str))
    if roots and not any(_within(normal, PurePosixPath(posixpath.normpath(str(r)))) for r in roots):
        raise _invalid(f"absolute path is outside the input roots: {_show(path_str)}")
    return normal


def confine(path: str | os.PathLike[str], roots: Sequence[Path], *, must_exist: bool = True) -> Path:
    """Resolve ``path`` (relative paths are relative to the first root) and keep it inside ``roots``.

    Symlinks are followed, so a link pointing outside every root is refused like ``..`` would be.
    Raises ``RenderError``: ``invalid_input`` for an escape, ``not_found`` for a missing input.
    """
    raw = os.fspath(path)
    if not roots:
        raise _invalid(f"no input roots are configured, refusing {_show(raw)}")
    real_roots = [Path(root).resolve(strict=False) for root in roots]
    check_relative_or_within(raw, [*roots, *real_roots])
    candidate = Path(raw)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    try:
        resolved = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on older Pythons
        raise _invalid(f"cannot resolve path {_show(raw)}: {exc}") from exc
    if not any(resolved == root or root in resolved.parents for root in real_roots):
        raise _invalid(f"path resolves outside the allowed roots: {_show(raw)}")
    if must_exist and not resolved.exists():
        raise RenderError(ErrorKind.NOT_FOUND, f"input not found: {_show(raw)}")
    return resolved


def plain_name(name: str, *, what: str = "output name") -> str:
    """Vet a bare file name (no directories) for a file a renderer creates in its staging dir."""
    if not isinstance(name, str) or not name.strip():
        raise _invalid(f"empty {what}")
    if "\x00" in name:
        raise _invalid(f"{what} contains a NUL byte: {_show(name)}")
    if "/" in name or "\\" in name:
        raise _invalid(f"{what} must be a plain file name without directories: {_show(name)}")
    if name in (".", ".."):
        raise _invalid(f"{what} must be a plain file name: {_show(name)}")
    if name.startswith("-"):
        raise _invalid(f"{what} must not start with '-': {_show(name)}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise _invalid(f"{what} contains control characters: {_show(name)}")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise _invalid(f"{what} is longer than {MAX_NAME_BYTES} bytes: {_show(name)}")
    return name


def as_value_error(exc: RenderError) -> ValueError:
    """Turn a lexical ``RenderError`` into the ``ValueError`` pydantic validators must raise."""
    return ValueError(exc.message)
