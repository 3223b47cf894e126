"""One run at a time per AlphaForge lake.

local: an exclusive, non-blocking ``flock`` on ``<lake>/.run.lock``, held by the lake IO
manager for the whole run (every asset writes through it), so a second run started on the same
home is refused at once with who holds it, instead of interleaving writes. The kernel drops the
lock when its holder dies, so a killed run never leaves a stale lock behind.

prod: steps are processes of their own (on other machines, with Kubernetes), and a ``flock`` on
a shared volume is not to be trusted: the run's orchestrating process holds a PostgreSQL
advisory lock (:class:`PgRunLock`) for the whole run, the way PostgreSQL's own tools serialise
work across machines. Every prod run takes it (the prod executor does, whoever launched the
run: the daemon's queue, the UI or ``alphaforge run``), and PostgreSQL drops it when the
holder's session ends, so a killed run leaves nothing behind either.

Both write the holder's line into ``<lake>/.run.lock``; the next holder reads it to mark a
killed run FAILURE in Dagster. A CLI's probe (taken only to refuse at once) keeps the line of
the run before it, so a rerun from the CLI still finds the killed run.
"""

import fcntl
import hashlib
import os
import re
import socket
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
        """Take the lock as ``holder`` or raise :class:`HomeBusy`. A holder that is not a
        Dagster run (the CLI's probe) keeps the previous holders' run lines after its own, for
        the run that takes the lock next."""
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
        handle.write(holder_line(holder, self.previous))
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


def holder_line(holder: str, previous: str = "") -> str:
    """What ``.run.lock`` says while ``holder`` holds it: its line, then, when the holder is
    not a Dagster run (a probe), the run lines of ``previous`` it must not hide."""
    line = f"{holder}, pid {os.getpid()}, host {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    if HOLDER.search(line):  # a run: it has dealt with the previous holders
        return line
    kept = [m.group(0) for m in HOLDER.finditer(previous)]
    return "\n".join([line, *dict.fromkeys(kept)])


def dead_holders(previous: str, same_host: bool = True) -> list[str]:
    """The Dagster run ids in the previous holders' lines whose process is gone. With
    ``same_host`` false (the lock was taken on another machine's behalf: prod), a previous
    holder cannot be alive once its lock is ours, so every run named is returned."""
    dead = []
    for match in HOLDER.finditer(previous):
        if not same_host:
            dead.append(match["run"])
            continue
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            dead.append(match["run"])
        except PermissionError:  # alive, another user's
            pass
    return list(dict.fromkeys(dead))


def dead_holder(previous: str) -> str | None:
    """The first of :func:`dead_holders`, or None."""
    return next(iter(dead_holders(previous)), None)


# The first key of every AlphaForge advisory lock ("ALPH"); the second is the lake's.
PG_LOCK_CLASS = 0x414C5048


class PgRunLock:
    """The prod run lock: ``pg_try_advisory_lock(ALPH, hash(lake))`` on a session of its own,
    held until :meth:`release` or until the session ends (the process dies, the pod is lost).
    The session's ``application_name`` names the holder, so a refused run says who holds it."""

    def __init__(self, params: dict[str, str], lake: Path):
        self.params, self.lake = dict(params), Path(lake)
        digest = hashlib.sha256(f"alphaforge lake {self.lake}".encode()).digest()
        self.key = int.from_bytes(digest[:4], "big", signed=True)
        self.file = self.lake / ".run.lock"
        self.previous = ""
        self._conn = None

    def acquire(self, holder: str) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(**self.params, application_name=f"alphaforge {holder}"[:63])
        except psycopg2.Error as err:  # libpq's message names host and port, never the password
            where = f"{self.params.get('host')}:{self.params.get('port')}"
            raise RuntimeError(
                f"cannot take the lake's run lock: PostgreSQL at {where} ({str(err).strip()})"
            ) from None
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select pg_try_advisory_lock(%s, %s)", (PG_LOCK_CLASS, self.key))
            (taken,) = cur.fetchone()
            if not taken:
                cur.execute(
                    "select a.application_name, a.client_addr, a.backend_start from pg_locks l "
                    "join pg_stat_activity a using (pid) where l.locktype = 'advisory' "
                    "and l.classid = %s and l.objid = %s and l.granted",
                    (PG_LOCK_CLASS, self.key % 2**32),
                )
                row = cur.fetchone()
                conn.close()
                who = f"{row[0]}, since {row[2]:%Y-%m-%d %H:%M:%S}" if row else "another run"
                raise HomeBusy(
                    f"another AlphaForge run holds the lake {self.lake} ({who}); wait for it "
                    "to finish"
                )
        self._conn = conn
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.previous = self.file.read_text().strip() if self.file.exists() else ""
        self.file.write_text(holder_line(holder, self.previous))

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the session's advisory locks go with it
            self._conn = None
