"""Datasets for the bot: uploads checked in a worker process, split and label edits.

All dataset logic is ``pipeline``'s; this only decides where each user's files go
and keeps the store in step, off the event loop so the bot stays responsive.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass

from pipeline.data import steps
from pipeline.data.label_plan import load_plan
from pipeline.data.workspace import Workspace
from storage import Dataset, DatasetInUse, Job, Store

from . import texts
from .checker import CheckPool
from .config import Settings
from .errors import Refused
from .uploads import UploadsMixin
from .usage import Usage, dataset_bytes

EDITS = ("rename", "merge", "drop")
RATIOS = ("0.1", "0.15", "0.2", "0.3")  # the validation shares /split offers as buttons
PER_PAGE = 8  # entries of /jobs and /datasets per message: each has a row of buttons


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first: ``number`` of ``count`` pages (from 0)."""

    items: list
    number: int
    count: int
    usage: Usage
    first: int  # the position of ``items[0]`` in the whole list, from 0
    total: int  # entries in the whole list


def ready_dataset(store: Store, user_id: int) -> Dataset:
    """The user's current dataset, which must be ready (checked, and not being edited)."""
    dataset = store.current_dataset(user_id)
    if not dataset.ready:
        raise Refused(texts.dataset_waiting(dataset.id, dataset.status))
    return dataset


class DatasetService(UploadsMixin):
    def __init__(self, store: Store, settings: Settings, checker: CheckPool | None = None):
        self.store, self.settings = store, settings
        self._start_uploads(checker)

    async def split(self, user_id: int, words: list[str], dataset_id: str | None = None) -> dict:
        """``/split val_ratio [seed]``: a new split (the pipeline's defaults for what is not given) of the
        current dataset or ``dataset_id``, and that dataset's id; refused while a queued or running job
        trains on the dataset's records."""
        given = _split_words(words)
        dataset = self._ready(user_id, dataset_id)
        try:  # 'editing' until the records are rewritten: no job can be queued on half of them
            self.store.begin_edit(user_id, dataset.id)
        except DatasetInUse as error:
            raise Refused(texts.dataset_in_use(dataset.id, error.jobs, "split")) from None
        try:
            return {"dataset": dataset.id} | await asyncio.to_thread(self._resplit, dataset, given)
        finally:
            self.store.end_edit(dataset.id)

    async def split_at(self, user_id: int, dataset_id: str, ratio: str) -> dict:
        """A /split button: ``dataset_id`` split again at one of ``RATIOS``, with the seed it has."""
        if ratio not in RATIOS:
            raise Refused(texts.SPLIT_USAGE)
        current = await self.current_split(user_id, dataset_id)
        return await self.split(user_id, [ratio, str(current["seed"])], current["dataset"])

    async def current_split(self, user_id: int, dataset_id: str | None = None) -> dict:
        """The split the dataset has: its seed, ratios, whether it came from folders, and per-split counts."""
        dataset = self._ready(user_id, dataset_id)
        ws = Workspace(dataset.workspace)
        stored = await asyncio.to_thread(ws.read_json, ws.split, "split")
        return {
            "dataset": dataset.id,
            "seed": stored["seed"],
            "ratios": stored["ratios"],
            "from_folders": stored.get("from_folders", False),
            "splits": dataset.summary["splits"],
        }

    def _ready(self, user_id: int, dataset_id: str | None) -> Dataset:
        if dataset_id is None:
            return ready_dataset(self.store, user_id)
        dataset = self.store.dataset(user_id, dataset_id)
        if not dataset.ready:
            raise Refused(texts.dataset_waiting(dataset.id, dataset.status))
        return dataset

    def _resplit(self, dataset: Dataset, given: dict) -> dict:
        ws = Workspace(dataset.workspace)
        report = steps.split(ws, **given)
        steps.records(ws)
        self._refresh_summary(dataset)
        return report.to_json()

    async def labels(self, user_id: int, words: list[str]) -> tuple[list[dict], list[dict]]:
        """``/labels [rename a=b | merge a,b=c | drop x]``: the label map, after the edit if there is one;
        an edit is refused, like a split, while a job trains on the dataset."""
        edits = _label_edits(words)
        dataset = ready_dataset(self.store, user_id)
        try:
            if edits:
                self.store.begin_edit(user_id, dataset.id)
        except DatasetInUse as error:
            raise Refused(texts.dataset_in_use(dataset.id, error.jobs, "classes")) from None
        try:
            return await asyncio.to_thread(self._relabel, dataset, edits)
        finally:
            if edits:
                self.store.end_edit(dataset.id)

    def _relabel(self, dataset: Dataset, edits: dict) -> tuple[list[dict], list[dict]]:
        ws = Workspace(dataset.workspace)
        if not edits:  # a listing writes nothing, so it is fine on a dataset in use
            return [asdict(item) for item in load_plan(ws, ws.load_samples()).label_map.items], []
        plan, problems = steps.labels(ws, **edits)
        steps.records(ws)
        self._refresh_summary(dataset)
        return [asdict(item) for item in plan.label_map.items], [asdict(p) for p in problems]

    async def label_map_file(self, user_id: int) -> bytes:
        """The current dataset's label_map.pbtxt."""
        return await asyncio.to_thread(Workspace(ready_dataset(self.store, user_id).workspace).label_map.read_bytes)

    def _refresh_summary(self, dataset: Dataset) -> None:
        """The summary's split and label map as the workspace now has them (the /train card plans from it)."""
        ws = Workspace(dataset.workspace)
        samples = ws.load_samples()
        summary = dict(dataset.summary or {})
        split_report = steps.split_report(ws, samples)
        summary["splits"] = {name: asdict(stats) for name, stats in split_report.splits.items()}
        summary["warnings"] = list(split_report.warnings)
        summary["class_warnings"] = [asdict(warning) for warning in split_report.class_warnings]
        summary["label_map"] = [asdict(item) for item in load_plan(ws, samples).label_map.items]
        self.store.finish_dataset(dataset.id, summary, dataset_bytes(ws.root))

    # --- /datasets and /jobs, a page at a time --------------------------------------------------------

    async def datasets_page(self, user_id: int, number: int) -> tuple[Page, str | None]:
        """A page of the user's datasets, and the current one's id."""
        datasets, current, usage = await self.overview(user_id)
        return _page(len(datasets), number, usage, lambda first: datasets[first : first + PER_PAGE]), current

    async def jobs_page(self, user_id: int, number: int) -> Page:
        """A page of the user's jobs; each item is ``(job, dataset file name, best AP or None)``."""
        usage = await self.usage(user_id)
        return await asyncio.to_thread(self._jobs_page, user_id, number, usage)

    def _jobs_page(self, user_id: int, number: int, usage: Usage) -> Page:
        names = {dataset.id: dataset.name for dataset in self.store.datasets(user_id)}
        total = self.store.job_page(user_id, 0, 0)[1]  # first: the page asked for may be past the end now

        def items(first: int) -> list:
            jobs = self.store.job_page(user_id, first, PER_PAGE)[0]
            return [(job, names.get(job.dataset_id, job.dataset_id), self._best_ap(job)) for job in jobs]

        return _page(total, number, usage, items)

    def _best_ap(self, job: Job) -> float | None:
        finished = self.store.last_event(job.id, "finished") if job.status == "finished" else None
        return finished.payload.get("AP") if finished else None

    async def repair_interrupted_edits(self) -> None:
        """At start-up: a split or class edit a restart cut short may have left some shards old and
        some new; the split and label map were written whole, so the records are written again from them."""
        for dataset in self.store.editing_datasets():
            await asyncio.to_thread(steps.records, Workspace(dataset.workspace))
            await asyncio.to_thread(self._refresh_summary, dataset)


def _page(total: int, number: int, usage: Usage, items) -> Page:
    """Page ``number`` (kept within the pages there are: a list may have shrunk since its buttons were sent)."""
    count = max(math.ceil(total / PER_PAGE), 1)
    number = min(max(number, 0), count - 1)
    return Page(items(number * PER_PAGE), number, count, usage, number * PER_PAGE, total)


def _split_words(words: list[str]) -> dict:
    if len(words) > 2:
        raise Refused(texts.SPLIT_USAGE)
    try:
        given = {"val_ratio": float(words[0])} if words else {}
        return given | ({"seed": int(words[1])} if len(words) > 1 else {})
    except ValueError:
        raise Refused(texts.SPLIT_USAGE) from None


def _label_edits(words: list[str]) -> dict:
    if not words:
        return {}
    if words[0] not in EDITS or len(words) < 2:
        raise Refused(texts.LABELS_USAGE)
    return {words[0]: [" ".join(words[1:])]}
