"""Lists with buttons instead of ids: /jobs (and /status without an id), /datasets, /split's ratios.

One entry per job or dataset, newest first, a page at a time, each with the buttons its state allows.
Their callback data: ``job:page:N``, ``job:status|stop|export|predict:ID``, ``jobdel:ask|del:ID``,
``ds:page:N``, ``ds:use|ask|del:ID``, ``preddel:ask|del``, ``split:DATASET:RATIO``. None of it is
trusted: actions come from fixed sets, pages are clamped, ratios must be the offered ones, and every
id is looked up by the store with the presser as owner, as a typed id is. Every deletion asks first.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from storage import PENDING, Job

from . import cleaned, guide, send, texts
from .datasets import RATIOS
from .errors import Refused
from .results import export_to
from .uploads import DELETABLE_JOBS

# The callback data of each job button; "delete" is the confirm step that /jobs always had.
JOB_DATA = {
    "status": "job:status:{}",
    "stop": "job:stop:{}",
    "export": "job:export:{}",
    "predict": "job:predict:{}",
    "delete": "jobdel:ask:{}",
}


def _svc(context: ContextTypes.DEFAULT_TYPE):
    return context.bot_data["services"]


def _button(text: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=data)


def _markup(rows: list[list[InlineKeyboardButton]]) -> InlineKeyboardMarkup | None:
    rows = [row for row in rows if row]
    return InlineKeyboardMarkup(rows) if rows else None


def _pages(page, prefix: str) -> list[InlineKeyboardButton]:
    """‹ newer, older ›: the row under a list longer than a page."""
    newer = [_button(texts.NEWER_PAGE, f"{prefix}:{page.number - 1}")] if page.number > 0 else []
    older = [_button(texts.OLDER_PAGE, f"{prefix}:{page.number + 1}")] if page.number < page.count - 1 else []
    return newer + older


def _page_number(text: str) -> int:
    return int(text) if text.isdigit() and len(text) <= 4 else 0


async def _show_page(query, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """A list turned to another page in place; a second tap on the same page changes nothing."""
    try:
        await send.edit(query, text, markup)
    except BadRequest as error:
        if "not modified" not in str(error).lower():
            raise


# --- /jobs ------------------------------------------------------------------------------------------


def job_actions(job: Job) -> list[str]:
    """The buttons a job's state allows, in ``JOB_DATA``'s words."""
    actions = ["status"] + ["stop"] * (job.status in PENDING)
    actions += ["export", "predict"] if job.status == "finished" else []
    return actions + ["delete"] * (job.status in DELETABLE_JOBS)


def _jobs_markup(page) -> InlineKeyboardMarkup | None:
    rows = [
        [_button(texts.list_button(number, action), JOB_DATA[action].format(job.id)) for action in job_actions(job)]
        for number, (job, _, _) in enumerate(page.items, start=page.first + 1)
    ]
    if page.usage.predictions:
        rows.append([_button(texts.DELETE_PREDICTIONS_BUTTON, "preddel:ask")])
    return _markup([*rows, _pages(page, "job:page")])


async def jobs(update: Update, context: ContextTypes.DEFAULT_TYPE, at_least: int = 0) -> bool:
    """/jobs: the first page of the user's jobs, if they have ``at_least`` that many. Whether it was sent."""
    page = await _svc(context).datasets.jobs_page(update.effective_user.id, 0)
    if page.total < at_least:
        return False
    await send.text(update.effective_message, texts.jobs_list(page), _jobs_markup(page))
    return True


async def job_button(query, context: ContextTypes.DEFAULT_TYPE, action: str, value: str) -> None:
    svc, user_id = _svc(context), query.from_user.id
    if action == "page":
        page = await svc.datasets.jobs_page(user_id, _page_number(value))
        await _show_page(query, texts.jobs_list(page), _jobs_markup(page))
    elif not value:  # a job's button names its job; without one, ``pick`` would take the newest
        return
    elif action == "status":
        await send.text(query.message, svc.training.status(user_id, value))
    elif action == "stop":
        await send.text(query.message, *stop_card(svc.training.pick(user_id, value)))
    elif action == "export":
        await export_to(context.bot, query.message.chat_id, svc, _finished(svc, user_id, value))
    elif action == "predict":
        job = _finished(svc, user_id, value)
        context.user_data[guide.PREDICT] = job.id
        await send.text(query.message, texts.predict_prompt(job.id))


def stop_card(job: Job) -> tuple[str, InlineKeyboardMarkup]:
    """Stopping asks first: /stop and the list's Stop button."""
    buttons = [_button(texts.CONFIRM_STOP, f"stop:{job.id}"), _button(texts.KEEP_RUNNING, "noop")]
    return texts.confirm_stop(job.id), InlineKeyboardMarkup([buttons])


def _finished(svc, user_id: int, job_id: str) -> Job:
    job = svc.training.pick(user_id, job_id)
    if job.status != "finished":
        raise Refused(texts.no_model_in(job.id, job.status))
    return job


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


def _confirm(data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[_button(texts.CONFIRM_DELETE, data), _button(texts.KEEP, "keep")]])


# --- /datasets --------------------------------------------------------------------------------------


def _datasets_markup(page, current: str | None) -> InlineKeyboardMarkup | None:
    rows = []
    for number, dataset in enumerate(page.items, start=page.first + 1):
        row = []
        if dataset.ready and dataset.id != current:
            row.append(_button(texts.list_button(number, "use"), f"ds:use:{dataset.id}"))
        if dataset.ready:
            row.append(cleaned.offer_button(texts.list_button(number, "cleaned"), dataset.id))
        if dataset.status in ("ready", "failed"):
            row.append(_button(texts.list_button(number, "delete"), f"ds:ask:{dataset.id}"))
        rows.append(row)
    return _markup([*rows, _pages(page, "ds:page")])


async def datasets(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/datasets: the first page of the user's datasets, with their sizes and statuses."""
    page, current = await _svc(context).datasets.datasets_page(update.effective_user.id, 0)
    await send.text(update.effective_message, texts.datasets_list(page, current), _datasets_markup(page, current))


async def dataset_button(query, context, action: str, value: str) -> None:
    svc, user_id = _svc(context), query.from_user.id
    if action == "page":
        page, current = await svc.datasets.datasets_page(user_id, _page_number(value))
        await _show_page(query, texts.datasets_list(page, current), _datasets_markup(page, current))
    elif action == "use":
        dataset = svc.datasets.use_dataset(user_id, value)
        await send.text(query.message, texts.dataset_current(dataset.id))
    elif action == "ask":
        dataset = svc.datasets.dataset(user_id, value)
        await send.text(query.message, texts.confirm_delete_dataset(dataset), _confirm(f"ds:del:{dataset.id}"))
    elif action == "del":
        dataset = await svc.datasets.delete_dataset(user_id, value)
        await send.edit(query, texts.dataset_deleted(dataset.id))


# --- /split -----------------------------------------------------------------------------------------


async def split_card(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/split without words: the split the current dataset has, and a button per common ratio."""
    split = await _svc(context).datasets.current_split(update.effective_user.id)
    now = None if split["from_folders"] else split["ratios"].get("val")
    buttons = [
        _button(texts.ratio_button(ratio, float(ratio) == now), f"split:{split['dataset']}:{ratio}") for ratio in RATIOS
    ]
    await send.text(update.effective_message, texts.split_now(split), InlineKeyboardMarkup([buttons]))


async def split_button(query, context, dataset_id: str, ratio: str) -> None:
    report = await _svc(context).datasets.split_at(query.from_user.id, dataset_id, ratio)
    await send_split(query.message, report)


async def send_split(target, report: dict) -> None:
    """A new split's report: the chat's share, and the whole of it as a file when that is longer."""
    chat, whole = texts.split(report["dataset"], report["splits"], report["class_warnings"])
    await send.report(target, chat, whole, texts.split_file(report["dataset"]))
