"""Path confinement: lexical checks (pure), and safe opens and snapshots on a real tmp tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from farm.models import ErrorKind
from farm.render import RenderError
from renderers.paths import (
    check_relative_or_within,
    fd_path,
    open_confined,
    plain_name,
    snapshot,
    snapshot_with_siblings,
)

ROOTS = (Path("/srv/farm/inputs"), Path("/mnt/shared"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("scenes/intro.py", "scenes/intro.py"),
        ("./scenes//intro.py", "scenes/intro.py"),
        ("scenes/../other/intro.py", "other/intro.py"),
        ("a b/c;d$(e)`f`.py", "a b/c;d$(e)`f`.py"),
        ("/srv/farm/inputs/x.py", "/srv/farm/inputs/x.py"),
        ("/mnt/shared/deep/../x.mp4", "/mnt/shared/x.mp4"),
    ],
)
def test_lexical_accepts_paths_inside(given: str, expected: str) -> None:
    assert check_relative_or_within(given, ROOTS) == PurePosixPath(expected)


@pytest.mark.parametrize(
    "hostile",
    [
        "../secrets.py",
        "a/../../secrets.py",
        "./../x",
        "scenes/../../../../etc/passwd",
        "/etc/passwd",
        "/srv/farm/inputs/../../../etc/passwd",
        "/srv/farm/inputs-evil/x.py",
        "/mnt/sharedx/y",
        "",
        "   ",
        "ok\x00.py",
        "lone\ud800surrogate.py",  # no file name or argv can carry it
        "x" * 5000,
    ],
)
def test_lexical_refuses_escapes_and_garbage(hostile: str) -> None:
    with pytest.raises(RenderError) as caught:
        check_relative_or_within(hostile, ROOTS)
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "\n" not in caught.value.message


def test_lexical_without_roots_leaves_absolute_paths_to_render_time() -> None:
    assert check_relative_or_within("/anywhere/x.py") == PurePosixPath("/anywhere/x.py")
    with pytest.raises(RenderError):
        check_relative_or_within("../x.py")


def test_error_message_names_the_path() -> None:
    with pytest.raises(RenderError, match=r"\.\./secret\.py"):
        check_relative_or_within("../secret.py", ROOTS)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """root/ (with scenes/a.py), other/ (a second root) and outside/ (not a root)."""
    root, other, outside = tmp_path / "root", tmp_path / "other", tmp_path / "outside"
    for folder in (root / "scenes", other, outside):
        folder.mkdir(parents=True)
    (root / "scenes" / "a.py").write_text("x")
    (other / "b.mp4").write_text("x")
    (outside / "secret.txt").write_text("x")
    return root, other, outside


def read_fd(fd: int) -> str:
    try:
        return os.pread(fd, 1000, 0).decode()
    finally:
        os.close(fd)


def test_open_resolves_relative_to_first_root(tree: tuple[Path, Path, Path]) -> None:
    root, other, _ = tree
    (root / "scenes" / "a.py").write_text("in root")
    (other / "b.mp4").write_text("in other")
    assert read_fd(open_confined("scenes/a.py", [root, other])) == "in root"
    assert read_fd(open_confined("./scenes/../scenes/a.py", [root, other])) == "in root"
    assert read_fd(open_confined(str(other / "b.mp4"), [root, other])) == "in other"


def test_open_missing_input_is_not_found(tree: tuple[Path, Path, Path]) -> None:
    root, _, _ = tree
    for missing in ("scenes/missing.py", "nowhere/a.py", "scenes/a.py/below"):
        with pytest.raises(RenderError) as caught:
            open_confined(missing, [root])
        assert caught.value.kind is ErrorKind.NOT_FOUND
        assert missing in caught.value.message


def test_open_refuses_symlink_escaping_the_root(tree: tuple[Path, Path, Path]) -> None:
    root, _, outside = tree
    os.symlink(outside / "secret.txt", root / "scenes" / "link.py")
    os.symlink(outside, root / "door")
    for sneaky in ("scenes/link.py", "door/secret.txt", str(root / "door" / "secret.txt"), "door/nothing"):
        with pytest.raises(RenderError, match="symlinks are not allowed") as caught:
            open_confined(sneaky, [root])
        assert caught.value.kind is ErrorKind.INVALID_INPUT, sneaky


def test_open_refuses_even_symlinks_that_stay_inside_the_roots(tree: tuple[Path, Path, Path]) -> None:
    """The rule is simple: no symlink below a root, wherever it points."""
    root, other, _ = tree
    os.symlink(other / "b.mp4", root / "b-link.mp4")
    os.symlink(root / "scenes", root / "scenes-link")
    for sneaky in ("b-link.mp4", "scenes-link/a.py"):
        with pytest.raises(RenderError, match="symlinks are not allowed") as caught:
            open_confined(sneaky, [root, other])
        assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_open_accepts_paths_through_a_symlinked_root(tmp_path: Path, tree: tuple[Path, Path, Path]) -> None:
    root, _, _ = tree
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    assert read_fd(open_confined(str(root / "scenes" / "a.py"), [alias])) == "x"
    assert read_fd(open_confined(str(alias / "scenes" / "a.py"), [alias])) == "x"
    assert read_fd(open_confined("scenes/a.py", [alias])) == "x"


def test_open_refuses_dotdot_absolute_and_no_roots(tree: tuple[Path, Path, Path]) -> None:
    root, _, outside = tree
    for hostile in ("../outside/secret.txt", str(outside / "secret.txt"), "scenes/\x00.py"):
        with pytest.raises(RenderError) as caught:
            open_confined(hostile, [root])
        assert caught.value.kind is ErrorKind.INVALID_INPUT
    with pytest.raises(RenderError, match="no input roots"):
        open_confined("scenes/a.py", [])


def test_open_refuses_symlink_loops(tree: tuple[Path, Path, Path]) -> None:
    root, _, _ = tree
    os.symlink(root / "loop-b", root / "loop-a")
    os.symlink(root / "loop-a", root / "loop-b")
    with pytest.raises(RenderError) as caught:
        open_confined("loop-a", [root])
    assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_open_wants_a_regular_file_or_a_directory(tree: tuple[Path, Path, Path]) -> None:
    root, _, _ = tree
    os.mkfifo(root / "pipe.mp4")  # opening it for reading must not hang the render
    for wrong in ("scenes", ".", "pipe.mp4"):
        with pytest.raises(RenderError, match="not a regular file") as caught:
            open_confined(wrong, [root])
        assert caught.value.kind is ErrorKind.INVALID_INPUT
    fd = open_confined("scenes", [root], directory=True)
    try:
        assert sorted(os.listdir(fd)) == ["a.py"]
    finally:
        os.close(fd)
    with pytest.raises(RenderError) as caught:
        open_confined("scenes/a.py", [root], directory=True)
    assert caught.value.kind is ErrorKind.NOT_FOUND  # "not a directory"


def test_a_child_reads_the_opened_file_even_after_a_swap(tree: tuple[Path, Path, Path]) -> None:
    root, _, outside = tree
    fd = open_confined("scenes/a.py", [root])
    try:
        (root / "scenes" / "a.py").unlink()  # swapped after the check for a link to the secret
        os.symlink(outside / "secret.txt", root / "scenes" / "a.py")
        (outside / "secret.txt").write_text("secret")
        done = subprocess.run(["cat", fd_path(fd)], pass_fds=(fd,), capture_output=True, text=True)
        assert done.stdout == "x"
    finally:
        os.close(fd)


def test_snapshot_with_siblings(tree: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, _, outside = tree
    scenes = root / "scenes"
    (scenes / "helpers.py").write_text("H = 1")
    (scenes / "big.py").write_text("#" * 5000)
    (scenes / "notes.txt").write_text("not a module")
    os.symlink(outside / "secret.txt", scenes / "stolen.py")  # never followed
    (scenes / "pkg.py").mkdir()
    dest = tmp_path / "copy"
    dest.mkdir()
    script, folder = open_confined("scenes/a.py", [root]), open_confined("scenes", [root], directory=True)
    try:
        skipped = snapshot_with_siblings(script, folder, "a.py", dest, max_bytes=1000, max_files=10)
    finally:
        os.close(script)
        os.close(folder)
    assert sorted(p.name for p in dest.iterdir()) == ["a.py", "helpers.py"]
    assert (dest / "a.py").read_text() == "x" and (dest / "helpers.py").read_text() == "H = 1"
    assert skipped == ["big.py"]  # over the byte budget; symlinks and folders are not even listed
    with pytest.raises(RenderError, match="larger than 10 bytes"):
        fd = open_confined("scenes/big.py", [root])
        try:
            snapshot(fd, tmp_path / "big.py", max_bytes=10)
        finally:
            os.close(fd)
    assert not (tmp_path / "big.py").exists()


@pytest.mark.parametrize("name", ["out.mp4", "my clip (final).mov", "a;b$(c)`d`|e&.png", "ünïcode.gif"])
def test_plain_name_accepts_literal_names(name: str) -> None:
    assert plain_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "a/b.mp4",
        "../x.mp4",
        "/tmp/x.mp4",
        ".",
        "..",
        "-y",
        "--help",
        "a\x00b",
        "a\nb",
        "x" * 300,
        "\udcff.mp4",
    ],
)
def test_plain_name_refuses_directories_options_and_control_chars(name: str) -> None:
    with pytest.raises(RenderError) as caught:
        plain_name(name)
    assert caught.value.kind is ErrorKind.INVALID_INPUT
