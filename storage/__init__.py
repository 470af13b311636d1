"""The SQLite store (sqlite-utils): users, datasets, jobs and their events. Only SQLite here.

The bot keeps all of its state here, so a restart loses nothing::

    store = open_store("work/detbot.db")
    user = store.ensure_user(telegram_user_id, display_name)
"""

from .errors import DatasetInUse, NotFound, QuotaExceeded, StoreError
from .rows import ACTIVE, DATASET_STATUSES, JOB_STATUSES, PENDING, TERMINAL, Dataset, Job, JobEvent, Notice, User
from .schema import MIGRATIONS
from .store import Store, open_store

__all__ = [
    "open_store",
    "Store",
    "StoreError",
    "NotFound",
    "DatasetInUse",
    "QuotaExceeded",
    "User",
    "Dataset",
    "Job",
    "JobEvent",
    "Notice",
    "MIGRATIONS",
    "DATASET_STATUSES",
    "JOB_STATUSES",
    "ACTIVE",
    "PENDING",
    "TERMINAL",
]
