"""Chat commands: read the update, call one service method, reply. Nothing else lives here.

The services keep file, subprocess and other slow work off the event loop; so does
``save_file`` for what Telegram sends.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from telegram import File, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest
from telegram.ext import ApplicationHandlerStop, ContextTypes

from pipeline.train.catalogue import catalog

from . import cards, cleaned, fixes, guide, lists, predictor, preferences, results, send, texts
from .datasets import DatasetService
from .monitor import announce_launch_failure
from .training import TrainingService
from .users import Users


@dataclass(frozen=True)
class Services:
    users: Users
    datasets: DatasetService
    training: TrainingService


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return context.bot_data["services"]


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One gate for messages and buttons: strangers get one line, and nothing of theirs is read."""
    user = update.effective_user
    language = user and await services(context).users.admit(user.id, user.full_name, user.language_code)
    if language:
        texts.speak(language)  # every reply to this update, in its task, is in the user's language
        cards.open_for(user.id)  # and every card it sends answers only this user
        return
    texts.speak(texts.language_of(user and user.language_code))
    if update.callback_query:
        await update.callback_query.answer(texts.STRANGER, show_alert=True)
    elif update.effective_message:
        await send.text(update.effective_message, texts.STRANGER)
    raise ApplicationHandlerStop


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await send.text(update.effective_message, texts.HELP)


async def settings(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    training = services(context).training
    user = await asyncio.to_thread(training.store.get_user, update.effective_user.id)
    await send.text(update.effective_message, *preferences.card(user, training.settings))


async def document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, svc = update.effective_message, services(context)
    doc = message.document
    if (doc.mime_type or "").startswith("image/"):  # a photo sent as a file, as phones do to keep its quality
        await photo(update, context)
        return
    dataset = await svc.datasets.upload(update.effective_user.id, doc.file_name or "", doc.file_size, _saver(doc))
    await _check(message, svc, dataset)


async def dataset_url(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, svc = update.effective_message, services(context)
    url = context.args[0] if context.args else ""
    dataset = await svc.datasets.fetch_url(
        update.effective_user.id, url, started=lambda: send.text(message, texts.DOWNLOADING)
    )
    await _check(message, svc, dataset)


async def _check(message, svc: Services, dataset) -> None:
    await send.text(message, texts.checking(dataset.name))
    async with send.acting(message.get_bot(), message.chat_id, ChatAction.TYPING):  # a check takes a while
        checked = await svc.datasets.check(dataset)
    if not checked.dataset.ready:
        await send.text(message, texts.could_not_use(dataset.name, checked.dataset.error))
        return
    chat, whole = texts.report(dataset.id, checked.dataset.summary)
    await send.report(message, chat, whole, texts.report_file(dataset.id), reply_markup=fixes.keyboard(checked.dataset))
    if checked.preview:
        await send.photo(message, checked.preview, texts.PREVIEW_CAPTION)


async def split(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not context.args:  # the split there is, and buttons for common ratios
        await lists.split_card(update, context)
        return
    report = await services(context).datasets.split(update.effective_user.id, context.args)
    await lists.send_split(update.effective_message, report)


async def labels(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user_id, words = services(context), update.effective_user.id, context.args or []
    if words[:1] == ["file"]:
        data = await svc.datasets.label_map_file(user_id)
        await send.document(update.effective_message, data, "label_map.pbtxt")
        return
    items, problems = await svc.datasets.labels(user_id, words)
    await send.text(update.effective_message, texts.label_map(items, problems))


async def model(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    choice = services(context).training.recommendation(update.effective_user.id)
    rows = [
        [
            InlineKeyboardButton(
                texts.model_button(spec.to_json() | {"recommended": spec.name == choice.name}),
                callback_data=f"model:{spec.name}",
            )
        ]
        for spec in catalog()
    ]
    reason = texts.recommendation(choice.kind, choice.params)
    text = texts.model_menu(choice.name, reason, [spec.to_json() for spec in catalog()])
    await send.text(update.effective_message, text, InlineKeyboardMarkup(rows))


async def train(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    draft = services(context).training.draft(update.effective_user.id, context.args or [])
    token = secrets.token_hex(4)
    context.user_data[guide.CARD + token] = draft
    buttons = [
        InlineKeyboardButton(texts.START_BUTTON, callback_data=f"train:start:{token}"),
        InlineKeyboardButton(texts.CANCEL_BUTTON, callback_data=f"train:cancel:{token}"),
    ]
    card = await send.text(update.effective_message, texts.train_card(draft.card), InlineKeyboardMarkup([buttons]))
    context.user_data[guide.CARD_MESSAGE + token] = (card.chat_id, card.message_id)


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not context.args and await lists.jobs(update, context, at_least=2):  # several: pick one with a button
        return
    text = services(context).training.status(update.effective_user.id, _named(context))
    await send.text(update.effective_message, text)


async def stop(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    job = services(context).training.pick(update.effective_user.id, _named(context))
    await send.text(update.effective_message, *lists.stop_card(job))


async def resume(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    training = services(context).training
    job = await training.resume(update.effective_user.id, _named(context))
    await send.text(update.effective_message, training.status_text(job))


async def jobs(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await lists.jobs(update, context)  # one entry per job with its buttons, and the disk use


async def datasets(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await lists.datasets(update, context)


async def export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    job = svc.training.pick(update.effective_user.id, _named(context), ("finished",))
    await results.export_to(context.bot, update.effective_chat.id, svc, job)


async def predict(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    job = guide.model_job(services(context).training.store, update.effective_user.id, _named(context))
    context.user_data[guide.PREDICT] = job.id
    await send.text(update.effective_message, texts.predict_prompt(job.id))


async def photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo, or an image sent as a file, for the model; an album is answered once, for its first photo."""
    album = await context.bot_data["albums"].gather(update.effective_message)
    if album is None:
        return
    message = album[0]
    drawn, shot = await context.bot_data["predictions"].photo(
        update.effective_user.id,
        context.user_data.get(guide.PREDICT),
        str(message.message_id),
        _saver(message.photo[-1] if message.photo else message.document),
    )
    note = [texts.album_note(len(album))] if len(album) > 1 else []
    caption = "\n".join([texts.detections(shot.shown), *note])
    await send.photo(message, drawn, caption, reply_markup=predictor.threshold_buttons(shot))


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    left, cards = guide.cancel(context.user_data)
    for chat_id, message_id in cards:
        try:  # its buttons go; a card deleted or too old to edit has none left to press anyway
            await send.edit(context.bot, texts.CANCELLED, chat_id=chat_id, message_id=message_id)
        except BadRequest:
            pass
    await send.text(update.effective_message, texts.cancelled(left) if left else texts.NOTHING_TO_CANCEL)


async def free_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    step = _step(update, context)
    await send.text(update.effective_message, texts.free_text(step.kind, step.job_id))


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    step, command = _step(update, context), (update.effective_message.text or "").split()[0]
    await send.text(update.effective_message, texts.unknown_command(command, step.kind, step.job_id))


async def media(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Voice, video, stickers and anything else the bot has no use for: what it does take."""
    message = update.effective_message
    kind = next(
        (k for k in ("voice", "audio", "video", "video_note", "animation", "sticker") if getattr(message, k)), ""
    )
    await send.text(message, texts.media_refused(kind))


def _step(update: Update, context: ContextTypes.DEFAULT_TYPE) -> guide.Step:
    store = services(context).training.store
    return guide.next_step(store, update.effective_user.id, context.user_data.get(guide.PREDICT))


def _named(context: ContextTypes.DEFAULT_TYPE) -> str | None:
    """The id a command names (its first word), if any."""
    return context.args[0] if context.args else None


def _saver(attachment):
    """Saves a document or photo the user sent to the path the service gives."""

    async def save(path: Path) -> None:
        await save_file(await attachment.get_file(), path)

    return save


async def save_file(file: File, path: Path) -> None:
    """``file`` at ``path``, with the disk work off the event loop (PTB's ``download_to_drive`` writes on it)."""
    if Path(file.file_path).is_absolute():  # a self-hosted Bot API server (local mode) hands out its own copy
        await asyncio.to_thread(shutil.copyfile, file.file_path, path)
        return
    data = await file.download_as_bytearray()
    await asyncio.to_thread(path.write_bytes, data)


# Buttons whose module answers them whole: callback data "<its BUTTON>:<rest>".
BUTTON_MODULES = {fixes.BUTTON: fixes, cleaned.BUTTON: cleaned}


async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, svc, user_id = update.callback_query, services(context), update.effective_user.id
    owner, data = cards.owner_and_data(query)
    if owner != user_id:  # someone else's card in a group: it stays as it is, for its owner
        await query.answer(texts.not_your_card(cards.owner_name(svc.users.store, owner)), show_alert=True)
        return
    kind, _, rest = data.partition(":")
    await query.answer()
    if kind == "model":
        await send.edit(query, texts.model_chosen(svc.training.choose_model(user_id, rest)))
    elif kind == "train":
        await _train_button(query, context, *rest.split(":", 1))
    elif kind == "stop":
        await send.edit(query, texts.stopping(svc.training.stop(user_id, rest).id))
    elif kind == "nan":
        action, _, job_id = rest.partition(":")
        if action == "stop":
            svc.training.stop(user_id, job_id)
        await query.edit_message_reply_markup(None)
        await send.text(query.message, texts.nan_answer(job_id, action == "stop"))
    elif kind == "noop":
        await query.edit_message_reply_markup(None)
    elif kind == "ds":
        await lists.dataset_button(query, context, *rest.partition(":")[::2])
    elif kind == "job":
        await lists.job_button(query, context, *rest.partition(":")[::2])
    elif kind == "jobdel":
        await lists.job_files_button(query, context, *rest.partition(":")[::2])
    elif kind == "preddel":
        await lists.predictions_button(query, context, rest)
    elif kind == "split":
        await lists.split_button(query, context, *rest.partition(":")[::2])
    elif kind in BUTTON_MODULES:
        await BUTTON_MODULES[kind].button(query, context, rest)
    elif kind == "keep":
        await send.edit(query, texts.CANCELLED_DELETE)
    elif kind == predictor.BUTTON_KIND:
        redrawn = await context.bot_data["predictions"].redraw(user_id, rest)
        if redrawn:  # None: a second tap on a level already shown
            drawn, shot = redrawn
            caption = texts.threshold_caption(shot.shown, shot.threshold)
            await send.edit_photo(query, drawn, caption, predictor.threshold_buttons(shot))
    elif kind == "notify":  # /settings: quiet, loss curves
        user = await asyncio.to_thread(preferences.choose, svc.training.store, user_id, rest)
        await send.edit(query, *preferences.card(user, svc.training.settings))
    elif kind == "slim":  # the smaller archive, or the parts, of one too big to send
        await results.offer_pressed(query, svc, user_id, rest)
    elif kind == "lang":
        await svc.users.set_language(user_id, rest)
        texts.speak(texts.choose(rest, update.effective_user.language_code))
        await send.edit(query, texts.language_chosen(texts.LANGUAGE_NAMES[texts.spoken()]))


async def _train_button(query, context: ContextTypes.DEFAULT_TYPE, action: str, token: str) -> None:
    training = services(context).training
    draft = context.user_data.pop(guide.CARD + token, None)
    context.user_data.pop(guide.CARD_MESSAGE + token, None)
    if draft is None:
        await send.edit(query, texts.CARD_EXPIRED)
        return
    if action != "start":
        await send.edit(query, texts.CANCELLED)
        return
    text, failed = await training.start(query.from_user.id, query.message.chat_id, query.message.message_id, draft)
    await send.edit(query, text)
    for job in failed:  # their trainer could not even be launched; they hold no slot now
        await announce_launch_failure(context.bot, training, job)
