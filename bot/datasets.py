"""Datasets for the bot: uploads checked in a worker process, split and label edits.

All dataset logic is ``pipeline``'s; this only decides where each user's files go
and keeps the store in step, off the event loop so the bot stays responsive.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path

from pipeline.data import steps
from pipeline.data.workspace import Workspace
from storage import Dataset, Store

from .checker import CheckPool
from .config import Settings
from .uploads import DatasetError, UploadsMixin
from .usage import dataset_bytes

__all__ = ["DatasetError", "DatasetService"]


class DatasetService(UploadsMixin):
    def __init__(self, store: Store, settings: Settings, checker: CheckPool | None = None):
        self.store, self.settings = store, settings
        self._start_uploads(checker)

    def user_dir(self, user_id: int) -> Path:
        return self.settings.data_dir / "users" / str(user_id)

    def current(self, user_id: int) -> Dataset:
        user = self.store.get_user(user_id)
        if not user.current_dataset_id:
            raise DatasetError("No dataset yet: send me a .zip of your Pascal VOC dataset first.")
        return self.store.dataset(user_id, user.current_dataset_id)

    async def split(self, user_id: int, val_ratio: float, seed: int) -> dict:
        """A new split, refused while a queued or running job trains on the dataset's records."""
        from storage import DatasetInUse

        from . import texts

        dataset = self.ready(user_id)
        try:  # 'editing' until the records are rewritten: no job can be queued on half of them
            self.store.begin_edit(user_id, dataset.id)
        except DatasetInUse as error:
            raise DatasetError(texts.dataset_in_use(dataset.id, error.jobs, "split")) from None
        try:
            return await asyncio.to_thread(self._resplit, dataset, val_ratio, seed)
        finally:
            self.store.end_edit(dataset.id)

    def _resplit(self, dataset: Dataset, val_ratio: float, seed: int) -> dict:
        ws = Workspace(dataset.workspace)
        report = steps.split(ws, val_ratio=val_ratio, seed=seed)
        steps.records(ws)
        self._refresh_summary(dataset)
        return report.to_json()

    async def labels(self, user_id: int, rename=(), merge=(), drop=()) -> tuple[list[dict], list[dict]]:
        """The label map; an edit is refused, like a split, while a job trains on the dataset."""
        from storage import DatasetInUse

        from . import texts

        dataset, edits = self.ready(user_id), bool(rename or merge or drop)
        try:
            if edits:
                self.store.begin_edit(user_id, dataset.id)
        except DatasetInUse as error:
            raise DatasetError(texts.dataset_in_use(dataset.id, error.jobs, "classes")) from None
        try:
            return await asyncio.to_thread(self._relabel, dataset, rename, merge, drop)
        finally:
            if edits:
                self.store.end_edit(dataset.id)

    def _relabel(self, dataset: Dataset, rename, merge, drop) -> tuple[list[dict], list[dict]]:
        from pipeline.data.label_plan import load_plan

        ws = Workspace(dataset.workspace)
        if not (rename or merge or drop):  # a listing writes nothing, so it is fine on a dataset in use
            return [asdict(item) for item in load_plan(ws, ws.load_samples()).label_map.items], []
        plan, problems = steps.labels(ws, rename=rename, merge=merge, drop=drop)
        steps.records(ws)
        self._refresh_summary(dataset)
        return [asdict(item) for item in plan.label_map.items], [asdict(p) for p in problems]

    def _refresh_summary(self, dataset: Dataset) -> None:
        ws = Workspace(dataset.workspace)
        summary = dict(dataset.summary or {})
        split_report = steps.split_report(ws, ws.load_samples())
        summary["splits"] = {name: asdict(stats) for name, stats in split_report.splits.items()}
        summary["warnings"] = list(split_report.warnings)
        self.store.finish_dataset(dataset.id, summary, dataset_bytes(ws.root))

    async def repair_interrupted_edits(self) -> None:
        """At start-up: a split or class edit a restart cut short may have left some shards old and
        some new; the split and label map were written whole, so the records are written again from them."""
        for dataset in self.store.editing_datasets():
            await asyncio.to_thread(steps.records, Workspace(dataset.workspace))
            await asyncio.to_thread(self._refresh_summary, dataset)

    def ready(self, user_id: int) -> Dataset:
        dataset = self.current(user_id)
        if not dataset.ready:
            raise DatasetError(f"Dataset {dataset.id} is {dataset.status}; wait for its report or send another zip.")
        return dataset
