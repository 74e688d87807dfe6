"""Atomic writes: the permissions of a plain open, content flushed before and after the rename."""

import os
import stat

import pytest

from istn_sk import _atomic
from istn_sk._atomic import atomic_path


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_new_files_get_the_mode_a_plain_open_gives(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / "plain.txt", "w") as stream:
        stream.write("x")
    with atomic_path(tmp_path / "atomic.txt") as temporary:
        temporary.write_text("x")
    assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "plain.txt") == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "plain.txt"]


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "report.csv"
    path.write_text("old")
    path.chmod(0o640)
    with atomic_path(path) as temporary:
        temporary.write_text("new")
    assert path.read_text() == "new" and _mode(path) == 0o640


def test_the_file_is_flushed_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(_atomic, "_fsync", lambda path: events.append(("fsync", path)))
    replace = os.replace
    monkeypatch.setattr(_atomic.os, "replace",
                        lambda source, target: (events.append(("replace", target)),
                                                replace(source, target)))
    path = tmp_path / "model.pt"
    with atomic_path(path) as temporary:
        temporary.write_bytes(b"weights")
    assert events == [("fsync", temporary), ("replace", path), ("fsync", tmp_path)]


def test_a_failed_write_leaves_the_destination_and_no_temporary_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"precious")
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"precious" and list(tmp_path.iterdir()) == [path]
