"""What a user holds on disk, counted the way the quota counts it.

Dataset rows carry their size (for a dataset being uploaded or checked: what it has
reserved); job folders and predictions grow outside any row, so they are measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from storage import Store

JOBS_FOLDER = "jobs"  # job folders live inside their dataset's workspace


@dataclass(frozen=True)
class Usage:
    datasets: int  # bytes of dataset rows, reservations of uploads in progress included
    jobs: int
    predictions: int
    limit: int

    @property
    def total(self) -> int:
        return self.datasets + self.jobs + self.predictions

    @property
    def free(self) -> int:
        return max(self.limit - self.total, 0)

    @property
    def outside_datasets(self) -> int:
        return self.jobs + self.predictions


def folder_bytes(path: Path, skip: str | None = None) -> int:
    """Bytes of the files under ``path`` (symlinks not followed); ``skip``: a top-level folder left out."""
    total = 0
    for root, dirs, files in os.walk(path):
        if skip and Path(root) == Path(path) and skip in dirs:
            dirs.remove(skip)
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while we walked
                pass
    return total


def dataset_bytes(workspace: Path) -> int:
    """A workspace without its job folders, which are counted as jobs."""
    return folder_bytes(workspace, skip=JOBS_FOLDER)


def measure(store: Store, user_id: int, user_dir: Path, limit: int) -> Usage:
    """Walks the user's job folders and predictions: call it off the event loop."""
    jobs = sum(folder_bytes(path) for path in store.job_dirs(user_id))
    return Usage(
        datasets=store.user_bytes(user_id), jobs=jobs, predictions=folder_bytes(user_dir / "predict"), limit=limit
    )
