"""Cards (messages with buttons) answer only the user they were opened for.

In a private chat only its user can press anything. In a group every member sees every card, so
each button there carries its owner: ``|<user id>.<tag>`` after its data, where the tag is an HMAC
(keyed by the bot's token) of the chat, the owner and the data, so no member can forge or move it.
``bot/send.py`` stamps every keyboard it sends or edits in; ``handlers.button`` checks a press
against the stamp before anything else and answers anyone else with an alert.

Whose card it is: the user of the update being answered (set by the gate), or, for what the
watcher sends of a job, the job's owner (``opened_for``). Never trusted for more: every id a
button carries is still checked against the presser by the store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from storage import NotFound, Store

DATA_LIMIT = 64  # bytes of callback_data Telegram accepts
MARK = "|"
NOBODY = 0  # the owner of a card whose stamp does not verify
_owner: ContextVar[int | None] = ContextVar("card_owner", default=None)


def open_for(user_id: int) -> None:
    """Cards sent while answering this update (its asyncio task) are ``user_id``'s."""
    _owner.set(user_id)


@contextmanager
def opened_for(user_id: int) -> Iterator[None]:
    """Cards sent inside the block are ``user_id``'s: the watcher speaks for one job owner after another."""
    token = _owner.set(user_id)
    try:
        yield
    finally:
        _owner.reset(token)


def stamped(target, markup: InlineKeyboardMarkup | None, chat_id: int | None = None) -> InlineKeyboardMarkup | None:
    """``markup`` as sent to ``target`` (a Message, a CallbackQuery, ``(bot, chat_id)`` or a Bot with
    ``chat_id``): in a group, each button's data carries the card's owner."""
    bot, chat_id = _bot_and_chat(target, chat_id)
    owner = _owner.get()
    if markup is None or owner is None or chat_id > 0:  # a private chat's id is its user's: positive
        return markup
    rows = [[_stamp(button, bot, chat_id, owner) for button in row] for row in markup.inline_keyboard]
    return InlineKeyboardMarkup(rows)


def _stamp(button: InlineKeyboardButton, bot: Bot, chat_id: int, owner: int) -> InlineKeyboardButton:
    if button.callback_data is None:  # a URL button does nothing in the bot
        return button
    data = f"{button.callback_data}{MARK}{owner}.{_tag(bot, chat_id, owner, button.callback_data)}"
    if len(data.encode()) > DATA_LIMIT:
        raise ValueError(f"callback_data {button.callback_data!r} leaves no room for its owner within 64 bytes")
    return InlineKeyboardButton(button.text, callback_data=data)


def owner_and_data(query: CallbackQuery) -> tuple[int, str]:
    """Who may press this button, and its data without the stamp. A private chat's card is its
    user's; a group's is nobody's unless its stamp verifies (a button without one was forged)."""
    data, chat_id = query.data or "", query.message.chat_id if query.message else query.from_user.id
    if chat_id > 0:
        return chat_id, data
    body, _, stamp = data.rpartition(MARK)
    owner, _, tag = stamp.partition(".")
    if not owner.isdigit() or not hmac.compare_digest(tag, _tag(query.get_bot(), chat_id, int(owner), body)):
        return NOBODY, body
    return int(owner), body


def owner_name(store: Store, owner: int) -> str | None:
    """The name of a card's owner, for the alert to whoever else pressed it; None: nobody's."""
    try:
        return store.get_user(owner).name if owner != NOBODY else None
    except NotFound:
        return None


def _tag(bot: Bot, chat_id: int, owner: int, data: str) -> str:
    key = hashlib.sha256(f"detbot cards {bot.token}".encode()).digest()
    digest = hmac.new(key, f"{chat_id}:{owner}:{data}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:6]).decode()


def _bot_and_chat(target, chat_id: int | None) -> tuple[Bot, int]:
    if isinstance(target, tuple):
        return target
    if isinstance(target, Message):
        return target.get_bot(), target.chat_id
    if isinstance(target, CallbackQuery):
        return target.get_bot(), target.message.chat_id
    return target, chat_id
