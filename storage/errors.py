"""The store's exceptions: a ``kind`` and ``params`` for the user's wording, ``str()`` for the log.

The message (``str(error)``) is for whoever reads the log: it may name the database file and
say what to fix in the set-up. A user never sees it: the bot words each kind in its catalogue
(``bot/texts/``) from ``params``, which hold only what the asking user may know.

Kinds: ``not_found`` (thing, id), ``no_dataset``, ``not_ready`` (thing, id, status),
``not_deletable`` (id, status), ``quota`` (used, limit, wanted), ``in_use`` (dataset_id, jobs),
and for a store that cannot work at all ``locked``, ``broken``, ``bug``, ``newer_schema``.
"""

from __future__ import annotations


class StoreError(Exception):
    """Anything the store cannot do."""

    kind = "broken"

    def __init__(self, message: str, *, kind: str | None = None, **params):
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.params = params


class NotFound(StoreError):
    """No such row, or not one of the asking user's (the two are deliberately indistinguishable)."""

    kind = "not_found"

    def __init__(self, message: str, *, thing: str, id: str):  # noqa: A002 (the row's id, as typed)
        super().__init__(message, thing=thing, id=id)


class QuotaExceeded(StoreError):
    """A reservation does not fit the user's disk quota; the bot words it from the numbers."""

    kind = "quota"

    def __init__(self, used: int, limit: int, wanted: int):
        super().__init__(
            f"disk quota exceeded: {used} bytes used of {limit}, {wanted} more wanted",
            used=used,
            limit=limit,
            wanted=wanted,
        )
        self.used, self.limit, self.wanted = used, limit, wanted


class DatasetInUse(StoreError):
    """A queued, starting or running job trains on the dataset, so its split and classes must not change."""

    kind = "in_use"

    def __init__(self, dataset_id: str, jobs: tuple):
        listed = ", ".join(f"{job.id} ({job.status})" for job in jobs)
        super().__init__(
            f"dataset {dataset_id!r} is in use by job {listed}: it cannot change until that job has ended",
            dataset_id=dataset_id,
            jobs=jobs,
        )
        self.dataset_id, self.jobs = dataset_id, jobs
