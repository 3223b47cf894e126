"""Atomic file writes: a temp file in the target's folder, fsync, then ``os.replace``.

A reader sees the old file or the new one, never half of either; a crash leaves at most a
``.tmp-*`` file, which the next write of the same name does not depend on.
"""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], None], mode: int = 0o644) -> Path:
    """Write ``path`` through ``write(handle)``: all of it or none. ``mode``: 0644 for outputs
    meant to be read by others, 0600 for private ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
    return path


def sync_folder(folder: Path) -> None:
    """fsync a folder, so a rename in it survives a power cut (the rename is an entry of the
    folder, not of the file: without this the new name can be lost though the data is on
    disk). No-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_orphans(folder: Path) -> list[Path]:
    """Delete the ``.tmp-*`` files a killed writer left below ``folder``; call only while
    holding the home's run lock (no other writer can be mid-write). Returns what was removed."""
    removed = sorted(folder.rglob(".tmp-*")) if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
