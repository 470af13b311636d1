"""Disk quotas as reservations, and deleting what a user no longer needs.

An upload reserves its bytes (a dataset row in 'checking' whose ``size_bytes`` is the
reservation) in the same transaction that checks the room left, so concurrent uploads
cannot together overshoot the quota; the row's size becomes the real one once checked.
"""

from __future__ import annotations

from pathlib import Path

from .connection import Connection, normalise_id, shown
from .errors import DatasetInUse, NotFound, QuotaExceeded, StoreError
from .rows import Dataset, Job, columns


class Quotas(Connection):
    def reserve_dataset(
        self, user_id: int, name: str, workspace: Path | str, size_bytes: int, *, limit_bytes: int, other_bytes: int = 0
    ) -> Dataset:
        """``add_dataset`` if ``size_bytes`` fits; QuotaExceeded otherwise.

        ``other_bytes``: what the user holds outside dataset rows (job folders, predictions),
        measured on disk by the caller.
        """
        with self._write():
            self._require_room(user_id, int(size_bytes), limit_bytes, other_bytes)
            return self.add_dataset(user_id, name, workspace, size_bytes)

    def resize_dataset(
        self, dataset_id: str, size_bytes: int, *, limit_bytes: int | None = None, other_bytes: int = 0
    ) -> Dataset:
        """Change a dataset's counted size; growing it must fit ``limit_bytes`` when given."""
        with self._write() as db:
            row = self._one("SELECT user_id, size_bytes FROM datasets WHERE id = ?", [normalise_id(dataset_id)])
            if row is None:
                raise NotFound(
                    f"no dataset {shown(dataset_id)!r}: it was never added", thing="dataset", id=shown(dataset_id)
                )
            growth = int(size_bytes) - row["size_bytes"]
            if limit_bytes is not None and growth > 0:
                self._require_room(row["user_id"], growth, limit_bytes, other_bytes)
            db.execute(
                "UPDATE datasets SET size_bytes = ?, updated = ? WHERE id = ?",
                [int(size_bytes), self._now(), normalise_id(dataset_id)],
            )
            return self.dataset(row["user_id"], dataset_id)

    def cancel_reservation(self, dataset_id: str) -> None:
        """Forget a dataset whose upload never arrived (only while it is still 'checking')."""
        with self._write() as db:
            db.execute("DELETE FROM datasets WHERE id = ? AND status = 'checking'", [normalise_id(dataset_id)])

    def _require_room(self, user_id: int, wanted: int, limit_bytes: int, other_bytes: int) -> None:
        used = self.user_bytes(user_id) + int(other_bytes)
        if used + wanted > limit_bytes:
            raise QuotaExceeded(used, int(limit_bytes), wanted)

    def checking_datasets(self) -> list[Dataset]:
        """Every user's datasets still 'checking': after a restart, checks nobody is running any more."""
        with self._read():
            rows = self._all(f"SELECT {columns(Dataset)} FROM datasets WHERE status = 'checking' ORDER BY rowid")
        return [Dataset.from_row(row) for row in rows]

    def delete_dataset(self, user_id: int, dataset_id: str) -> Dataset:
        """Forget one of the user's datasets and its ended jobs; DatasetInUse while a job needs it.

        The caller removes the files (the workspace, job folders inside it).
        """
        with self._write() as db:
            dataset = self.dataset(user_id, dataset_id)
            users = self.jobs_using(dataset.id)
            if users:
                raise DatasetInUse(dataset.id, users)
            if dataset.status not in ("ready", "failed"):
                raise StoreError(
                    f"dataset {dataset.id!r} is {dataset.status}: wait until it is ready",
                    kind="not_ready",
                    thing="dataset",
                    id=dataset.id,
                    status=dataset.status,
                )
            db.execute("DELETE FROM jobs WHERE dataset_id = ?", [dataset.id])  # events, notices cascade
            db.execute("UPDATE users SET current_dataset_id = NULL WHERE current_dataset_id = ?", [dataset.id])
            db.execute("DELETE FROM datasets WHERE id = ?", [dataset.id])
            return dataset

    def delete_job(self, user_id: int, job_id: str, statuses: tuple[str, ...]) -> Job:
        """Forget one of the user's jobs if its status is one of ``statuses``; the caller removes its folder."""
        with self._write() as db:
            job = self.job(user_id, job_id)
            if job.status not in statuses:
                raise StoreError(
                    f"job {job.id!r} is {job.status}: only {', '.join(statuses)} jobs can be deleted",
                    kind="not_deletable",
                    id=job.id,
                    status=job.status,
                )
            db.execute("DELETE FROM jobs WHERE id = ?", [job.id])
            return job

    def job_dirs(self, user_id: int) -> list[Path]:
        """Every job folder of the user, for measuring what they hold on disk."""
        with self._read():
            rows = self._all("SELECT job_dir FROM jobs WHERE user_id = ?", [user_id])
        return [Path(row["job_dir"]) for row in rows]
