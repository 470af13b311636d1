"""The end of a job in the chat: the results album, AP50 in plain words, and the model archive.

It runs as a task of its own per job (``deliver_owed``, called by every watcher tick), never inside a tick: an
export takes minutes, and every other job's status goes on meanwhile. What is owed is a notice in the store,
recorded when the job finished and acknowledged once the archive is out, so a bot restarted mid-export still
delivers, once: the archive exported before the restart is reused, and the album's own notice keeps it from
being sent twice.

An archive above the upload limit first offers the smaller archives that fit (TFLite only, SavedModel only, cut
from the same checked archive); parts, which only a computer can join, are the last resort.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zipfile
from pathlib import Path

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ChatAction
from telegram.error import Forbidden

from pipeline.export.archive_subsets import KINDS, Contents, contents, subsets, write_subset
from pipeline.train.events import read_events
from pipeline.train.job_folder import JobPaths
from pipeline.train.plots import curves_png, per_class_ap_png

from . import cards, send, texts
from .errors import Refused
from .job_events import RESULTS
from .preferences import notifications

log = logging.getLogger(__name__)

ALBUM = "results_album"  # the notice that the album and the AP50 line went out
RETRY_S = 60.0  # a delivery that failed unexpectedly is tried again after this long
ENVELOPE = 64 * 1024  # headroom for the multipart request around an upload
MB = 2**20
_running: dict[str, asyncio.Task] = {}
_failed_at: dict[str, float] = {}


async def deliver_owed(bot: Bot, svc) -> None:
    """Start the delivery of every finished job's results that has none running (a restart starts them again)."""
    store = svc.training.store
    for notice in await asyncio.to_thread(store.owed, RESULTS):
        running = _running.get(notice.job_id)
        if running and not running.done() and running.get_loop() is asyncio.get_running_loop():
            continue
        if time.monotonic() - _failed_at.get(notice.job_id, -RETRY_S) < RETRY_S:
            continue
        if await asyncio.to_thread(store.notices_paused, notice.user_id):
            continue  # they blocked the bot: it is delivered once they write again
        _running[notice.job_id] = asyncio.create_task(_deliver(bot, svc, notice), name=f"results-{notice.job_id}")


async def _deliver(bot: Bot, svc, notice) -> None:
    store = svc.training.store
    try:
        job = await asyncio.to_thread(store.job_by_id, notice.job_id)
        language = await asyncio.to_thread(svc.users.language, job.user_id)
        with texts.speaking(language), cards.opened_for(job.user_id):  # in a group, its buttons are the owner's
            await _results(bot, svc, job)
        await asyncio.to_thread(store.acknowledge, notice.user_id, notice.id)
    except Forbidden as error:
        await asyncio.to_thread(store.pause_notices, notice.user_id)
        log.warning("user %s blocked the bot (%s): job %s's results wait", notice.user_id, error, notice.job_id)
    except Exception:
        _failed_at[notice.job_id] = time.monotonic()
        log.exception("the results of job %s could not be delivered; tried again in %.0f s", notice.job_id, RETRY_S)


async def _results(bot: Bot, svc, job) -> None:
    target, store = (bot, job.chat_id), svc.training.store
    quiet = (await asyncio.to_thread(notifications, store, svc.training.settings, job.user_id)).quiet
    async with send.acting(bot, job.chat_id, ChatAction.UPLOAD_DOCUMENT):
        try:
            archive = await svc.training.archive(job)
        except Refused as error:  # the export failed: an alert, and nothing more is owed
            await send.text(target, str(error))
            return
        if not await asyncio.to_thread(store.notice_sent, job.id, ALBUM):
            finished = await asyncio.to_thread(store.last_event, job.id, "finished")
            event = finished.payload if finished else {}
            await send.album(target, await asyncio.to_thread(_album, job, event))
            if event.get("AP50") is not None:
                await send.text(target, texts.ap50_explained(event["AP50"]), silent=quiet)
            await asyncio.to_thread(store.add_notice, job.user_id, job.chat_id, ALBUM, job_id=job.id)
        await send_archive(bot, job.chat_id, job, archive, svc.training.settings.upload_limit_mb)


def _album(job, finished: dict) -> list[tuple[bytes, str]]:
    """The results as (PNG or JPEG bytes, caption): curves, confusion matrix, AP per class, detections; what a
    job lacks (no evaluation, an archive exported elsewhere) is left out."""
    paths, photos = JobPaths(job.job_dir), []
    events = read_events(paths.events) if paths.events.exists() else []
    if any(e["event"] in ("progress", "eval") for e in events):
        photos.append((curves_png(events), texts.curves_caption(job.id)))
    confusion = paths.confusion.with_suffix(".png")
    if confusion.exists():
        photos.append((confusion.read_bytes(), texts.confusion_caption(job.id)))
    if finished.get("per_class_AP"):
        photos.append((per_class_ap_png(finished["per_class_AP"]), texts.per_class_caption(job.id)))
    samples = sorted((paths.root / "samples").glob("*.png")) or [p for p in [paths.detections] if p.exists()]
    if samples:
        photos.append((samples[0].read_bytes(), texts.samples_caption(job.id)))
    return photos


# --- the archive ----------------------------------------------------------------------------------------


async def send_archive(bot: Bot, chat_id: int, job, archive: Path, limit_mb: int) -> None:
    """The archive with a caption that lists it; above the upload limit, the smaller ones that fit as buttons."""
    held = await asyncio.to_thread(_contents, archive)
    size, limit = (await asyncio.to_thread(archive.stat)).st_size, limit_mb * MB - ENVELOPE
    if size <= limit:
        data = await asyncio.to_thread(archive.read_bytes)
        await send.document((bot, chat_id), data, archive.name, _caption(job.id, size, held))
        return
    offers = await asyncio.to_thread(subsets, archive, limit) if held else {}
    if not offers:
        await send_parts(bot, chat_id, archive, limit_mb)
        return
    rows = [
        [InlineKeyboardButton(texts.offer_button(kind, o.bytes / MB), callback_data=f"slim:{kind}:{job.id}")]
        for kind, o in offers.items()
    ]
    rows.append([InlineKeyboardButton(texts.parts_button(-(-size // limit)), callback_data=f"slim:parts:{job.id}")])
    listed = [(kind, o.bytes / MB, list(o.artefacts)) for kind, o in offers.items()]
    await send.text((bot, chat_id), texts.too_big_offer(size / MB, limit_mb, listed), InlineKeyboardMarkup(rows))


async def export_to(bot: Bot, chat_id: int, svc, job) -> None:
    """/export and the Export button: acknowledged at once, then the archive (exported first if it must be),
    with the upload shown in the chat all the while."""
    await send.text((bot, chat_id), texts.exporting(job.id))
    async with send.acting(bot, chat_id, ChatAction.UPLOAD_DOCUMENT):
        archive = await svc.training.archive(job)
        await send_archive(bot, chat_id, job, archive, svc.training.settings.upload_limit_mb)


async def offer_pressed(query, svc, user_id: int, data: str) -> None:
    """A button of the too-big offer (``KIND:JOB``): that smaller archive, or the parts."""
    kind, _, job_id = data.partition(":")
    if kind not in (*KINDS, "parts"):
        return
    job = await asyncio.to_thread(svc.training.store.job, user_id, job_id)  # the owner's, or NotFound
    archive, limit_mb = job.archive, svc.training.settings.upload_limit_mb
    if archive is None or not await asyncio.to_thread(archive.exists):
        await send.edit(query, texts.OFFER_EXPIRED)
        return
    await query.edit_message_reply_markup(None)
    chat_id = query.message.chat_id
    async with send.acting(query.get_bot(), chat_id, ChatAction.UPLOAD_DOCUMENT):
        if kind == "parts":
            await send_parts(query.get_bot(), chat_id, archive, limit_mb)
            return
        out = archive.with_name(f"{archive.stem}-{kind}.zip")
        subset = await asyncio.to_thread(write_subset, archive, kind, limit_mb * MB - ENVELOPE, out)
        held = await asyncio.to_thread(_contents, archive)
        data = await asyncio.to_thread(out.read_bytes)
        kept = Contents(tuple(a for a in held.artefacts if a.name in subset.artefacts), subset.entries, None)
        await send.document((query.get_bot(), chat_id), data, out.name, _caption(job.id, len(data), kept))


async def send_parts(bot: Bot, chat_id: int, archive: Path, limit_mb: int) -> None:
    """The archive's bytes in numbered parts under the limit (``NAME.001``, ...), and how to join them."""
    data = await asyncio.to_thread(archive.read_bytes)
    part_size = limit_mb * MB - ENVELOPE
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    for number, part in enumerate(parts, start=1):
        await send.document((bot, chat_id), part, f"{archive.name}.{number:03d}", silent=number > 1)
    await send.text((bot, chat_id), texts.parts_join(archive.name, len(data) / MB, limit_mb, len(parts)), silent=True)


def _contents(archive: Path) -> Contents | None:
    """What the archive holds; None for one without detbot's metrics.json (its caption stays general)."""
    try:
        return contents(archive)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None


def _caption(job_id: str, size: int, kept: Contents | None) -> str:
    if kept is None:
        return texts.ARCHIVE_CAPTION
    models = [(a.name, a.file, a.bytes / MB) for a in kept.artefacts if a.name != "checkpoint"]
    return texts.archive_caption(job_id, size / MB, models, kept.checkpoint_step)
