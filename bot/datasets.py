"""Datasets for the bot: uploads checked in a worker process, split and label edits.

All dataset logic is ``pipeline``'s; this only decides where each user's files go
and keeps the store in step, off the event loop so the bot stays responsive.
"""
from __future__ import annotations

import asyncio
import secrets
import shutil
import time
import urllib.request
from concurrent.futures import Executor
from dataclasses import asdict
from pathlib import Path

from pipeline import steps
from pipeline.errors import PipelineError
from pipeline.workspace import Workspace
from storage import Dataset, Store

from .config import Settings


class DatasetError(Exception):
    """Something the user can fix; the message says what."""


def prepare_in_worker(archive: str, out: str) -> dict:
    """Runs in a worker process; errors come back as data because their pickling loses fields."""
    try:
        return {"summary": steps.prepare(Path(archive), Path(out))}
    except PipelineError as error:
        return {"error": error.to_json()}


class DatasetService:
    def __init__(self, store: Store, settings: Settings, executor: Executor):
        self.store, self.settings, self.executor = store, settings, executor

    def user_dir(self, user_id: int) -> Path:
        return self.settings.data_dir / "users" / str(user_id)

    def check_quota(self, user_id: int, incoming_bytes: int) -> None:
        limit = self.settings.max_gb_per_user * 2**30
        used = self.store.user_bytes(user_id)
        if used + incoming_bytes > limit:
            raise DatasetError(f"Your datasets use {used / 2**30:.1f} GB of your {limit / 2**30:.0f} GB; this "
                               "upload does not fit. Ask the bot's owner for more room.")

    async def check(self, user_id: int, archive: Path, name: str) -> Dataset:
        """Register the upload, run the whole dataset pipeline on it, keep the result."""
        workspace = self.user_dir(user_id) / "datasets" / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        dataset = self.store.add_dataset(user_id, name, workspace, archive.stat().st_size)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.executor, prepare_in_worker, str(archive), str(workspace))
        if "error" in result:
            shutil.rmtree(workspace, ignore_errors=True)
            return self.store.fail_dataset(dataset.id, result["error"]["message"])
        self.store.set_current_dataset(user_id, dataset.id)
        return self.store.finish_dataset(dataset.id, result["summary"], _size(workspace))

    def current(self, user_id: int) -> Dataset:
        user = self.store.get_user(user_id)
        if not user.current_dataset_id:
            raise DatasetError("No dataset yet: send me a .zip of your Pascal VOC dataset first.")
        return self.store.dataset(user_id, user.current_dataset_id)

    async def split(self, user_id: int, val_ratio: float, seed: int) -> dict:
        dataset = self.ready(user_id)
        report = await asyncio.to_thread(self._resplit, dataset, val_ratio, seed)
        return report

    def _resplit(self, dataset: Dataset, val_ratio: float, seed: int) -> dict:
        ws = Workspace(dataset.workspace)
        report = steps.split(ws, val_ratio=val_ratio, seed=seed)
        steps.records(ws)
        self._refresh_summary(dataset)
        return report.to_json()

    async def labels(self, user_id: int, rename=(), merge=(), drop=()) -> tuple[list[dict], list[dict]]:
        dataset = self.ready(user_id)
        return await asyncio.to_thread(self._relabel, dataset, rename, merge, drop)

    def _relabel(self, dataset: Dataset, rename, merge, drop) -> tuple[list[dict], list[dict]]:
        ws = Workspace(dataset.workspace)
        plan, problems = steps.labels(ws, rename=rename, merge=merge, drop=drop)
        if rename or merge or drop:
            steps.records(ws)
            self._refresh_summary(dataset)
        return [asdict(item) for item in plan.label_map.items], [asdict(p) for p in problems]

    def _refresh_summary(self, dataset: Dataset) -> None:
        ws = Workspace(dataset.workspace)
        summary = dict(dataset.summary or {})
        split_report = steps.split_report(ws, ws.load_samples())
        summary["splits"] = {name: asdict(stats) for name, stats in split_report.splits.items()}
        summary["warnings"] = list(split_report.warnings)
        self.store.finish_dataset(dataset.id, summary, _size(ws.root))

    def ready(self, user_id: int) -> Dataset:
        dataset = self.current(user_id)
        if not dataset.ready:
            raise DatasetError(f"Dataset {dataset.id} is {dataset.status}; wait for its report or send another zip.")
        return dataset

    async def fetch_url(self, user_id: int, url: str, target: Path) -> Path:
        """Download a dataset from a URL (for sets Telegram cannot carry), within the size limit."""
        if not url.startswith(("http://", "https://")):
            raise DatasetError("Give an http(s) URL of a .zip file: /dataset https://example.com/data.zip")
        limit = int(self.settings.max_gb_per_user * 2**30)
        return await asyncio.to_thread(_download, url, target, limit)


def _download(url: str, target: Path, limit: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, target.open("wb") as out:
            size = 0
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise DatasetError(f"{url} is larger than your {limit / 2**30:.0f} GB quota.")
                out.write(chunk)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise DatasetError(f"Could not download {url}: {exc}. Check the link and try again.") from None
    return target


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
