"""Edits of a ready dataset (a new split, renamed classes): never under a job that trains on it."""

from __future__ import annotations

from .connection import Connection, normalise_id, shown
from .errors import DatasetInUse, StoreError
from .rows import PENDING, Dataset, Job, columns


class DatasetEdits(Connection):
    def begin_edit(self, user_id: int, dataset_id: str) -> Dataset:
        """Mark the user's ready dataset 'editing'; DatasetInUse if a pending job uses it.

        The check and the mark are one transaction, and ``add_job`` refuses a dataset that is
        not ready, so no job can be queued on records being rewritten, nor records rewritten
        under a queued, starting or running job. ``end_edit`` (or ``finish_dataset``) ends it.
        """
        with self._write() as db:
            dataset = self.dataset(user_id, dataset_id)
            if not dataset.ready:
                raise StoreError(
                    f"dataset {shown(dataset_id)!r} is {dataset.status}, not ready: wait for "
                    "it to be ready before changing it",
                    kind="not_ready",
                    thing="dataset",
                    id=dataset.id,
                    status=dataset.status,
                )
            users = self.jobs_using(dataset.id)
            if users:
                raise DatasetInUse(dataset.id, users)
            db.execute("UPDATE datasets SET status = 'editing', updated = ? WHERE id = ?", [self._now(), dataset.id])
            return self.dataset(user_id, dataset.id)

    def end_edit(self, dataset_id: str) -> None:
        """Ready again; a no-op when ``finish_dataset`` has already settled it."""
        with self._write() as db:
            db.execute(
                "UPDATE datasets SET status = 'ready', updated = ? WHERE id = ? AND status = 'editing'",
                [self._now(), normalise_id(dataset_id)],
            )

    def editing_datasets(self) -> list[Dataset]:
        """Datasets an edit was changing when the bot stopped (at start-up: none is being edited)."""
        with self._read():
            rows = self._all(f"SELECT {columns(Dataset)} FROM datasets WHERE status = 'editing' ORDER BY rowid")
        return [Dataset.from_row(row) for row in rows]

    def jobs_using(self, dataset_id: str) -> tuple[Job, ...]:
        """The queued, starting and running jobs that train on the dataset, first come first."""
        with self._read():
            rows = self._all(
                f"SELECT {columns(Job)} FROM jobs WHERE dataset_id = ? AND status IN "
                f"({', '.join('?' for _ in PENDING)}) ORDER BY rowid",
                [normalise_id(dataset_id), *PENDING],
            )
        return tuple(Job.from_row(row) for row in rows)
