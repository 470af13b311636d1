"""An album arrives as one update per photo, all with one ``media_group_id``: it gets one answer.

The first photo's handler waits a moment for the rest (Telegram sends them together), then answers
for all; the later photos' handlers only join it. Updates are handled concurrently, so the wait
holds no other update up.
"""

from __future__ import annotations

import asyncio

from telegram import Message

ALBUM_WAIT_S = 1.5


class Albums:
    def __init__(self) -> None:
        self._open: dict[tuple[int, str], list[Message]] = {}

    async def gather(self, message: Message) -> list[Message] | None:
        """The messages this one answers for (itself, or its whole album); None when another answers."""
        if message.media_group_id is None:
            return [message]
        key = (message.chat_id, message.media_group_id)
        if key in self._open:
            self._open[key].append(message)
            return None
        self._open[key] = [message]
        await asyncio.sleep(ALBUM_WAIT_S)
        return self._open.pop(key)
