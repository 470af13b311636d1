"""Leases on jobs: whoever holds a job's lease is the one submitting it, so it never runs twice at once.

Two bots on one database, or two /resume of the same job, race to submit; the loser sees the lease and
re-reads the job instead. A lease ends when its holder releases it or when it expires, so a holder that
died mid-submission does not block the job for good.
"""

from __future__ import annotations

from .connection import Connection, normalise_id


class Leases(Connection):
    def take_lease(self, job_id: str, holder: str, seconds: float) -> bool:
        """Whether ``holder`` now holds the job's lease for ``seconds``: free, expired or its own already."""
        job_id, now = normalise_id(job_id), self._now()
        with self._write() as db:
            row = self._one("SELECT holder, expires FROM job_leases WHERE job_id = ?", [job_id])
            if row is not None and row["holder"] != holder and row["expires"] > now:
                return False
            db.execute(
                "INSERT INTO job_leases (job_id, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(job_id) DO UPDATE SET holder = excluded.holder, expires = excluded.expires",
                [job_id, holder, now + seconds],
            )
            return True

    def release_lease(self, job_id: str, holder: str) -> None:
        """Ends the lease if ``holder`` still holds it; another holder's (taken after this one expired) stays."""
        with self._write() as db:
            db.execute("DELETE FROM job_leases WHERE job_id = ? AND holder = ?", [normalise_id(job_id), holder])
