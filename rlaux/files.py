"""Files that are either whole or absent: written to a temporary name, fsynced, renamed.

A kill at any moment leaves the old file or the new one, never a part of either.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from rlaux.errors import ConfigError


def fsync_file(path: Path) -> None:
    """Flush a file's content to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync, rename, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def cut_csv_after(path: Path, step: int, column: str) -> list[str]:
    """Rewrite the CSV at ``path`` (atomically) keeping its header and the complete rows whose ``column`` is at most
    ``step``: what a run's logs said at a checkpoint, before a resumed run appends anew. A last line without its
    newline (a write cut off) is not a row; a row whose ``column`` cannot be read is kept. Returns the header's
    fields ([] for an empty or missing file, which is then written empty)."""
    lines = path.read_text().split("\n")[:-1] if path.is_file() else []
    header = lines[0].split(",") if lines else []
    col = header.index(column) if column in header else None
    rows = []
    for line in lines[1:]:
        try:
            if col is not None and float(line.split(",")[col]) > step:
                continue
        except (ValueError, IndexError):
            pass
        rows.append(line)
    atomic_write_bytes(path, "".join(f"{line}\n" for line in lines[:1] + rows).encode())
    return header


def atomic_save(model: Any, path: Path) -> Path:
    """``model.save`` to a temporary file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.zip")
    model.save(tmp)
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def check_writable_folder(folder: str | os.PathLike, flag: str) -> None:
    """ConfigError unless ``folder`` is a folder this process can write in, or one it can create.

    Creates nothing: the nearest existing folder above a missing one must be writable. A file in
    the way (``folder`` itself or a parent) or a folder without write permission is named, with ``flag``.
    """
    path = Path(folder)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise ConfigError(f"{flag} {folder}: {where}; give a folder to write the run folders in")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "" if existing == path else f" (it does not exist, and {existing} is where it would be made)"
        raise ConfigError(f"{flag} {folder}: no permission to write in {existing}{what}; give a writable folder")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["atomic_save", "atomic_write_bytes", "check_writable_folder", "fsync_dir", "fsync_file", "sha256_of"]
