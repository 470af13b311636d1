"""One SQLite connection shared by the bot's threads, behind a lock.

Why one locked connection rather than one per thread: an in-memory database lives
inside its connection, so per-thread connections would each see an empty database;
a ``sqlite3.Connection`` (and sqlite-utils' ``Database`` around it) has a single
transaction state that two threads must not interleave; and detbot writes a few rows
a second at most, so serialising them costs nothing noticeable. Other *processes*
(a second bot, the CLI) are handled by SQLite itself: WAL lets them read while we
write, and the busy timeout makes a writer wait instead of failing at once.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlite_utils import Database

from .errors import NotFound, StoreError


def new_id() -> str:
    """8 characters of lower-case base32 (40 random bits): short enough to type in a chat command."""
    return base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()


def normalise_id(text: str) -> str:
    # Ids come back typed by hand or copied from chat: forgive case and stray spaces.
    return str(text).strip().lower()


def shown(text: Any) -> str:
    """A user-typed id as quoted in an error message, cut short so a message stays a line."""
    text = str(text)
    return text if len(text) <= 24 else text[:21] + "..."


class Connection:
    """The lock, the transactions and the error translation every part of ``Store`` uses."""

    def __init__(self, db: Database, *, where: str, busy_timeout: float, clock: Callable[[], float] = time.time):
        self.db = db
        self.where = where
        self._busy_timeout = busy_timeout
        self._clock = clock
        # Re-entrant so that one public method may call another while holding it.
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _now(self) -> float:
        return float(self._clock())

    @contextmanager
    def _read(self) -> Iterator[Database]:
        with self._lock, self._translated():
            yield self.db

    @contextmanager
    def _write(self) -> Iterator[Database]:
        """One transaction: everything inside commits together or not at all."""
        with self._lock, self._translated():
            conn = self.db.conn
            if conn.in_transaction:  # a nested call joins the caller's transaction
                yield self.db
                return
            # IMMEDIATE takes the write lock up front: a deferred transaction that later
            # upgrades to a writer can fail with "database is locked" despite the busy timeout.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                conn.execute("COMMIT")
            except BaseException:
                self.db.rollback()
                raise

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise StoreError(
                    f"the database {self.where} stayed locked by another process for more than "
                    f"{self._busy_timeout:g} s: run only one detbot on this file, then retry",
                    kind="locked",
                ) from error
            raise StoreError(
                f"the database {self.where} failed: {error}; check that the file is "
                "intact and writable and that the disk is not full"
            ) from error
        except sqlite3.Error as error:
            raise StoreError(
                f"the database {self.where} refused a change: {error}; this is a "
                "detbot bug, please report it with this message",
                kind="bug",
            ) from error

    def _one(self, sql: str, params: list | tuple = ()) -> dict | None:
        return next(self.db.query(sql, params), None)

    def _all(self, sql: str, params: list | tuple = ()) -> list[dict]:
        return list(self.db.query(sql, params))

    def _fresh_id(self, table: str) -> str:
        """An id unused in ``table``; call inside ``_write`` so nobody takes it before the insert."""
        for _ in range(8):
            candidate = new_id()
            if self._one(f"SELECT 1 AS hit FROM {table} WHERE id = ?", [candidate]) is None:
                return candidate
        raise StoreError(
            f"could not find an unused id for {table} after 8 tries; the random "
            "source looks broken, check the machine's entropy"
        )

    def _require_user(self, user_id: int) -> None:
        if self._one("SELECT 1 AS hit FROM users WHERE user_id = ?", [user_id]) is None:
            raise NotFound(
                f"no user {user_id} yet: call ensure_user() on their first message before storing anything of theirs",
                thing="user",
                id=str(user_id),
            )
