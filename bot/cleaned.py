""" "Download cleaned": a checked dataset back as a zip in Pascal VOC, COCO JSON or YOLO.

``clean:ask:DATASET`` offers the formats; ``clean:voc|coco|yolo:DATASET`` writes the zip (the images that
go into the records, the user's class edits and split applied) and sends it. The /datasets list offers
the first with ``offer_button``. Callback data is hostile: the action must be one of those, and the
dataset is looked up with the presser as its owner, as a typed id is.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ChatAction
from telegram.ext import ContextTypes

from pipeline.data.formats.cleaned_zip import export_dataset
from pipeline.data.formats.writers import WRITERS
from pipeline.data.workspace import Workspace
from storage import Dataset

from . import send, texts
from .errors import Refused

BUTTON = "clean"


def offer_button(text: str, dataset_id: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=f"{BUTTON}:ask:{dataset_id}")


async def button(query, context: ContextTypes.DEFAULT_TYPE, rest: str) -> None:
    action, _, dataset_id = rest.partition(":")
    if action != "ask" and action not in WRITERS:
        return
    svc, user_id = context.bot_data["services"], query.from_user.id
    dataset = svc.datasets.store.dataset(user_id, dataset_id)
    if not dataset.ready:
        raise Refused(texts.dataset_waiting(dataset.id, dataset.status))
    if action == "ask":
        choices = [
            InlineKeyboardButton(texts.format_name(f), callback_data=f"{BUTTON}:{f}:{dataset.id}") for f in WRITERS
        ]
        await send.text(query.message, texts.cleaned_choose(dataset.id), InlineKeyboardMarkup([choices]))
        return
    limit_mb = svc.training.settings.upload_limit_mb
    async with send.acting(query.get_bot(), query.message.chat_id, ChatAction.UPLOAD_DOCUMENT):
        written, data = await asyncio.to_thread(_write, dataset, action, limit_mb * 2**20)
    if data is None:
        await send.text(query.message, texts.cleaned_too_big(dataset.id, written["bytes"] / 2**20, limit_mb))
        return
    caption = texts.cleaned_caption(dataset.id, action, written["images"], written["boxes"], list(written["folders"]))
    await send.document(query.message, data, f"{dataset.id}-{action}.zip", caption)


def _write(dataset: Dataset, fmt: str, limit: int) -> tuple[dict, bytes | None]:
    """The zip, written beside the workspace and deleted once read; None when it is over ``limit`` bytes."""
    ws = Workspace(Path(dataset.workspace))
    with tempfile.TemporaryDirectory(prefix=".cleaned-", dir=ws.root) as folder:
        path = Path(folder) / "cleaned.zip"
        written = export_dataset(ws, fmt, path)
        size = path.stat().st_size
        return written | {"bytes": size}, path.read_bytes() if size <= limit else None
