"""The periodic watcher: mirrors every running job and delivers what it has to say.

Runs on the JobQueue, so it also picks running jobs up again after a bot restart:
everything it needs (status message id, events offset, notices) is in the store.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden
from telegram.ext import ContextTypes

from . import cards, results, send, texts
from .job_events import Outgoing

log = logging.getLogger(__name__)


async def watch(context: ContextTypes.DEFAULT_TYPE) -> None:
    """One tick. Each job, and each user's messages, fail alone: a broken events file or a user
    who blocked the bot is logged, and every other job is still watched and the queue still runs."""
    svc = context.bot_data["services"]
    training = svc.training
    for job in training.store.active_jobs():
        # Everything said of a job, worded as it is polled, is in its owner's language.
        with texts.speaking(await asyncio.to_thread(svc.users.language, job.user_id)):
            try:  # it reads the job's files: off the event loop
                outgoing = await asyncio.to_thread(training.poll, job)
            except Exception:
                log.exception("job %s could not be watched this tick; the other jobs go on", job.id)
                continue
            await send_all(context.bot, svc, job.user_id, outgoing)
    # The end of a job (export, album, archive) runs as a task of its own: the next ticks do not wait for it.
    await results.deliver_owed(context.bot, svc)
    try:
        started = await training.start_queued()
    except Exception:
        log.exception("the queue could not be run this tick; it is tried again on the next")
        return
    for job in started:
        with texts.speaking(await asyncio.to_thread(svc.users.language, job.user_id)):
            if job.status == "failed":  # the trainer never ran: say why, not just "failed"
                await send_all(context.bot, svc, job.user_id, [Outgoing("launch_failed", job)])
            else:
                await send_all(context.bot, svc, job.user_id, [Outgoing("status", job, training.status_text(job))])


async def send_all(bot: Bot, svc, user_id: int, items: list[Outgoing]) -> None:
    """One user's messages, in order. A user who blocked the bot is paused, not retried every tick."""
    store = svc.training.store
    if not items or store.notices_paused(user_id):
        return
    try:
        with cards.opened_for(user_id):  # in a group chat, a job's buttons answer only its owner
            for outgoing in items:
                await deliver(bot, svc, outgoing)
    except Forbidden as error:
        store.pause_notices(user_id)
        log.warning(
            "user %s blocked the bot (%s): messages to them wait until they write again; their jobs go on",
            user_id,
            error,
        )
    except Exception:
        log.exception("messages to user %s failed this tick; the other users' go on", user_id)


async def deliver(bot: Bot, svc, outgoing: Outgoing) -> None:
    job, store = outgoing.job, svc.training.store
    if outgoing.kind == "status":
        await _status(bot, svc, outgoing)
    elif outgoing.kind == "photo":
        data = await asyncio.to_thread(outgoing.path.read_bytes)
        await send.photo((bot, job.chat_id), data, outgoing.text, silent=outgoing.silent)
    elif outgoing.kind == "album":
        photos = [(await asyncio.to_thread(path.read_bytes), caption) for path, caption in outgoing.extra["photos"]]
        await send.album((bot, job.chat_id), photos, silent=outgoing.silent)
    elif outgoing.kind == "alert":
        buttons = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(texts.STOP_BUTTON, callback_data=f"nan:stop:{job.id}"),
                    InlineKeyboardButton(texts.CONTINUE_BUTTON, callback_data=f"nan:go:{job.id}"),
                ]
            ]
        )
        await send.text((bot, job.chat_id), outgoing.text, buttons)
    elif outgoing.kind == "launch_failed":
        await announce_launch_failure(bot, svc.training, job)
    elif outgoing.kind == "finished":
        await _status(bot, svc, Outgoing("status", store.job_by_id(job.id), svc.training.status_text(job)))
        await _finished(bot, job, outgoing)
    else:
        await send.text((bot, job.chat_id), outgoing.text, silent=outgoing.silent)


async def _status(bot: Bot, svc, outgoing: Outgoing) -> None:
    """One status message per job, edited in place; unchanged text is never re-sent."""
    job = svc.training.store.job_by_id(outgoing.job.id)
    text = svc.training.status_text(job)
    if text == job.last_status_text and job.status_message_id:
        return
    svc.training.edited(job.id)
    if job.status_message_id:
        try:
            await send.edit(bot, text, chat_id=job.chat_id, message_id=job.status_message_id)
            svc.training.remember_status(job.id, text)
            return
        except BadRequest as error:
            if "not modified" in str(error).lower():
                return
            log.info("status message of job %s cannot be edited (%s); sending a new one", job.id, error)
    message = await send.text((bot, job.chat_id), text, silent=outgoing.silent)
    svc.training.remember_status(job.id, text, message.message_id)


async def _finished(bot: Bot, job, outgoing: Outgoing) -> None:
    """The end of training, before the archive. A refusal of it is logged and the archive still goes:
    the model is what the user waited for."""
    try:
        await send.report((bot, job.chat_id), outgoing.text, outgoing.extra.get("whole"), texts.ap_file(job.id))
    except BadRequest:
        log.exception("the end of job %s could not be said; its archive is sent all the same", job.id)


async def announce_launch_failure(bot: Bot, training, job) -> None:
    """Why a job's trainer never ran, in its status message (the card) if it has one: nothing else
    edits that message once the job has failed."""
    text = texts.launch_failed(job.id, job.error)
    try:
        if job.status_message_id:
            await send.edit(bot, text, chat_id=job.chat_id, message_id=job.status_message_id)
        else:
            await send.text((bot, job.chat_id), text)
    except BadRequest as error:
        log.info("status message of job %s cannot be edited (%s); sending a new one", job.id, error)
        await send.text((bot, job.chat_id), text)
    training.remember_status(job.id, text)
