"""Path confinement: lexical checks (pure) and symlink-aware checks on a real tmp tree."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from farm.models import ErrorKind
from renderers.base import RenderError
from renderers.paths import check_relative_or_within, confine, plain_name

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


def test_confine_resolves_relative_to_first_root(tree: tuple[Path, Path, Path]) -> None:
    root, other, _ = tree
    assert confine("scenes/a.py", [root, other]) == (root / "scenes" / "a.py").resolve()
    assert confine(str(other / "b.mp4"), [root, other]) == (other / "b.mp4").resolve()


def test_confine_missing_input_is_not_found(tree: tuple[Path, Path, Path]) -> None:
    root, _, _ = tree
    with pytest.raises(RenderError) as caught:
        confine("scenes/missing.py", [root])
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert "scenes/missing.py" in caught.value.message
    assert confine("scenes/missing.py", [root], must_exist=False) == (root / "scenes/missing.py").resolve()


def test_confine_refuses_symlink_escaping_the_root(tree: tuple[Path, Path, Path]) -> None:
    root, _, outside = tree
    os.symlink(outside / "secret.txt", root / "scenes" / "link.py")
    os.symlink(outside, root / "door")
    for sneaky in ("scenes/link.py", "door/secret.txt", str(root / "door" / "secret.txt")):
        with pytest.raises(RenderError) as caught:
            confine(sneaky, [root])
        assert caught.value.kind is ErrorKind.INVALID_INPUT, sneaky


def test_confine_checks_escape_before_existence(tree: tuple[Path, Path, Path]) -> None:
    root, _, outside = tree
    os.symlink(outside, root / "door")
    with pytest.raises(RenderError) as caught:
        confine("door/does-not-exist", [root])
    assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_confine_allows_symlink_into_another_root(tree: tuple[Path, Path, Path]) -> None:
    root, other, _ = tree
    os.symlink(other / "b.mp4", root / "b-link.mp4")
    assert confine("b-link.mp4", [root, other]) == (other / "b.mp4").resolve()


def test_confine_accepts_paths_through_a_symlinked_root(
    tmp_path: Path, tree: tuple[Path, Path, Path]
) -> None:
    root, _, _ = tree
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    assert confine(str(root / "scenes" / "a.py"), [alias]) == (root / "scenes" / "a.py").resolve()


def test_confine_refuses_dotdot_absolute_and_no_roots(tree: tuple[Path, Path, Path]) -> None:
    root, _, outside = tree
    for hostile in ("../outside/secret.txt", str(outside / "secret.txt"), "scenes/\x00.py"):
        with pytest.raises(RenderError) as caught:
            confine(hostile, [root])
        assert caught.value.kind is ErrorKind.INVALID_INPUT
    with pytest.raises(RenderError, match="no input roots"):
        confine("scenes/a.py", [])


def test_confine_refuses_symlink_loops(tree: tuple[Path, Path, Path]) -> None:
    root, _, _ = tree
    os.symlink(root / "loop-b", root / "loop-a")
    os.symlink(root / "loop-a", root / "loop-b")
    with pytest.raises(RenderError) as caught:
        confine("loop-a", [root])
    assert caught.value.kind in (ErrorKind.INVALID_INPUT, ErrorKind.NOT_FOUND)


@pytest.mark.parametrize("name", ["out.mp4", "my clip (final).mov", "a;b$(c)`d`|e&.png", "ünïcode.gif"])
def test_plain_name_accepts_literal_names(name: str) -> None:
    assert plain_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", " ", "a/b.mp4", "../x.mp4", "/tmp/x.mp4", ".", "..", "-y", "--help", "a\x00b", "a\nb", "x" * 300],
)
def test_plain_name_refuses_directories_options_and_control_chars(name: str) -> None:
    with pytest.raises(RenderError) as caught:
        plain_name(name)
    assert caught.value.kind is ErrorKind.INVALID_INPUT
