"""FileRoots: the rule every stage applies when it opens a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowport.plugins.file_roots import FileRoots, PathNotAllowed


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.csv").write_text("x\n")
    key = tmp_path / "home" / "secret.key"
    key.parent.mkdir()
    key.write_text("k")
    return tmp_path, root, key


def test_paths_inside_a_root_resolve_to_their_real_path(layout: tuple[Path, Path, Path]) -> None:
    _, root, key = layout
    roots = FileRoots.confined([root], [key])
    assert roots.check("sub/a.csv", base_dir=root) == (root / "sub" / "a.csv").resolve()
    assert roots.check(root / "sub" / ".." / "sub" / "a.csv") == (root / "sub" / "a.csv").resolve()
    assert roots.check("new/out.parquet", base_dir=root) == (root / "new" / "out.parquet").resolve()


@pytest.mark.parametrize("path", ["../home/secret.key", "/etc/passwd", "sub/../../x", "../data-evil/x"])
def test_paths_that_leave_the_roots_are_refused_with_the_roots_named(
    layout: tuple[Path, Path, Path], path: str
) -> None:
    _, root, key = layout
    roots = FileRoots.confined([root], [key])
    with pytest.raises(PathNotAllowed) as caught:
        roots.check(path, base_dir=root, what="setting 'path'")
    assert caught.value.code in ("PATH_OUTSIDE_ROOTS", "PATH_PROTECTED")
    assert f"setting 'path' '{path}'" in caught.value.message
    if caught.value.code == "PATH_OUTSIDE_ROOTS":
        assert str(root.resolve()) in caught.value.message


def test_a_symlink_inside_a_root_that_points_out_is_refused(layout: tuple[Path, Path, Path]) -> None:
    tmp, root, key = layout
    (tmp / "outside.csv").write_text("x\n")
    os.symlink(tmp / "outside.csv", root / "link.csv")
    os.symlink(tmp, root / "dirlink")
    roots = FileRoots.confined([root], [key])
    for path in ("link.csv", "dirlink/outside.csv"):
        with pytest.raises(PathNotAllowed):
            roots.check(path, base_dir=root)


def test_protected_files_stay_closed_even_unconfined_and_through_a_hard_link(
    layout: tuple[Path, Path, Path],
) -> None:
    _, root, key = layout
    os.link(key, root / "innocent.txt")
    for roots in (FileRoots.unconfined([key]), FileRoots.confined([root, key.parent.parent], [key])):
        for path in (key, root / "innocent.txt"):
            with pytest.raises(PathNotAllowed) as caught:
                roots.check(path)
            assert caught.value.code == "PATH_PROTECTED"


def test_unconfined_roots_allow_any_other_path(layout: tuple[Path, Path, Path]) -> None:
    tmp, _, _ = layout
    assert FileRoots().check("/etc/hostname") == Path("/etc/hostname").resolve()
    assert FileRoots().allowed(tmp / "anything")
