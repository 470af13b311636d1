"""Every message the bot sends or edits goes through here, so none can pass Telegram's limits.

Telegram refuses a text above 4096 characters and a caption above 1024 (400 "message is too
long"). A long text is split at line boundaries into several messages; a report that leaves
details out comes with the whole of it as a .txt document; an edit or a caption, which cannot
be split, is cut at a line and says how much is missing. Lengths are counted in UTF-16 code
units, as Telegram counts entities: never fewer than Python's characters.

A target is a ``Message`` to answer (the reply goes to its chat) or a ``(bot, chat_id)`` pair.
``silent`` sends without a sound (``disable_notification``); edits never notify, so they have no such flag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import TelegramError

from . import cards, texts

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
ALBUM_LIMIT = 10  # photos in one media group
# Telegram shows a chat action for 5 s or until the next message: re-sent every 4 s it never lapses.
ACTION_EVERY_S = 4.0
log = logging.getLogger(__name__)

Target = Message | tuple[Bot, int]


def length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def chunks(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """``text`` in pieces of at most ``limit``, split between lines; a longer line is split at a space."""
    pieces, current = [], ""
    for line in _short_lines(text, limit):
        joined = f"{current}\n{line}" if current else line
        if length(joined) <= limit:
            current = joined
            continue
        pieces.append(current)
        current = line
    return [piece for piece in [*pieces, current] if piece.strip()]


def _short_lines(text: str, limit: int) -> list[str]:
    lines = []
    for line in text.split("\n"):
        while length(line) > limit:
            cut = _cut_at(line, limit)
            lines.append(line[:cut])
            line = line[cut:].lstrip(" ")
        lines.append(line)
    return lines


def _cut_at(line: str, limit: int) -> int:
    """The last space that leaves a head within ``limit``, else the limit itself."""
    head = line[:limit]
    while length(head) > limit:  # characters outside the BMP count twice
        head = head[:-1]
    space = head.rfind(" ")
    return space if space > limit // 2 else len(head)


def fit(text: str, limit: int) -> str:
    """``text`` within ``limit``, cut at a line and saying how many lines were left out."""
    if length(text) <= limit:
        return text
    lines = text.split("\n")
    for kept in range(len(lines) - 1, 0, -1):
        head = "\n".join([*lines[:kept], texts.cut_lines(len(lines) - kept)])
        if length(head) <= limit:
            return head
    return chunks(lines[0], limit - 3)[0] + "..."


async def text(
    target: Target, body: str, reply_markup: InlineKeyboardMarkup | None = None, silent: bool = False
) -> Message:
    """``body`` as one message or several; buttons go under the last, where the reading ends."""
    pieces = chunks(body)
    for piece in pieces[:-1]:
        await _send_text(target, piece, None, silent)
    return await _send_text(target, pieces[-1], reply_markup, silent)


async def _send_text(target: Target, body: str, reply_markup, silent: bool = False) -> Message:
    reply_markup = cards.stamped(target, reply_markup)  # in a group, the buttons answer only their owner
    if isinstance(target, Message):
        return await target.reply_text(body, reply_markup=reply_markup, disable_notification=silent)
    bot, chat_id = target
    return await bot.send_message(chat_id, body, reply_markup=reply_markup, disable_notification=silent)


async def report(
    target: Target,
    chat: str,
    whole: str | None,
    filename: str,
    silent: bool = False,
    reply_markup: InlineKeyboardMarkup | None = None,
) -> None:
    """A report: ``chat`` as text (with the buttons), then, when it leaves something out, ``whole`` as the
    document ``filename``."""
    await text(target, chat, reply_markup, silent=silent)
    if whole is not None:
        await document(target, whole.encode(), filename, silent=True)  # the chat part already notified


async def edit(target, body: str, reply_markup: InlineKeyboardMarkup | None = None, **where) -> None:
    """Edit a message in place: a ``CallbackQuery``'s message, or ``bot`` with ``chat_id`` and ``message_id``."""
    reply_markup = cards.stamped(target, reply_markup, where.get("chat_id"))
    await target.edit_message_text(fit(body, TEXT_LIMIT), reply_markup=reply_markup, **where)


async def edit_photo(query, data: bytes, caption: str, reply_markup: InlineKeyboardMarkup | None = None) -> None:
    """Replace the photo of a ``CallbackQuery``'s message, and its caption (cut to the limit)."""
    media = InputMediaPhoto(data, caption=fit(caption, CAPTION_LIMIT))
    await query.edit_message_media(media, reply_markup=cards.stamped(query, reply_markup))


async def photo(
    target: Target,
    data: bytes,
    caption: str | None = None,
    silent: bool = False,
    reply_markup: InlineKeyboardMarkup | None = None,
) -> Message:
    """A photo; a caption above the limit is cut, and the whole of it follows as text."""
    short = fit(caption, CAPTION_LIMIT) if caption else None
    markup = cards.stamped(target, reply_markup)
    if isinstance(target, Message):
        sent = await target.reply_photo(data, caption=short, disable_notification=silent, reply_markup=markup)
    else:
        sent = await target[0].send_photo(
            target[1], data, caption=short, disable_notification=silent, reply_markup=markup
        )
    if short != caption:
        await text(target, caption, silent=True)
    return sent


async def album(target: Target, photos: list[tuple[bytes, str]], silent: bool = False) -> None:
    """Photos with their captions as one media group (one notification at most); a single one as a photo.
    Each caption is cut to the limit: an album's captions are labels, never the only copy of a report."""
    if len(photos) == 1:
        await photo(target, *photos[0], silent=silent)
        return
    for start in range(0, len(photos), ALBUM_LIMIT):
        group = photos[start : start + ALBUM_LIMIT]
        media = [InputMediaPhoto(data, caption=fit(caption, CAPTION_LIMIT)) for data, caption in group]
        if isinstance(target, Message):
            await target.reply_media_group(media, disable_notification=silent)
        else:
            await target[0].send_media_group(target[1], media, disable_notification=silent)
        silent = True  # one notification for the whole album


async def document(
    target: Target, data: bytes, filename: str, caption: str | None = None, silent: bool = False
) -> Message:
    short = fit(caption, CAPTION_LIMIT) if caption else None
    if isinstance(target, Message):
        sent = await target.reply_document(data, filename=filename, caption=short, disable_notification=silent)
    else:
        sent = await target[0].send_document(
            target[1], data, filename=filename, caption=short, disable_notification=silent
        )
    if short != caption:
        await text(target, caption, silent=True)
    return sent


@asynccontextmanager
async def acting(bot: Bot, chat_id: int, action: str, every: float = ACTION_EVERY_S) -> AsyncIterator[None]:
    """``action`` ("typing", "upload_document", ...) shown in the chat for as long as the block runs.

    A chat action lasts 5 s on the user's screen, so it is sent again every ``every`` seconds. One that
    cannot be sent is logged and the work goes on: it is a courtesy, never a reason to stop."""

    async def repeat() -> None:
        while True:
            try:
                await bot.send_chat_action(chat_id, action)
            except TelegramError as error:
                log.info("chat action %s in chat %s not shown: %s", action, chat_id, error)
            await asyncio.sleep(every)

    task = asyncio.create_task(repeat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
