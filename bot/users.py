"""Who may use the bot, and what it notes of an allowed user on each of their updates."""

from __future__ import annotations

import asyncio

from storage import Store


class Users:
    def __init__(self, store: Store, allowed: frozenset[int]):
        self.store, self.allowed = store, allowed

    async def admit(self, user_id: int, name: str) -> bool:
        """False for a stranger, of whom nothing is stored. An allowed user is known from now on, and
        messages held back because they had blocked the bot flow again: writing to it unblocked it."""
        if user_id not in self.allowed:
            return False
        await asyncio.to_thread(self._seen, user_id, name)
        return True

    def _seen(self, user_id: int, name: str) -> None:
        self.store.ensure_user(user_id, name)
        self.store.resume_notices(user_id)
