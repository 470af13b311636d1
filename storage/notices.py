"""Messages already sent about a job (alerts, the final result), so a restart never repeats one."""

from __future__ import annotations

from .connection import Connection, normalise_id, shown
from .errors import NotFound
from .rows import Notice, columns


class Notices(Connection):
    def add_notice(
        self,
        user_id: int,
        chat_id: int,
        kind: str,
        *,
        job_id: str | None = None,
        step: int | None = None,
        message_id: int | None = None,
    ) -> int:
        """Record a sent notice and return its id.

        Idempotent per (job_id, kind, step): recording the same job notice again returns the
        first one's id and changes nothing. Notices without a job are never deduplicated.
        """
        if not kind:
            raise ValueError("a notice needs a kind, e.g. 'nan_alert' or 'finished'")
        job_id = None if job_id is None else normalise_id(job_id)
        with self._write() as db:
            self._require_user(user_id)
            if (
                job_id is not None
                and self._one("SELECT 1 AS hit FROM jobs WHERE id = ? AND user_id = ?", [job_id, user_id]) is None
            ):
                raise NotFound(
                    f"job {job_id!r} is not user {user_id}'s: a notice must be about a job of the user it is sent to",
                    thing="job",
                    id=shown(job_id),
                )
            existing = self._find_notice(job_id, kind, step) if job_id is not None else None
            if existing is not None:
                return existing
            table = db["notices"].insert(
                {
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "job_id": job_id,
                    "kind": kind,
                    "step": step,
                    "message_id": message_id,
                    "created": self._now(),
                }
            )
            return table.last_pk

    def notice_sent(self, job_id: str, kind: str, step: int | None = None) -> bool:
        """Whether this job's notice of this kind (at this step, if any) was already recorded."""
        with self._read():
            return self._find_notice(normalise_id(job_id), kind, step) is not None

    def _find_notice(self, job_id: str, kind: str, step: int | None) -> int | None:
        row = self._one("SELECT id FROM notices WHERE job_id = ? AND kind = ? AND step IS ?", [job_id, kind, step])
        return None if row is None else row["id"]

    def notices(self, user_id: int, *, unacknowledged_only: bool = False) -> list[Notice]:
        """The user's notices, oldest first."""
        sql = f"SELECT {columns(Notice)} FROM notices WHERE user_id = ?"
        if unacknowledged_only:
            sql += " AND acknowledged IS NULL"
        with self._read():
            rows = self._all(sql + " ORDER BY id", [user_id])
        return [Notice.from_row(row) for row in rows]

    def owed(self, kind: str) -> list[Notice]:
        """Every user's unacknowledged job notices of ``kind``, oldest first: work that must still reach its user,
        after a restart too (the end of a job records one, its delivery acknowledges it)."""
        sql = f"SELECT {columns(Notice)} FROM notices WHERE kind = ? AND job_id IS NOT NULL AND acknowledged IS NULL"
        with self._read():
            rows = self._all(sql + " ORDER BY id", [kind])
        return [Notice.from_row(row) for row in rows]

    def acknowledge(self, user_id: int, notice_id: int) -> Notice:
        """The user acknowledged a notice (e.g. pressed its button); the first time counts."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE notices SET acknowledged = COALESCE(acknowledged, ?) WHERE id = ? AND user_id = ?",
                [self._now(), notice_id, user_id],
            )
            if cursor.rowcount == 0:
                raise NotFound(
                    f"no notice {notice_id!r} of yours: it may have been for another chat",
                    thing="notice",
                    id=str(notice_id),
                )
            row = self._one(f"SELECT {columns(Notice)} FROM notices WHERE id = ?", [notice_id])
            return Notice.from_row(row)

    # --- a user who blocked the bot ---------------------------------------------------------

    def pause_notices(self, user_id: int) -> None:
        """Hold every message to the user (they blocked the bot); the first pause's time is kept."""
        with self._write() as db:
            self._require_user(user_id)
            db.execute(
                "UPDATE users SET notices_paused = COALESCE(notices_paused, ?) WHERE user_id = ?",
                [self._now(), user_id],
            )

    def notices_paused(self, user_id: int) -> bool:
        with self._read():
            row = self._one("SELECT notices_paused FROM users WHERE user_id = ?", [user_id])
        return row is not None and row["notices_paused"] is not None

    def resume_notices(self, user_id: int) -> bool:
        """The user wrote to the bot again; True if their messages had been held."""
        # Read first: this runs on every update, and most users were never paused.
        if not self.notices_paused(user_id):
            return False
        with self._write() as db:
            cursor = db.execute(
                "UPDATE users SET notices_paused = NULL WHERE user_id = ? AND notices_paused IS NOT NULL", [user_id]
            )
            return cursor.rowcount > 0
