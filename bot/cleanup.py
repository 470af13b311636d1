"""/datasets and the clean-up buttons of /datasets and /jobs: choose a dataset, delete what is not needed.

Every deletion asks first (a confirm button); ids carried by buttons are checked against
the owner by the store, as typed ones are.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from . import send, texts
from .uploads import DELETABLE_JOBS

LISTED_WITH_BUTTONS = 8  # newest items that get buttons; a chat keyboard must stay readable


def _svc(context: ContextTypes.DEFAULT_TYPE):
    return context.bot_data["services"]


def _confirm(data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(texts.CONFIRM_DELETE, callback_data=data),
                InlineKeyboardButton(texts.KEEP, callback_data="keep"),
            ]
        ]
    )


def _markup(rows: list[list[InlineKeyboardButton]]) -> InlineKeyboardMarkup | None:
    return InlineKeyboardMarkup(rows) if rows else None


async def datasets(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/datasets: the list with sizes and statuses, a button to make one current, one to delete it."""
    items, current, usage = await _svc(context).datasets.overview(update.effective_user.id)
    rows = []
    for dataset in items[:LISTED_WITH_BUTTONS]:
        row = []
        if dataset.ready and dataset.id != current:
            row.append(InlineKeyboardButton(texts.use_button(dataset.id), callback_data=f"ds:use:{dataset.id}"))
        if dataset.status in ("ready", "failed"):
            row.append(InlineKeyboardButton(texts.delete_button(dataset.id), callback_data=f"ds:ask:{dataset.id}"))
        if row:
            rows.append(row)
    await send.text(update.effective_message, texts.datasets_list(items, current, usage), _markup(rows))


async def jobs(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/jobs: the list, the disk used, and delete buttons for ended jobs and for predictions."""
    items, usage = await _svc(context).datasets.jobs_overview(update.effective_user.id)
    ended = [job for job in items if job.status in DELETABLE_JOBS][:LISTED_WITH_BUTTONS]
    rows = [[InlineKeyboardButton(texts.delete_button(job.id), callback_data=f"jobdel:ask:{job.id}")] for job in ended]
    if usage.predictions:
        rows.append([InlineKeyboardButton(texts.DELETE_PREDICTIONS_BUTTON, callback_data="preddel:ask")])
    await send.text(update.effective_message, texts.jobs_list(items, usage), _markup(rows))


async def dataset_button(query, context, action: str, dataset_id: str) -> None:
    svc, user_id = _svc(context), query.from_user.id
    if action == "use":
        dataset = svc.datasets.use_dataset(user_id, dataset_id)
        await send.text(query.message, texts.dataset_current(dataset.id))
    elif action == "ask":
        dataset = svc.datasets.dataset(user_id, dataset_id)
        await send.text(query.message, texts.confirm_delete_dataset(dataset), _confirm(f"ds:del:{dataset.id}"))
    elif action == "del":
        dataset = await svc.datasets.delete_dataset(user_id, dataset_id)
        await send.edit(query, texts.dataset_deleted(dataset.id))


async def job_files_button(query, context, action: str, job_id: str) -> None:
    svc, user_id = _svc(context), query.from_user.id
    if action == "ask":
        size = await svc.datasets.job_bytes(user_id, job_id)
        await send.text(query.message, texts.confirm_delete_job(job_id, size), _confirm(f"jobdel:del:{job_id}"))
    elif action == "del":
        job = await svc.datasets.delete_job(user_id, job_id)
        await send.edit(query, texts.job_deleted(job.id))


async def predictions_button(query, context, action: str) -> None:
    svc, user_id = _svc(context), query.from_user.id
    if action == "ask":
        usage = await svc.datasets.usage(user_id)
        await send.text(query.message, texts.confirm_delete_predictions(usage.predictions), _confirm("preddel:del"))
    elif action == "del":
        await svc.datasets.delete_predictions(user_id)
        await send.edit(query, texts.PREDICTIONS_DELETED)
