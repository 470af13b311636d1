"""Chat commands: read the update, call a service, format the reply. Nothing else lives here."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest
from telegram.ext import ApplicationHandlerStop, ContextTypes

from pipeline.errors import PipelineError
from pipeline.train.catalogue import catalog, get_model, recommend
from storage import StoreError

from . import cleanup, texts
from .datasets import DatasetError, DatasetService
from .training import TrainingError, TrainingService, parse_train_args

log = logging.getLogger(__name__)
USER_ERRORS = (DatasetError, TrainingError, PipelineError, StoreError)


@dataclass(frozen=True)
class Services:
    datasets: DatasetService
    training: TrainingService
    allowed: frozenset[int]
    download_limit_mb: int
    local_mode: bool


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return context.bot_data["services"]


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One gate for messages and buttons: strangers get one line, and nothing of theirs is read."""
    user = update.effective_user
    if user is not None and user.id in services(context).allowed:
        services(context).datasets.store.ensure_user(user.id, user.full_name)
        # Writing to the bot means they unblocked it: the watcher may message them again.
        services(context).datasets.store.resume_notices(user.id)
        return
    if update.callback_query:
        await update.callback_query.answer(texts.STRANGER, show_alert=True)
    elif update.effective_message:
        await update.effective_message.reply_text(texts.STRANGER)
    raise ApplicationHandlerStop


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(texts.HELP)


async def document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, doc, message = services(context), update.effective_message.document, update.effective_message
    if not (doc.file_name or "").lower().endswith(".zip"):
        await message.reply_text("Send the dataset as a .zip file (images + Pascal VOC .xml annotations).")
        return
    size_mb = (doc.file_size or 0) / 2**20
    if size_mb > svc.download_limit_mb:
        await message.reply_text(texts.too_big(size_mb, svc.download_limit_mb, svc.local_mode))
        return
    # Reserved before the download: concurrent uploads cannot together pass the quota.
    reserved = doc.file_size or svc.download_limit_mb * 2**20
    dataset = await svc.datasets.reserve(update.effective_user.id, doc.file_name, reserved)
    try:
        await (await doc.get_file()).download_to_drive(svc.datasets.upload_path(dataset))
    except BaseException:
        svc.datasets.discard(dataset)
        raise
    await _check(update, context, dataset)


async def dataset_url(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not context.args:
        await update.effective_message.reply_text("Usage: /dataset https://example.com/my-dataset.zip")
        return
    svc, url = services(context), context.args[0]
    await update.effective_message.reply_text(texts.DOWNLOADING)
    dataset = await svc.datasets.fetch_url(update.effective_user.id, url)
    await _check(update, context, dataset)


async def _check(update: Update, context: ContextTypes.DEFAULT_TYPE, dataset) -> None:
    message, name = update.effective_message, dataset.name
    await message.reply_text(texts.checking(name))
    await message.chat.send_action(ChatAction.TYPING)
    dataset = await services(context).datasets.check(dataset)
    if dataset.status == "failed":
        await message.reply_text(texts.could_not_use(name, dataset.error))
        return
    await message.reply_text(texts.report(dataset.id, dataset.summary))
    preview = Path(dataset.summary["outputs"]["preview"])
    if preview.exists():
        await message.reply_photo(preview.read_bytes(), caption=texts.PREVIEW_CAPTION)


async def split(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    args = context.args or []
    try:
        ratio = float(args[0]) if args else 0.1
        seed = int(args[1]) if len(args) > 1 else 0
    except ValueError:
        raise DatasetError("Usage: /split [val_ratio] [seed], e.g. /split 0.2 1") from None
    report = await services(context).datasets.split(update.effective_user.id, ratio, seed)
    await update.effective_message.reply_text(texts.split(report["splits"], report["warnings"]))


async def labels(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    args, svc, user_id = context.args or [], services(context), update.effective_user.id
    if args and args[0] == "file":
        dataset = svc.datasets.current(user_id)
        path = dataset.workspace / "data" / "label_map.pbtxt"
        await update.effective_message.reply_document(path.read_bytes(), filename="label_map.pbtxt")
        return
    edits = {"rename": [], "merge": [], "drop": []}
    if args:
        if args[0] not in edits or len(args) < 2:
            raise DatasetError("Usage: /labels, /labels rename a=b, /labels merge a,b=c, /labels drop x, /labels file")
        edits[args[0]].append(" ".join(args[1:]))
    items, problems = await svc.datasets.labels(user_id, **edits)
    await update.effective_message.reply_text(texts.label_map(items, problems))


async def model(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user_id = services(context), update.effective_user.id
    dataset = svc.datasets.current(user_id)
    choice = recommend((dataset.summary or {}).get("labelled_images", 0), svc.training.hardware)
    rows = [
        [
            InlineKeyboardButton(
                texts.model_button(spec.to_json() | {"recommended": spec.name == choice.name}),
                callback_data=f"model:{spec.name}",
            )
        ]
        for spec in catalog()
    ]
    await update.effective_message.reply_text(
        f"Pick a detector. Recommended (*): {choice.name} - {choice.reason}.", reply_markup=InlineKeyboardMarkup(rows)
    )


async def train(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user_id = services(context), update.effective_user.id
    dataset = svc.datasets.ready(user_id)
    user = svc.datasets.store.get_user(user_id)
    name = user.chosen_model or recommend(dataset.summary.get("labelled_images", 0), svc.training.hardware).name
    max_steps = svc.training.settings.max_steps
    request = parse_train_args(context.args or [], name, max_steps)
    card = svc.training.card(dataset, request)
    if card["steps"] > max_steps:  # epochs, or the default length, planned past the ceiling
        raise TrainingError(texts.too_many_steps(card["steps"], max_steps))
    token = secrets.token_hex(4)
    context.user_data[f"train:{token}"] = (dataset.id, request)
    buttons = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Start", callback_data=f"train:start:{token}"),
                InlineKeyboardButton("Cancel", callback_data=f"train:cancel:{token}"),
            ]
        ]
    )
    await update.effective_message.reply_text(texts.train_card(card), reply_markup=buttons)


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user_id = services(context), update.effective_user.id
    job = _job(svc, user_id, context.args)
    await update.effective_message.reply_text(svc.training.status_text(job))


async def stop(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user_id = services(context), update.effective_user.id
    job = _job(svc, user_id, context.args)
    buttons = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Yes, stop it", callback_data=f"stop:{job.id}"),
                InlineKeyboardButton("No", callback_data="noop"),
            ]
        ]
    )
    await update.effective_message.reply_text(
        f"Stop job {job.id}? It saves a checkpoint first; /resume continues later.", reply_markup=buttons
    )


async def resume(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user_id = services(context), update.effective_user.id
    job = _job(svc, user_id, context.args, statuses=("interrupted", "stopped", "failed"))
    job = await svc.training.resume(user_id, job.id)
    await update.effective_message.reply_text(svc.training.status_text(job))


async def jobs(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await cleanup.jobs(update, context)  # the list, disk use, and delete buttons for ended jobs


async def datasets(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await cleanup.datasets(update, context)


async def export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from .monitor import send_archive

    svc, user_id = services(context), update.effective_user.id
    job = _job(svc, user_id, context.args, statuses=("finished",))
    archive = job.archive if job.archive and job.archive.exists() else await svc.training.export(job)
    await send_archive(context.bot, job.chat_id, archive, svc.datasets.settings.upload_limit_mb)


async def predict(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    job = _job(services(context), update.effective_user.id, context.args, statuses=("finished",))
    context.user_data["predict_job"] = job.id
    await update.effective_message.reply_text(f"Send a photo; I will run the model of job {job.id} on it.")


async def photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user_id = services(context), update.effective_user.id
    job = _job(
        svc,
        user_id,
        [context.user_data["predict_job"]] if "predict_job" in context.user_data else [],
        statuses=("finished",),
    )
    archive = job.archive if job.archive and job.archive.exists() else await svc.training.export(job)
    folder = svc.datasets.user_dir(user_id) / "predict"
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / f"{update.effective_message.message_id}.jpg"
    await (await update.effective_message.photo[-1].get_file()).download_to_drive(image)
    detections = await svc.training.predict(archive, image, image.with_suffix(".out.png"), job=job)
    caption = ", ".join(f"{d['label']} {d['score']:.2f}" for d in detections) or "nothing found"
    await update.effective_message.reply_photo(image.with_suffix(".out.png").read_bytes(), caption=caption[:1000])


def _job(svc: Services, user_id: int, args, statuses=None):
    if args:
        return svc.datasets.store.job(user_id, args[0])
    for job in svc.datasets.store.jobs(user_id):
        if statuses is None or job.status in statuses:
            return job
    raise TrainingError(
        "No such job yet: start one with /train."
        if statuses is None
        else f"No {' or '.join(statuses)} job of yours; /jobs lists them."
    )


async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, svc, user_id = update.callback_query, services(context), update.effective_user.id
    kind, _, rest = (query.data or "").partition(":")
    await query.answer()
    if kind == "model":
        get_model(rest)
        svc.datasets.store.set_model(user_id, rest)
        await query.edit_message_text(f"Model: {rest}. Next: /train (or /train 30 for 30 epochs).")
    elif kind == "train":
        await _train_button(query, context, *rest.split(":", 1))
    elif kind == "stop":
        job = svc.training.stop(user_id, rest)
        await query.edit_message_text(f"Stopping job {job.id}: it saves a checkpoint and exits.")
    elif kind == "nan":
        action, _, job_id = rest.partition(":")
        if action == "stop":
            svc.training.stop(user_id, job_id)
        await query.edit_message_reply_markup(None)
        await query.message.reply_text(f"Job {job_id}: " + ("stopping." if action == "stop" else "continuing."))
    elif kind == "noop":
        await query.edit_message_reply_markup(None)
    elif kind == "ds":
        await cleanup.dataset_button(query, context, *rest.split(":", 1))
    elif kind == "jobdel":
        await cleanup.job_files_button(query, context, *rest.split(":", 1))
    elif kind == "preddel":
        await cleanup.predictions_button(query, context, rest)
    elif kind == "keep":
        await query.edit_message_text(texts.CANCELLED_DELETE)


async def _train_button(query, context, action: str, token: str) -> None:
    svc, user_id = services(context), query.from_user.id
    pending = context.user_data.pop(f"train:{token}", None)
    if pending is None:
        await query.edit_message_text("This card has expired; send /train again.")
        return
    if action != "start":
        await query.edit_message_text("Cancelled.")
        return
    dataset = svc.datasets.store.dataset(user_id, pending[0])
    job = svc.training.enqueue(user_id, query.message.chat_id, dataset, pending[1])
    text = svc.training.status_text(job)
    # The card becomes the job's status message before the job can start, so the watcher
    # edits this message instead of racing to send another.
    svc.datasets.store.update_job(job.id, status_message_id=query.message.message_id, last_status_text=text)
    await query.edit_message_text(text)
    for started in await svc.training.start_queued():
        if started.status == "failed":  # its trainer could not even be launched; it holds no slot now
            await _launch_failed(context.bot, svc, started)


async def _launch_failed(bot, svc: Services, job) -> None:
    """In the job's status message (the card), which nothing else edits once the job has failed."""
    text = texts.launch_failed(job.id, job.error)
    try:
        if job.status_message_id:
            await bot.edit_message_text(text, chat_id=job.chat_id, message_id=job.status_message_id)
        else:
            await bot.send_message(job.chat_id, text)
    except BadRequest as error:
        log.info("status message of job %s cannot be edited (%s); sending a new one", job.id, error)
        await bot.send_message(job.chat_id, text)
    svc.training.store.update_job(job.id, last_status_text=text)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    message = getattr(update, "effective_message", None) if isinstance(update, Update) else None
    if isinstance(error, USER_ERRORS):
        if message:
            await message.reply_text(str(error))
        return
    log.error("unhandled error", exc_info=error)
    if message:
        await message.reply_text(texts.APOLOGY)
