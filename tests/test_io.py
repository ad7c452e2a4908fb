"""Atomic writes: a failed write (e.g. a full disk) names the file and keeps the old content."""

import errno
import os
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.io import (atomic_torch_save, atomic_write_json, atomic_write_many, atomic_write_text, checksum_path,
                      file_sha256, read_torch_data, remove_orphan_temps, verify_checksum)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert target.read_text().strip().endswith("}") and '"x": 2' in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_full_disk_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    atomic_write_text(target, "old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(BenchError, match="cannot write .*record.json: No space left on device"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_open(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.md", "x")
        atomic_write_json(tmp_path / "r.json", {}, exclusive=True)  # records
        atomic_write_many({tmp_path / "b.csv": b"y"})  # leaderboards
        atomic_torch_save({}, tmp_path / "c.ckpt", checksum=True)
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "plain").st_mode & 0o777) == mode
    for name in ("a.md", "r.json", "b.csv", "c.ckpt", "c.ckpt.sha256"):
        assert (os.stat(tmp_path / name).st_mode & 0o777) == mode, name


def test_write_many_is_all_or_none(tmp_path, monkeypatch):
    a, b, c = (tmp_path / "lb" / f"leaderboard.{x}" for x in ("md", "csv", "html"))
    atomic_write_many({a: b"old md", b: b"old csv"})
    real = os.fsync
    calls = []

    def third_fails(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, "fsync", third_fails)
    with pytest.raises(BenchError, match="No space left on device .nothing written."):
        atomic_write_many({a: b"new md", b: b"new csv", c: b"new html"})
    assert a.read_bytes() == b"old md" and b.read_bytes() == b"old csv" and not c.exists()
    assert sorted(p.name for p in (tmp_path / "lb").iterdir()) == ["leaderboard.csv", "leaderboard.md"]  # no temps


def test_checksummed_save_verifies_and_tolerates_a_kill_between_its_renames(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    assert verify_checksum(path.with_name("none.ckpt")) is None  # no checksum file: saved before checksums
    atomic_torch_save({"w": torch.zeros(3)}, path, checksum=True)
    assert checksum_path(path).read_text() == f"{file_sha256(path)}  last.ckpt\n"  # what `sha256sum -c` reads
    assert verify_checksum(path)[0]
    first = path.read_bytes()
    # a kill after the checksum file listed both digests but before the checkpoint was replaced
    real, renamed = os.replace, []

    def killed_at_the_checkpoint(src, dst):
        if Path(dst) == path:
            raise KeyboardInterrupt
        renamed.append(dst)
        return real(src, dst)
    monkeypatch.setattr(os, "replace", killed_at_the_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"w": torch.ones(3)}, path, checksum=True)
    monkeypatch.setattr(os, "replace", real)
    assert path.read_bytes() == first and len(checksum_path(path).read_text().splitlines()) == 2
    assert verify_checksum(path)[0]  # the old checkpoint is still accepted
    flipped = bytearray(first)
    flipped[-200] ^= 0xFF
    path.write_bytes(bytes(flipped))
    ok, digest, listed = verify_checksum(path)
    assert not ok and digest not in listed


def test_orphan_temps_of_a_killed_save_are_removed(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    keep = [path, path.parent / ".other.ckpt.abc.tmp", path.parent / "last.ckpt.sha256"]
    orphans = [path.parent / ".last.ckpt.x1y2.tmp", path.parent / ".last.ckpt.sha256.z3.tmp"]
    for p in keep + orphans:
        p.write_bytes(b"x")
    assert remove_orphan_temps(path) == sorted(orphans)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in orphans)
    assert remove_orphan_temps(tmp_path / "absent" / "last.ckpt") == []


class _Code:
    pass


@pytest.mark.parametrize("content, why", [
    (b"", "the file is empty"),
    (b"PK\x03\x04 cut short", "truncated or corrupt file"),
    (b"plain text", "not a PyTorch checkpoint: Unsupported operand"),
    ("code", "it holds pickled objects other than tensors and plain data"),
])
def test_read_torch_data_refuses_anything_but_data_in_one_line(tmp_path, content, why):
    path = tmp_path / "encoder.pt"
    if content == "code":
        torch.save({"x": _Code()}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(BenchError, match=f"encoder.pt is not a readable data-only checkpoint \\({why}") as info:
        read_torch_data(path)
    assert "\n" not in str(info.value)
    torch.save({"w": torch.ones(2)}, path)
    assert torch.equal(read_torch_data(path)["w"], torch.ones(2))
