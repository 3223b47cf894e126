"""One run at a time per AlphaForge home: an exclusive, non-blocking ``flock`` on
``<lake>/.run.lock``, held by the lake IO manager for the whole run (every asset writes through
it), so a second run started on the same home is refused at once with who holds it, instead of
interleaving writes. The kernel drops the lock when its holder dies, so a killed run never
leaves a stale lock behind."""

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class HomeBusy(RuntimeError):
    """Another run holds the home."""


class RunLock:
    def __init__(self, folder: Path):
        self.path = Path(folder) / ".run.lock"
        self._handle = None
        self.previous = ""  # who held the lock last (a dead holder's line stays in the file)

    def acquire(self, holder: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            who = handle.read().strip() or "another process"
            handle.close()
            raise HomeBusy(
                f"another AlphaForge run is using {self.path.parent.parent} ({who}); wait for "
                "it to finish, or set ALPHAFORGE_HOME to another folder"
            ) from None
        handle.seek(0)
        self.previous = handle.read().strip()
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder}, pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """A blocking exclusive lock for a short critical section, e.g. creating a fresh home's
    Dagster SQLite schema, which two processes must not do at once ("table already exists")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


HOLDER = re.compile(r"Dagster run (?P<run>[0-9a-f-]+), pid (?P<pid>\d+)")


def dead_holder(previous: str) -> str | None:
    """The Dagster run id in a previous holder's line when its process is gone, else None."""
    match = HOLDER.search(previous)
    if match is None:
        return None
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return match["run"]
    except PermissionError:  # alive, another user's
        return None
    return None
