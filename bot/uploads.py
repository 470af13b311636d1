"""Uploads (a Telegram document or a URL) under the disk quota, and deleting what a user holds.

The quota is a reservation, taken before a byte arrives: an upload first reserves its
size (a dataset row in 'checking'), then, before unpacking, what its zip says it unpacks
to; the extraction itself is held to that budget. Once checked, the zip is deleted and
the row counts the workspace as it really is.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pipeline.data.ingest import archive_facts
from pipeline.data.zip_directory import ArchiveFacts
from pipeline.errors import DatasetRejected
from pipeline.fetch import FetchError, FetchTooLarge, MinimumRate, describe, fetch_to_file
from storage import Dataset, DatasetInUse, Job, QuotaExceeded

from . import texts
from .archives import kind_by_bytes, kind_by_name
from .checker import CheckPool
from .errors import Refused, cli_error_text
from .usage import Usage, dataset_bytes, folder_bytes, measure

log = logging.getLogger(__name__)

DOWNLOAD_THREADS = 4  # URL downloads at once, all users together
DOWNLOADS_PER_USER = 2
# A download thread is shared by all users: a server that drips bytes may hold one only briefly.
SLOWEST_DOWNLOAD = MinimumRate(bytes_per_s=64 * 2**10, grace_s=30.0)
STALL_S = 30.0  # seconds without a byte
DELETABLE_JOBS = ("finished", "failed", "stopped")
_MIN_RATE = 2**20  # bytes/s a URL download must average, on top of a minute's grace
# What a checked workspace holds besides files and records: the preview, reports, a per-image index.
_OVERHEAD_BYTES, _OVERHEAD_PER_ENTRY = 2**20, 1024


Save = Callable[[Path], Awaitable[object]]  # writes an upload's bytes to the path it is given


@dataclass(frozen=True)
class Checked:
    dataset: Dataset  # ready, or failed with the reason in ``error``
    preview: bytes | None  # the sample images with their boxes (JPEG), when there is one


class UploadsMixin:
    """DatasetService's uploads and deletions; it needs ``store`` and ``settings``."""

    def _start_uploads(self, checker: CheckPool | None) -> None:
        self.checker = checker or CheckPool()
        # Downloads wait on other people's servers: their own bounded threads, so that /split and
        # /labels (on the default pool) never queue behind them.
        self.downloads = ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS, thread_name_prefix="download")
        self._downloading: Counter[int] = Counter()
        self._closing = threading.Event()  # ends downloads in flight: the interpreter waits for their threads

    def close(self) -> None:
        self._closing.set()
        self.checker.close()
        self.downloads.shutdown(wait=False, cancel_futures=True)

    def limit_bytes(self, user_id: int) -> int:
        return self.store.get_user(user_id).max_bytes or int(self.settings.max_gb_per_user * 2**30)

    async def usage(self, user_id: int) -> Usage:
        limit = self.limit_bytes(user_id)
        return await asyncio.to_thread(measure, self.store, user_id, self.settings.user_dir(user_id), limit)

    def upload_path(self, dataset: Dataset) -> Path:
        # Named as the user named it, so that the check's messages do too; a folder per upload keeps
        # two uploads of the same name apart.
        name = re.sub(r"[^\w.-]", "_", dataset.name)[:100].lstrip(".") or "dataset"
        name = name if name.lower().endswith(".zip") else name + ".zip"
        return self.settings.user_dir(dataset.user_id) / "uploads" / dataset.id / name

    async def upload(self, user_id: int, name: str, size: int | None, save: Save) -> Dataset:
        """A zip sent in the chat, saved by ``save`` into a reservation of its size; refused if it cannot be."""
        if not name.lower().endswith(".zip"):
            kind = kind_by_name(name)
            raise Refused(texts.other_archive_sent(kind) if kind else texts.NOT_A_ZIP)
        limit_mb = self.settings.download_limit_mb
        if (size or 0) > limit_mb * 2**20:
            raise Refused(texts.too_big(size / 2**20, limit_mb, self.settings.local_mode))
        # Reserved before the download: concurrent uploads cannot together pass the quota.
        dataset = await self.reserve(user_id, name, size or limit_mb * 2**20)
        try:
            await save(self.upload_path(dataset))
        except BaseException:
            self.discard(dataset)
            raise
        return dataset

    async def reserve(self, user_id: int, name: str, size_bytes: int, usage: Usage | None = None) -> Dataset:
        """A 'checking' dataset holding ``size_bytes`` of the quota, before a byte is downloaded."""
        usage = usage or await self.usage(user_id)
        folder = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            dataset = self.store.reserve_dataset(
                user_id,
                name[:200],
                self.settings.user_dir(user_id) / "datasets" / folder,
                size_bytes,
                limit_bytes=usage.limit,
                other_bytes=usage.outside_datasets,
            )
        except QuotaExceeded as error:
            raise Refused(texts.quota_full(error.used, error.limit, error.wanted)) from None
        self.upload_path(dataset).parent.mkdir(parents=True, exist_ok=True)
        return dataset

    def discard(self, dataset: Dataset) -> None:
        """Give back the reservation of an upload that never arrived."""
        shutil.rmtree(self.upload_path(dataset).parent, ignore_errors=True)
        self.store.cancel_reservation(dataset.id)

    async def check(self, dataset: Dataset) -> Checked:
        """Check the uploaded zip in the worker; always settles the dataset and deletes the zip."""
        archive = self.upload_path(dataset)
        try:
            dataset = await self._check(dataset, archive)
        except Exception:
            log.exception("checking dataset %s failed", dataset.id)
            dataset = await self._fail(dataset, texts.check_crashed("internal"))
        finally:
            await asyncio.to_thread(shutil.rmtree, archive.parent, True)
        return Checked(dataset, await asyncio.to_thread(_preview, dataset))

    async def _check(self, dataset: Dataset, archive: Path) -> Dataset:
        kind = await asyncio.to_thread(kind_by_bytes, archive)
        if kind:  # named .zip, but another archive inside: name it, as for one named so
            return await self._fail(dataset, texts.other_archive(kind))
        try:
            budget = await self._reserve_extraction(dataset, archive)
        except DatasetRejected as error:
            return await self._fail(dataset, texts.pipeline_error(error.kind, str(error), error.details))
        except QuotaExceeded as error:
            return await self._fail(dataset, texts.quota_full(error.used, error.limit, error.wanted))
        result = await self.checker.run(archive, dataset.workspace, budget)
        if "summary" not in result:
            error = cli_error_text(result["error"]) if "error" in result else texts.check_crashed(result["crash"])
            return await self._fail(dataset, error)
        size = await asyncio.to_thread(dataset_bytes, dataset.workspace)
        self.store.set_current_dataset(dataset.user_id, dataset.id)
        return self.store.finish_dataset(dataset.id, result["summary"], size)

    async def _reserve_extraction(self, dataset: Dataset, archive: Path) -> int:
        """Grow the reservation to what the zip declares it unpacks to; that is the extraction's budget."""
        zip_bytes = archive.stat().st_size
        try:
            facts = await asyncio.to_thread(archive_facts, archive)
        except DatasetRejected as error:
            if error.kind == "too_many_entries":
                raise
            facts = ArchiveFacts(0, 0, 0)  # not a zip, or a damaged one: the worker says so in its words
        # Twice: the files, then the records made from them (and a zip inside the zip is spooled
        # before it is unpacked). Headers may lie; the extraction is stopped at this budget.
        budget = 2 * facts.declared_bytes
        reserved = zip_bytes + budget + _OVERHEAD_BYTES + _OVERHEAD_PER_ENTRY * facts.entries
        usage = await self.usage(dataset.user_id)
        self.store.resize_dataset(dataset.id, reserved, limit_bytes=usage.limit, other_bytes=usage.outside_datasets)
        return budget

    async def _fail(self, dataset: Dataset, message: str) -> Dataset:
        await asyncio.to_thread(shutil.rmtree, dataset.workspace, True)
        self.store.resize_dataset(dataset.id, 0)
        return self.store.fail_dataset(dataset.id, message)

    async def fetch_url(self, user_id: int, url: str, started: Callable[[], Awaitable[object]]) -> Dataset:
        """Download a dataset zip for ``/dataset URL`` into a reservation; Refused if it cannot be.

        ``started`` is awaited once the request is accepted, before the download begins.
        """
        if not url.lower().startswith(("http://", "https://")):
            raise Refused(texts.URL_USAGE)
        if self._downloading[user_id] >= DOWNLOADS_PER_USER:
            raise Refused(texts.downloads_busy(self._downloading[user_id]))
        self._downloading[user_id] += 1
        try:
            await started()
            return await self._fetch(user_id, url)
        finally:
            self._downloading[user_id] -= 1

    async def _fetch(self, user_id: int, url: str) -> Dataset:
        usage = await self.usage(user_id)
        limit = self.settings.download_limit_mb * 2**20
        cap = min(limit, usage.free)
        if cap <= 0:
            raise Refused(texts.quota_full(usage.total, usage.limit))
        dataset = await self.reserve(user_id, _url_name(url), cap, usage)
        fetch = partial(
            fetch_to_file,
            url,
            self.upload_path(dataset),
            policy=self.settings.url_policy,
            max_bytes=cap,
            timeout=60 + cap / _MIN_RATE,
            stall_timeout=STALL_S,
            abort=self._closing,
            min_rate=SLOWEST_DOWNLOAD,
        )
        try:
            size = await asyncio.get_running_loop().run_in_executor(self.downloads, fetch)
        except FetchTooLarge:
            self.discard(dataset)
            raise Refused(texts.url_too_large(cap, by_quota=cap < limit)) from None
        except FetchError as error:
            self.discard(dataset)
            log.info("URL download for user %s refused or failed: %s", user_id, describe(error))
            raise Refused(texts.URL_REFUSED) from None
        except BaseException:
            self.discard(dataset)
            raise
        return self.store.resize_dataset(dataset.id, size)

    def recover_interrupted(self) -> list[Dataset]:
        """At start-up: fail the checks a restart cut short (the caller tells their users)."""
        failed = []
        for dataset in self.store.checking_datasets():
            shutil.rmtree(dataset.workspace, ignore_errors=True)
            self.store.resize_dataset(dataset.id, 0)
            failed.append(self.store.fail_dataset(dataset.id, texts.CHECK_INTERRUPTED))
        # Nothing downloads before start-up ends: whatever is in uploads/ is a leftover.
        for uploads in (self.settings.data_dir / "users").glob("*/uploads"):
            shutil.rmtree(uploads, ignore_errors=True)
        return failed

    # --- /datasets and /jobs: choosing and deleting ---------------------------------------------

    async def overview(self, user_id: int) -> tuple[list[Dataset], str | None, Usage]:
        """The user's datasets (newest first), the current one's id, and their disk use."""
        usage = await self.usage(user_id)
        return self.store.datasets(user_id), self.store.get_user(user_id).current_dataset_id, usage

    async def jobs_overview(self, user_id: int) -> tuple[list[Job], Usage]:
        """The user's jobs (newest first) and their disk use."""
        usage = await self.usage(user_id)
        return self.store.jobs(user_id), usage

    def dataset(self, user_id: int, dataset_id: str) -> Dataset:
        return self.store.dataset(user_id, dataset_id)

    def use_dataset(self, user_id: int, dataset_id: str) -> Dataset:
        dataset = self.store.dataset(user_id, dataset_id)
        if not dataset.ready:
            raise Refused(texts.dataset_not_ready(dataset.id, dataset.status))
        self.store.set_current_dataset(user_id, dataset.id)
        return dataset

    async def delete_dataset(self, user_id: int, dataset_id: str) -> Dataset:
        dataset = self.store.dataset(user_id, dataset_id)
        if dataset.status not in ("ready", "failed"):
            raise Refused(texts.dataset_not_ready(dataset.id, dataset.status))
        try:
            self.store.delete_dataset(user_id, dataset.id)
        except DatasetInUse as error:
            raise Refused(texts.dataset_busy(error.dataset_id, error.jobs)) from None
        await asyncio.to_thread(shutil.rmtree, dataset.workspace, True)
        return dataset

    def deletable_job(self, user_id: int, job_id: str):
        job = self.store.job(user_id, job_id)
        if job.status not in DELETABLE_JOBS:
            raise Refused(texts.job_not_deletable(job.id, job.status))
        return job

    async def job_bytes(self, user_id: int, job_id: str) -> int:
        return await asyncio.to_thread(folder_bytes, self.deletable_job(user_id, job_id).job_dir)

    async def delete_job(self, user_id: int, job_id: str):
        job = self.deletable_job(user_id, job_id)
        self.store.delete_job(user_id, job.id, DELETABLE_JOBS)
        await asyncio.to_thread(shutil.rmtree, job.job_dir, True)
        return job

    async def delete_predictions(self, user_id: int) -> None:
        await asyncio.to_thread(shutil.rmtree, self.settings.user_dir(user_id) / "predict", True)


def _preview(dataset: Dataset) -> bytes | None:
    path = Path(dataset.summary["outputs"]["preview"]) if dataset.ready else None
    return path.read_bytes() if path is not None and path.exists() else None


def _url_name(url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])[:100] or "dataset.zip"
