"""The store's exceptions. Handlers catch ``StoreError`` and may show ``str(error)`` to the user."""

from __future__ import annotations


class StoreError(Exception):
    """Anything the store cannot do; the message says what is wrong and what to do."""


class NotFound(StoreError):
    """No such row, or not one of the asking user's (the two are deliberately indistinguishable)."""


class QuotaExceeded(StoreError):
    """A reservation does not fit the user's disk quota; the bot words it from the numbers."""

    def __init__(self, used: int, limit: int, wanted: int):
        super().__init__(f"disk quota exceeded: {used} bytes used of {limit}, {wanted} more wanted")
        self.used, self.limit, self.wanted = used, limit, wanted


class DatasetInUse(StoreError):
    """A queued, starting or running job trains on the dataset, so its split and classes must not change."""

    def __init__(self, dataset_id: str, jobs: tuple):
        self.dataset_id, self.jobs = dataset_id, jobs
        listed = ", ".join(f"{job.id} ({job.status})" for job in jobs)
        super().__init__(f"dataset {dataset_id!r} is in use by job {listed}: it cannot change until that job has ended")
