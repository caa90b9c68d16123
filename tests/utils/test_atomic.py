"""Atomic writes: the destination is the old file or the complete new one, never a part."""
import json
import os

import pytest

from cxr_det.utils.atomic import atomic_open, atomic_save, atomic_write_json, atomic_write_text


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "out.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    atomic_write_text(path, "replaced")
    assert path.read_text() == "replaced"
    assert sorted(os.listdir(path.parent)) == ["out.json"]  # no temporary file left


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(path, {"not serialisable": object()})
    assert path.read_text() == "old"
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_binary_save_and_mode_check(tmp_path):
    path = tmp_path / "w.bin"
    atomic_save(path, lambda f: f.write(b"\x00\x01"))
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_open(path, "a"):
            pass


def test_permissions_are_those_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        new = tmp_path / "new.txt"
        atomic_write_text(new, "x")
        assert new.stat().st_mode & 0o777 == 0o644
        existing = tmp_path / "existing.txt"
        existing.write_text("old")
        existing.chmod(0o640)
        atomic_write_text(existing, "new")
        assert existing.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
