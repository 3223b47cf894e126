"""Atomic file writes: a temp file in the target's folder, fsync, then ``os.replace``.

A reader sees the old file or the new one, never half of either; a crash leaves at most a
``.tmp-*`` file, which the next write of the same name does not depend on.
"""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sweep_orphans(folder: Path) -> list[Path]:
    """Delete the ``.tmp-*`` files a killed writer left below ``folder``; call only while
    holding the home's run lock (no other writer can be mid-write). Returns what was removed."""
    removed = sorted(folder.rglob(".tmp-*")) if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
