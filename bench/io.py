"""Atomic file writes: a crash leaves either the old file or the new one, never a torn one. Files get the
permissions a plain ``open()`` would give them (0666 less the umask), not the temp file's 0600. Checksummed
saves (``last.ckpt``) keep a ``NAME.sha256`` beside the file, in ``sha256sum`` format, checked before use."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.errors import BenchError

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process umask, read from /proc (os.umask can only be read by setting it, which races with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> str:
    """A new temp file ``.NAME.<random>.tmp`` in ``path``'s folder (see :func:`remove_orphan_temps`), mode 0666
    less the umask like a file ``open()`` creates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return tmp


def _write_synced(tmp: str, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def remove_orphan_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files a killed atomic write of ``path`` (or of its checksum) left behind
    (``.NAME.*.tmp`` beside it). Call it only while no other process writes ``path`` (e.g. under a run lock)."""
    path = Path(path)
    gone = sorted(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}")) if path.parent.is_dir() else []
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder + fsync + rename. A failed write
    (full disk, permissions) raises a one-line BenchError and leaves any previous file untouched.
    ``exclusive``: never replace an existing file, even one another process creates concurrently
    (the temp file is hard-linked into place, which fails if the name exists)."""
    path = Path(path)
    tmp = None
    try:
        tmp = _temp_beside(path)
        _write_synced(tmp, data)
        if exclusive:
            os.link(tmp, path)
            Path(tmp).unlink()
        else:
            os.replace(tmp, path)
    except FileExistsError:
        Path(tmp).unlink(missing_ok=True)
        raise BenchError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise BenchError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_many(files: dict[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files all or none: every one goes to a synced temp file first, and only when all are written
    are they renamed into place (a full disk while writing leaves every previous file as it was)."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            temps.append((_temp_beside(Path(path)), Path(path)))
            _write_synced(temps[-1][0], data)
        for tmp, path in temps:
            os.replace(tmp, path)
    except OSError as e:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise BenchError(f"cannot write {e.filename or next(iter(files))}: {e.strerror or e} (nothing written)") from None
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [path for _, path in temps]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, exclusive: bool = False) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), exclusive)


def checksum_path(path: str | os.PathLike) -> Path:
    """Where :func:`atomic_torch_save` keeps the sha256 of a checksummed file: ``NAME.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _listed_digests(path: Path) -> list[str]:
    try:
        return [line.split()[0] for line in checksum_path(path).read_text().splitlines() if line.strip()]
    except (OSError, IndexError):
        return []


def atomic_torch_save(obj: Any, path: str | os.PathLike, checksum: bool = False) -> Path:
    """``torch.save`` through :func:`atomic_write_bytes` (checkpoints, encoders). ``checksum``: keep the sha256 of
    the file in :func:`checksum_path` (``sha256sum -c`` reads it). While the file is replaced the checksum file
    lists the old and the new digest, so a kill at any moment leaves a file that :func:`verify_checksum` accepts."""
    import io

    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    if not checksum:
        return atomic_write_bytes(path, data)
    path, digest = Path(path), hashlib.sha256(data).hexdigest()
    line = f"{digest}  {path.name}\n"
    old = _listed_digests(path)[:1] if path.exists() else []
    atomic_write_bytes(checksum_path(path), (line + "".join(f"{d}  {path.name}\n" for d in old)).encode())
    atomic_write_bytes(path, data)
    atomic_write_bytes(checksum_path(path), line.encode())
    return path


def verify_checksum(path: str | os.PathLike) -> tuple[bool, str, list[str]] | None:
    """Whether a file saved with ``checksum=True`` is what was saved: (matches, its sha256, the digests its
    checksum file lists); None when it has no checksum file (saved before checksums were kept)."""
    path = Path(path)
    if not checksum_path(path).exists():
        return None
    listed, digest = _listed_digests(path), file_sha256(path)
    return digest in listed, digest, listed


def read_torch_data(path: str | os.PathLike, safe_globals: Iterable = ()) -> Any:
    """``torch.load(path, weights_only=True)`` (plus the allow-listed ``safe_globals``): tensors and plain data
    only, no pickled code is run. Any failure is one BenchError line naming the file and why."""
    import torch
    path = Path(path)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated file, pickled code, text, ...: all refused, one line
        text = str(e).strip()
        detail = next((line.strip() for line in text.splitlines() if line.strip().startswith("Unsupported")),
                      text.splitlines()[0][:100] if text else type(e).__name__)
        found = re.search(r"GLOBAL ([\w.]+)", text)  # the class or function weights_only refused to build
        why = ("it holds pickled objects other than tensors and plain data (possibly code"
               + (f": {found.group(1)}" if found else "") + "); nothing of it was run"
               if found or "unsupported global" in text.lower()
               else "the file is empty" if path.is_file() and path.stat().st_size == 0
               else "truncated or corrupt file" if "zip archive" in text or isinstance(e, EOFError)
               else f"not a PyTorch checkpoint: {detail}")
        raise BenchError(f"{path} is not a readable data-only checkpoint ({why})") from None


def import_file(path: Path, prefix: str):
    """Import a Python file as a fresh module named ``<prefix>_<stem>_<hash of its path>`` (registered in
    sys.modules while it runs, removed again if it raises)."""
    import importlib.util
    import sys
    path = Path(path).resolve()
    name = f"{prefix}_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
