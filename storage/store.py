"""``open_store``: the connection settings and the ``Store`` every part of detbot shares."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database

from .datasets import UsersAndDatasets
from .edits import DatasetEdits
from .errors import StoreError
from .jobs import JobsAndEvents
from .leases import Leases
from .notices import Notices
from .quotas import Quotas
from .schema import MIGRATIONS, Migration, migrate

BUSY_TIMEOUT = 10.0  # seconds a writer waits for another process's write lock before giving up


class Store(UsersAndDatasets, JobsAndEvents, Notices, DatasetEdits, Quotas, Leases):
    """Everything the bot remembers. Safe to share between threads (see ``storage.connection``)."""


def open_store(
    path: Path | str | None, *, clock: Callable[[], float] = time.time, migrations: list[Migration] = MIGRATIONS
) -> Store:
    """Open (creating if needed) and migrate the store at ``path``; None keeps it in memory.

    ``clock`` and ``migrations`` are for tests: the bot passes only ``path``.
    """
    where = ":memory:" if path is None else str(path)
    conn = _connect(path)
    try:
        db = Database(conn)
        _configure(db, in_memory=path is None)
        migrate(db, where, migrations)
    except sqlite3.Error as error:
        conn.close()
        raise StoreError(
            f"cannot open the database {where}: {error}; check that the path is "
            "writable and that the file is a detbot database"
        ) from error
    except BaseException:
        conn.close()
        raise
    return Store(db, where=where, busy_timeout=BUSY_TIMEOUT, clock=clock)


def _connect(path: Path | str | None) -> sqlite3.Connection:
    target = ":memory:" if path is None else str(path)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        # check_same_thread=False: Store serialises all use of the connection with its own lock.
        return sqlite3.connect(target, timeout=BUSY_TIMEOUT, check_same_thread=False)
    except sqlite3.Error as error:
        raise StoreError(
            f"cannot open the database {target}: {error}; check that its folder exists and is writable"
        ) from error


def _configure(db: Database, *, in_memory: bool) -> None:
    # Readers (the CLI, a status page) never block the bot's writer, nor it them.
    if not in_memory:
        db.enable_wal()
        # A commit then waits for no disk flush, only a WAL checkpoint does: the bot commits on its event
        # loop, and beside a large write one took up to 276 ms (benchmarks/store_commits.py). A crash of
        # the bot loses nothing. A power cut can roll back the commits the kernel had not yet written (the
        # file stays whole), which start-up then finds cut short: a check failed, a job interrupted.
        db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
