"""Every message the bot sends or edits goes through here, so none can pass Telegram's limits.

Telegram refuses a text above 4096 characters and a caption above 1024 (400 "message is too
long"). A long text is split at line boundaries into several messages; a report that leaves
details out comes with the whole of it as a .txt document; an edit or a caption, which cannot
be split, is cut at a line and says how much is missing. Lengths are counted in UTF-16 code
units, as Telegram counts entities: never fewer than Python's characters.

A target is a ``Message`` to answer (the reply goes to its chat) or a ``(bot, chat_id)`` pair.
"""

from __future__ import annotations

from telegram import Bot, InlineKeyboardMarkup, Message

from . import texts

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024

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


async def text(target: Target, body: str, reply_markup: InlineKeyboardMarkup | None = None) -> Message:
    """``body`` as one message or several; buttons go under the last, where the reading ends."""
    pieces = chunks(body)
    for piece in pieces[:-1]:
        await _send_text(target, piece, None)
    return await _send_text(target, pieces[-1], reply_markup)


async def _send_text(target: Target, body: str, reply_markup) -> Message:
    if isinstance(target, Message):
        return await target.reply_text(body, reply_markup=reply_markup)
    bot, chat_id = target
    return await bot.send_message(chat_id, body, reply_markup=reply_markup)


async def report(target: Target, chat: str, whole: str | None, filename: str) -> None:
    """A report: ``chat`` as text, then, when it leaves something out, ``whole`` as the document ``filename``."""
    await text(target, chat)
    if whole is not None:
        await document(target, whole.encode(), filename)


async def edit(target, body: str, reply_markup: InlineKeyboardMarkup | None = None, **where) -> None:
    """Edit a message in place: a ``CallbackQuery``'s message, or ``bot`` with ``chat_id`` and ``message_id``."""
    await target.edit_message_text(fit(body, TEXT_LIMIT), reply_markup=reply_markup, **where)


async def photo(target: Target, data: bytes, caption: str | None = None) -> Message:
    """A photo; a caption above the limit is cut, and the whole of it follows as text."""
    short = fit(caption, CAPTION_LIMIT) if caption else None
    if isinstance(target, Message):
        sent = await target.reply_photo(data, caption=short)
    else:
        sent = await target[0].send_photo(target[1], data, caption=short)
    if short != caption:
        await text(target, caption)
    return sent


async def document(target: Target, data: bytes, filename: str, caption: str | None = None) -> Message:
    short = fit(caption, CAPTION_LIMIT) if caption else None
    if isinstance(target, Message):
        sent = await target.reply_document(data, filename=filename, caption=short)
    else:
        sent = await target[0].send_document(target[1], data, filename=filename, caption=short)
    if short != caption:
        await text(target, caption)
    return sent
