"""Path confinement for renderer inputs and outputs: lexical checks at submit time, safe opens at render.

``check_relative_or_within`` is pure (no disk access) and runs inside ``validate()``;
``open_confined`` opens an input inside ``render()`` without following any symlink, and tools get
the opened file as ``fd_path(fd)`` (or a ``snapshot`` copy), so a symlink swapped in after the
check cannot redirect them; ``plain_name`` vets output file names. ``resolve_confined`` and
``sibling_paths`` name, for the render cache's key, the very files those opens and snapshots
read. Every refusal is a ``RenderError`` naming the offending path in one line. Linux only
(``/proc/self/fd``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TypeVar

from farm.models import ErrorKind
from farm.render import RenderError

MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not hang the render (it is refused as "not a regular file")
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
T = TypeVar("T")


def _invalid(message: str) -> RenderError:
    return RenderError(ErrorKind.INVALID_INPUT, message)


def show(text: str, limit: int = 200) -> str:
    """``text`` quoted for a one-line message: escaped (repr) and cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def is_text(value: str) -> bool:
    """False when ``value`` holds lone surrogates, which no argv, file name or JSON body can carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _basic_checks(path_str: str) -> None:
    if not isinstance(path_str, str) or not path_str.strip():
        raise _invalid("empty path")
    if "\x00" in path_str:
        raise _invalid(f"path contains a NUL byte: {show(path_str)}")
    if not is_text(path_str):
        raise _invalid(f"path is not valid UTF-8 text: {show(path_str)}")
    if len(path_str) > MAX_PATH_CHARS:
        raise _invalid(f"path is longer than {MAX_PATH_CHARS} characters: {show(path_str)}")


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
            raise _invalid(f"path escapes its root with '..': {show(path_str)}")
        return PurePosixPath(posixpath.normpath(path_str))
    normal = PurePosixPath(posixpath.normpath(path_str))
    if roots and not any(_within(normal, PurePosixPath(posixpath.normpath(str(r)))) for r in roots):
        raise _invalid(f"absolute path is outside the input roots: {show(path_str)}")
    return normal


def _below_root(raw: str, roots: Sequence[Path]) -> tuple[Path, tuple[str, ...]]:
    """The root ``raw`` lies in and its components below that root (lexically normalised)."""
    normal = check_relative_or_within(raw)  # NUL, length and '..' escapes, refused alike
    if not normal.is_absolute():
        # The first root that holds the whole relative path (the farm puts a job's uploaded
        # files first, then the input roots); else the first root, which reports it missing.
        for root in roots:
            if os.path.lexists(os.path.join(root, *normal.parts)):
                return root, normal.parts
        return roots[0], normal.parts
    for root in roots:
        # the root as configured, or where it really is (a root may itself be a symlink)
        for form in (PurePosixPath(posixpath.normpath(str(root))), PurePosixPath(Path(root).resolve())):
            if _within(normal, form):
                return root, normal.relative_to(form).parts
    raise _invalid(f"absolute path is outside the input roots: {show(raw)}")


def _open_error(exc: OSError, raw: str, dir_fd: int, part: str) -> RenderError:
    try:
        is_link = stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        is_link = False
    if is_link or exc.errno == errno.ELOOP:
        return _invalid(f"symlinks are not allowed below an input root: {show(raw)} (at {show(part)})")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return RenderError(ErrorKind.NOT_FOUND, f"input not found: {show(raw)}")
    return _invalid(f"cannot open input {show(raw)}: {exc.strerror or exc}")


def open_confined(path: str | os.PathLike[str], roots: Sequence[Path], *, directory: bool = False) -> int:
    """Open an input inside ``roots`` and return the fd (close-on-exec; the caller closes it).

    Relative paths are relative to the first root that has them. The path is walked one component at a time
    from an fd of its root with ``O_NOFOLLOW`` (``openat``), so no symlink below the root is
    ever followed, whether it was there at submit time or swapped in a moment ago: the file
    opened is the one checked. Symlinks below a root are refused outright (even ones pointing
    back inside the roots), the root itself may be one. Hand the result to a tool as
    ``fd_path(fd)`` with ``pass_fds``; never reopen ``path`` by name.
    Raises ``RenderError``: ``invalid_input`` for an escape, a symlink or a non-regular file
    (a non-directory with ``directory=True``), ``not_found`` for a missing input.
    """
    raw = os.fspath(path)
    if not roots:
        raise _invalid(f"no input roots are configured, refusing {show(raw)}")
    root, parts = _below_root(raw, roots)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise RenderError(
            ErrorKind.NOT_FOUND, f"input root {show(str(root))} cannot be opened: {exc}"
        ) from None
    try:
        for index, part in enumerate(parts):
            flags = _DIR_FLAGS if directory or index < len(parts) - 1 else _FILE_FLAGS
            try:
                next_fd = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                raise _open_error(exc, raw, fd, part) from None
            os.close(fd)
            fd = next_fd
        if not directory and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _invalid(f"input is not a regular file: {show(raw)}")
        return fd
    except BaseException:
        os.close(fd)
        raise


def fd_path(fd: int) -> str:
    """How a child started with ``pass_fds=(fd,)`` names the file: the kernel's handle on the
    very file we opened, which no rename or symlink swap can redirect (Linux ``/proc``)."""
    return f"/proc/self/fd/{fd}"


class Moved(RenderError):
    """An opened input's name no longer leads to it (renamed, replaced or swapped for a symlink)."""

    def __init__(self, raw: str) -> None:
        message = f"input {show(raw)} was moved or replaced while it was being opened"
        super().__init__(ErrorKind.INVALID_INPUT, message)


def folder_of(fd: int) -> Path:
    """The folder the open file ``fd`` is in, by the kernel's name for it (no symlinks): where it
    was opened, or where a rename since has moved it."""
    return Path(os.readlink(fd_path(fd))).parent  # a " (deleted)" suffix stays on the file's name


def real_path(fd: int, raw: str) -> Path:
    """Where the open file ``fd`` lives, as a path without symlinks (the kernel's name for it).

    Checked against the fd (same device and inode): raises ``Moved`` if that name now leads
    elsewhere or nowhere, rather than naming another file. ``raw``: the path as given."""
    target = os.readlink(fd_path(fd))
    opened = os.fstat(fd)
    try:
        now = os.stat(target, follow_symlinks=False)
    except OSError:
        raise Moved(raw) from None
    if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        raise Moved(raw)
    return Path(target)


ATTEMPTS = 3  # a name that keeps changing under us is refused after this many looks


def again_if_moved(look: Callable[[], T]) -> T:
    """``look()``, run again while it raises ``Moved`` (``ATTEMPTS`` runs in all): each run
    opens the names afresh, so what they lead to by then is checked like any input."""
    for _ in range(ATTEMPTS - 1):
        with contextlib.suppress(Moved):
            return look()
    return look()


def resolve_confined(path: str | os.PathLike[str], roots: Sequence[Path], *, directory: bool = False) -> Path:
    """The real path of the file ``open_confined(path, roots)`` opens, with its refusals
    (``invalid_input``, ``not_found``) alike; the fd is closed again. A name swapped between the
    open and the check is looked up again (``again_if_moved``): a symlink now there is refused
    as one, a name that keeps changing is ``Moved``."""

    def look() -> Path:
        fd = open_confined(path, roots, directory=directory)
        try:
            return real_path(fd, os.fspath(path))
        finally:
            os.close(fd)

    return again_if_moved(look)


class TooLarge(RenderError):
    """A file went past the bytes it was allowed (``invalid_input``)."""

    def __init__(self, name: str, max_bytes: int) -> None:
        super().__init__(ErrorKind.INVALID_INPUT, f"{show(name)} is larger than {max_bytes} bytes")


def snapshot(fd: int, dest: Path, *, max_bytes: int) -> int:
    """Copy the open file ``fd`` to a new file ``dest`` (never an existing one); return its size.

    For tools that need a real path of their own (manim imports the script by name).
    """
    created = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    copied = 0
    try:
        with os.fdopen(created, "wb") as out:
            while chunk := os.pread(fd, 1 << 20, copied):
                copied += len(chunk)
                if copied > max_bytes:
                    raise TooLarge(dest.name, max_bytes)
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return copied


def _siblings(
    folder_fd: int, name: str, budget: int, max_files: int, take: Callable[[int, str, int], int]
) -> list[str]:
    """Hand each file of ``name``'s suffix in the opened folder (sorted, regular files only, never
    through a symlink) to ``take(fd, sibling, budget)``, which returns the bytes it used or raises
    ``TooLarge``; at most ``max_files`` are taken. Return the names left out."""
    suffix = PurePosixPath(name).suffix
    skipped: list[str] = []
    with os.scandir(folder_fd) as entries:
        siblings = sorted(
            entry.name
            for entry in entries
            if entry.name.endswith(suffix) and entry.name != name and entry.is_file(follow_symlinks=False)
        )
    taken = 0
    for sibling in siblings:
        try:
            fd = os.open(sibling, _FILE_FLAGS, dir_fd=folder_fd)
        except OSError:  # gone, or swapped for a symlink since the listing
            skipped.append(sibling)
            continue
        try:
            if taken < max_files and stat.S_ISREG(os.fstat(fd).st_mode):
                budget -= take(fd, sibling, budget)
                taken += 1
            else:
                skipped.append(sibling)
        except TooLarge:  # over the byte budget
            skipped.append(sibling)
        finally:
            os.close(fd)
    return skipped


def snapshot_with_siblings(
    file_fd: int, folder_fd: int, name: str, dest: Path, *, max_bytes: int, max_files: int
) -> list[str]:
    """``snapshot`` the opened file as ``dest/name``, and the files of the same suffix in its
    opened folder beside it (regular files only, never through a symlink), within ``max_bytes``
    in all and ``max_files`` siblings; return the names of the siblings left out."""
    budget = max_bytes - snapshot(file_fd, dest / name, max_bytes=max_bytes)

    def take(fd: int, sibling: str, left: int) -> int:
        return snapshot(fd, dest / sibling, max_bytes=left)

    return _siblings(folder_fd, name, budget, max_files, take)


def sibling_paths(file_fd: int, folder_fd: int, name: str, *, max_bytes: int, max_files: int) -> list[Path]:
    """The real paths of the files ``snapshot_with_siblings`` copies from this opened file and
    folder: the file first, then its siblings in copy order (the same listing and limits, sizes
    from ``fstat``). Refuses what it refuses (``TooLarge`` for the file itself)."""
    size = os.fstat(file_fd).st_size
    if size > max_bytes:
        raise TooLarge(name, max_bytes)
    found = [real_path(file_fd, name)]

    def take(fd: int, sibling: str, budget: int) -> int:
        used = os.fstat(fd).st_size
        if used > budget:
            raise TooLarge(sibling, budget)
        found.append(real_path(fd, sibling))
        return used

    _siblings(folder_fd, name, max_bytes - size, max_files, take)
    return found


def plain_name(name: str, *, what: str = "output name") -> str:
    """Vet a bare file name (no directories) for a file a renderer creates in its staging dir."""
    if not isinstance(name, str) or not name.strip():
        raise _invalid(f"empty {what}")
    if "\x00" in name:
        raise _invalid(f"{what} contains a NUL byte: {show(name)}")
    if "/" in name or "\\" in name:
        raise _invalid(f"{what} must be a plain file name without directories: {show(name)}")
    if name in (".", ".."):
        raise _invalid(f"{what} must be a plain file name: {show(name)}")
    if name.startswith("-"):
        raise _invalid(f"{what} must not start with '-': {show(name)}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise _invalid(f"{what} contains control characters: {show(name)}")
    if not is_text(name):
        raise _invalid(f"{what} is not valid UTF-8 text: {show(name)}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise _invalid(f"{what} is longer than {MAX_NAME_BYTES} bytes: {show(name)}")
    return name


def as_value_error(exc: RenderError) -> ValueError:
    """Turn a lexical ``RenderError`` into the ``ValueError`` pydantic validators must raise."""
    return ValueError(exc.message)
