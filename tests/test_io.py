"""Atomic writes leave either the old file or the complete new one, with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from alkit._io import write_text_atomic


def test_write_text_atomic_replaces_whole_file_with_umask_permissions(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "history.json", "first")
    write_text_atomic(path, "second")
    assert path.read_text() == "second"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0600
    assert [p.name for p in path.parent.iterdir()] == ["history.json"]  # no temporary file left


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_text_atomic(tmp_path / "result.json", "old")

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
