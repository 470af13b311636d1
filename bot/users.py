"""Who may use the bot, what it notes of an allowed user on each of their updates, and their language."""

from __future__ import annotations

import asyncio

from storage import Store, User

from . import texts


class Users:
    def __init__(self, store: Store, allowed: frozenset[int]):
        self.store, self.allowed = store, allowed

    async def admit(self, user_id: int, name: str, telegram_language: str | None = None) -> str | None:
        """None for a stranger, of whom nothing is stored. An allowed user is known from now on, and
        messages held back because they had blocked the bot flow again: writing to it unblocked it.
        Returns the language to speak to them (``texts.choose``)."""
        if user_id not in self.allowed:
            return None
        user = await asyncio.to_thread(self._seen, user_id, name, telegram_language)
        return texts.choose(user.language, telegram_language)

    def _seen(self, user_id: int, name: str, telegram_language: str | None) -> User:
        user = self.store.ensure_user(user_id, name, telegram_language)
        self.store.resume_notices(user_id)
        return user

    async def set_language(self, user_id: int, language: str) -> None:
        """``language``: a catalogue code, or "" to follow the user's Telegram app again."""
        await asyncio.to_thread(self.store.set_language, user_id, language if language in texts.CATALOGUES else None)

    def language(self, user_id: int) -> str:
        """What the watcher speaks to a job's owner, with no update to read: their choice, else the
        language of their app when they last wrote."""
        return texts.choose(*self.store.user_language(user_id))
