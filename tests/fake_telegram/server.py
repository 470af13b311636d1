"""The HTTP server on 127.0.0.1 and the test side: users who write and press buttons, and waits on what the bot did."""

from __future__ import annotations

import asyncio
import copy
import json
import mimetypes
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fake_telegram.bot_api import DEFAULT_SCOPE, MB, ApiError, BotApi, Upload

DEFAULT_TOKEN = "123456789:AAFakeTelegramTokenForDetbotTests_x"
# python-telegram-bot sends these raw; every other parameter JSON-encoded.
STRING_PARAMS = {"text", "caption", "parse_mode", "callback_query_id", "file_id"}
# Telegram marks a /command in a user's text; CommandHandler needs that entity at offset 0.
COMMAND = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")


@dataclass
class ApiCall:
    """One request the bot made (``tg.requests``); status and error once it is answered."""

    method: str
    params: dict[str, Any]
    status: int | None = None
    error: str | None = None


class FakeUser:
    """A user in a private chat with the bot (``tg.user(...)``); each action queues one update."""

    def __init__(self, server: FakeTelegram, user_id: int, first_name: str, language_code: str | None = None):
        self.server, self.id, self.first_name = server, user_id, first_name
        self.language_code = language_code  # the language of the user's app, sent in every update's "from"
        self.blocked = False

    @property
    def chat_id(self) -> int:
        return self.id

    def as_dict(self) -> dict:
        user = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        return user | ({"language_code": self.language_code} if self.language_code else {})

    def chat_dict(self) -> dict:
        return {"id": self.id, "type": "private", "first_name": self.first_name}

    def send_text(self, text: str) -> dict:
        """Sends a text message; returns the Message object."""
        text = text.strip()
        entities = [{"type": "bot_command", "offset": m.start(), "length": len(m[0])} for m in COMMAND.finditer(text)]
        return self.server._user_message(self, {"text": text} | ({"entities": entities} if entities else {}))

    def send_document(self, data: bytes, filename: str = "file.bin", file_size: int | None = None) -> str:
        """Sends a file; returns its file_id. ``file_size`` is the size Telegram reports
        (the 20 MB getFile limit without 20 MB of bytes); the mime type follows the name, as a phone's does."""
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        file = self.server._store_file(bytes(data), file_size, filename=filename, mime_type=mime)
        self.server._user_message(self, {"document": file.as_dict()})
        return file.file_id

    def send_photo(self, data: bytes, media_group_id: str | None = None) -> str:
        """Sends a compressed photo (real image bytes); returns the file_id of the largest size."""
        sizes = self.server._photo_sizes(bytes(data))
        group = {"media_group_id": media_group_id} if media_group_id else {}
        self.server._user_message(self, {"photo": [size.as_dict() for size in sizes]} | group)
        return sizes[-1].file_id

    def send_album(self, photos: list[bytes]) -> list[str]:
        """Sends 2-10 photos as one album: one message each, sharing a media_group_id, as Telegram does."""
        if not 2 <= len(photos) <= 10:
            raise ValueError("an album holds 2 to 10 items")
        group = str(secrets.randbits(60))
        return [self.send_photo(data, media_group_id=group) for data in photos]

    def send_media(self, kind: str) -> dict:
        """Sends a sticker, voice message, video, video note or audio with placeholder bytes; returns the Message."""
        file = self.server._store_file(b"\0" * 64)
        ids = {"file_id": file.file_id, "file_unique_id": file.file_id.split("-")[0], "file_size": 64}
        fields = {
            "sticker": {"type": "regular", "width": 512, "height": 512, "is_animated": False, "is_video": False},
            "voice": {"duration": 2, "mime_type": "audio/ogg"},
            "audio": {"duration": 2, "mime_type": "audio/mpeg"},
            "video": {"width": 320, "height": 240, "duration": 2, "mime_type": "video/mp4"},
            "video_note": {"length": 240, "duration": 2},
        }[kind]
        return self.server._user_message(self, {kind: ids | fields})

    def press(self, message: dict | int, callback_data: str) -> str:
        """Presses the inline button with ``callback_data`` on a bot message; returns the query id."""
        return self.server._press(self, message, callback_data)

    def press_forged(self, message: dict | int, callback_data: str) -> str:
        """What a modified client can send: any ``callback_data``, on a button or not, for a bot message."""
        return self.server._press(self, message, callback_data, forged=True)

    def block(self) -> None:
        """Sends to this chat fail with 403 until ``unblock()``."""
        self.blocked = True

    def unblock(self) -> None:
        self.blocked = False


class FakeGroup:
    """A group chat (``tg.group(...)``, a negative id): ``member(user)`` writes and presses in it."""

    def __init__(self, server: FakeTelegram, chat_id: int, title: str):
        self.server, self.id, self.title, self.blocked = server, chat_id, title, False

    def chat_dict(self) -> dict:
        return {"id": self.id, "type": "group", "title": self.title}

    def member(self, user: FakeUser) -> FakeUser:
        """``user`` in this group: their updates come from them, in this chat."""
        return FakeMember(self.server, user, self)


class FakeMember(FakeUser):
    def __init__(self, server: FakeTelegram, user: FakeUser, group: FakeGroup):
        super().__init__(server, user.id, user.first_name, user.language_code)
        self.group = group

    @property
    def chat_id(self) -> int:
        return self.group.id

    def chat_dict(self) -> dict:
        return self.group.chat_dict()


class FakeTelegram(BotApi):
    """The fake Bot API for one token, as a context manager (see the package docstring)."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        download_limit: int = 20 * MB,
        upload_limit: int = 50 * MB,
        photo_upload_limit: int = 10 * MB,
    ):
        super().__init__(token, download_limit, upload_limit, photo_upload_limit)
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._requests: list[ApiCall] = []
        self._methods = {name[3:].lower(): (name[3:], getattr(self, name)) for name in dir(self) if name[:3] == "_m_"}

    # ---------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    def env(self, token_var: str | None = None) -> dict[str, str]:
        """The bot process's TELEGRAM_BASE_URL and TELEGRAM_BASE_FILE_URL, and the token as ``token_var``."""
        env = {"TELEGRAM_BASE_URL": self.base_url, "TELEGRAM_BASE_FILE_URL": self.base_file_url}
        return env | ({token_var: self.token} if token_var else {})

    def __enter__(self) -> FakeTelegram:
        self._thread = threading.Thread(target=self._serve, name="FakeTelegram", daemon=True)
        self._thread.start()
        if not self._started.wait(15) or self.port is None:
            raise RuntimeError("FakeTelegram did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._closing = True
        self._loop.call_soon_threadsafe(self._wake_pollers)  # long polls answer [] while the runner shuts down
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=self.upload_limit + MB)
        app.router.add_route("POST", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
            self.port = runner.addresses[0][1]
        finally:
            self._started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    # ---------------------------------------------------------------- HTTP
    async def _handle_api(self, request: web.Request) -> web.Response:
        raw = request.match_info["method"]
        name, method = self._methods.get(raw.lower(), (raw, None))
        call = ApiCall(name, {})
        with self._lock:
            self._requests.append(call)
        try:
            call.params = await self._read_params(request)
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if method is None:
                raise ApiError(404, "Not Found: method not found")
            result = method(call.params)
            result = await result if asyncio.iscoroutine(result) else result
        except ApiError as err:
            return self._respond(call, err.code, {"ok": False, "error_code": err.code, "description": err.description})
        except Exception as exc:  # a bug in the fake: loud, and not a Telegram error
            return self._respond(call, 500, {"ok": False, "error_code": 500, "description": f"fake: {exc!r}"})
        return self._respond(call, 200, {"ok": True, "result": result})

    def _respond(self, call: ApiCall, status: int, body: dict) -> web.Response:
        with self._lock:
            call.status, call.error = status, body.get("description")
            self._cond.notify_all()
        return web.json_response(body, status=status)

    @staticmethod
    async def _read_params(request: web.Request) -> dict[str, Any]:
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "Request Entity Too Large") from None
        params: dict[str, Any] = {}
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = Upload(value.filename, value.content_type, value.file.read())
            elif key in STRING_PARAMS:
                params[key] = value
            else:
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = value
        return params

    async def _handle_file(self, request: web.Request) -> web.Response:
        with self._lock:
            file = self._paths.get(request.match_info["path"])
            if request.match_info["token"] != self.token or file is None:
                return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
            self._downloads[file.file_id] += 1
            self._cond.notify_all()
        return web.Response(body=file.data, content_type="application/octet-stream")

    # ---------------------------------------------------------------- users (test thread)
    def user(self, user_id: int, first_name: str = "Ann", language_code: str | None = None) -> FakeUser:
        """The user (and private chat) ``user_id``: made on the first call, the same one after (set
        ``language_code`` on it to change the app language its next updates carry)."""
        with self._lock:
            return self._users.setdefault(user_id, FakeUser(self, user_id, first_name, language_code))

    def group(self, chat_id: int, title: str = "Team") -> FakeGroup:
        """The group chat ``chat_id`` (negative, as Telegram's are): made on the first call, the same one after."""
        if chat_id >= 0:
            raise ValueError("a group's chat id is negative")
        with self._lock:
            return self._users.setdefault(chat_id, FakeGroup(self, chat_id, title))

    def _user_message(self, user: FakeUser, content: dict) -> dict:
        with self._lock:
            message = {"message_id": self._next_message_id(user.chat_id), "from": user.as_dict()}
            message |= {"chat": user.chat_dict(), "date": int(time.time())} | content
        self._enqueue({"message": message})
        return message

    def _press(self, user: FakeUser, message: dict | int, callback_data: str, forged: bool = False) -> str:
        message_id = message["message_id"] if isinstance(message, dict) else message
        with self._lock:
            record = self._messages.get((user.chat_id, message_id), {})
            if not (record if forged else callback_data in [data for _, data in self.buttons(record)]):
                buttons = self.buttons(record)
                raise AssertionError(
                    f"bot message {message_id} in chat {user.chat_id} has no {callback_data!r}: {buttons}"
                )
            query_id = str(secrets.randbits(63))
            self._answers[query_id] = None
            query = {"id": query_id, "from": user.as_dict(), "message": self._api_message(record)}
            query |= {"chat_instance": str(user.chat_id), "data": callback_data}
        self._enqueue({"callback_query": query})
        return query_id

    # ---------------------------------------------------------------- what the bot did (test thread)
    def messages(self, chat_id: int | None = None) -> list[dict]:
        """The bot's messages as they are now, oldest first: message_id, chat_id, kind ("text" | "photo" |
        "document"), text, caption, reply_markup, bytes and filename (uploads), photo/document, edit_date."""
        with self._lock:
            return [copy.deepcopy(r) for r in self._messages.values() if chat_id in (None, r["chat_id"])]

    def events(self, chat_id: int | None = None, since: int = 0) -> list[dict]:
        """Every send and edit of a bot message after ``since`` (see ``mark()``): the message as it was
        then, with "event" ("sent" | "edited"), "seq" and "at" (``time.monotonic()``)."""
        with self._lock:
            return [copy.deepcopy(e) for e in self._events[since:] if chat_id in (None, e["chat_id"])]

    def mark(self) -> int:
        """A cursor for ``since=``: only later sends and edits count."""
        with self._lock:
            return len(self._events)

    def wait_for(
        self, predicate: Callable[[dict], Any], timeout: float = 30.0, *, chat_id: int | None = None, since: int = 0
    ) -> dict:
        """The first event after ``since`` (oldest first) for which ``predicate`` holds; one that raises does not."""
        found: list[dict] = []

        def matched() -> bool:
            for event in self._events[since:]:
                if chat_id in (None, event["chat_id"]) and _holds(predicate, event):
                    found.append(copy.deepcopy(event))
                    return True
            return False

        self.wait_until(matched, timeout, "a bot message to match")
        return found[0]

    def wait_until(self, condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
        """Waits until ``condition()``, evaluated under the server's lock, holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self._describe()}")
                self._cond.wait(min(remaining, 0.5))

    def _describe(self) -> str:
        lines = ["the bot's last messages:"]
        for e in self._events[-12:]:
            body = e["text"] or f"[{e['kind']}] {e['caption'] or e['filename'] or ''}"
            lines.append(f"  #{e['seq']} {e['event']} chat={e['chat_id']} id={e['message_id']}: {body[:200]!r}")
        failed = [c for c in self._requests if (c.status or 0) >= 400][-8:]
        return "\n".join(lines + ["failed calls:"] + [f"  {c.method} -> {c.status} {c.error}" for c in failed])

    @staticmethod
    def buttons(message: dict) -> list[tuple[str, str | None]]:
        """(text, callback_data) of every inline button, row by row; callback_data is None for URL buttons."""
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        return [(button["text"], button.get("callback_data")) for row in rows for button in row]

    @property
    def requests(self) -> list[ApiCall]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def pending_updates(self) -> int:
        """Updates the bot has not confirmed (by a later getUpdates offset)."""
        with self._lock:
            return len(self._updates)

    def wait_until_polling(self, timeout: float = 30.0) -> None:
        """Until the bot calls getUpdates after its deleteWebhook: earlier updates may have been dropped."""
        self.wait_until(lambda: self._polls > 0, timeout, "the bot to poll getUpdates")

    def get_file_count(self, file_id: str) -> int:
        """getFile calls for ``file_id``, refused ones included."""
        with self._lock:
            return self._get_files[file_id]

    def download_count(self, file_id: str) -> int:
        with self._lock:
            return self._downloads[file_id]

    def chat_actions(self, chat_id: int | None = None) -> list[dict]:
        """Every sendChatAction so far, oldest first: chat_id, action and time (``time.monotonic()``)."""
        with self._lock:
            return [copy.deepcopy(a) for a in self._chat_actions if chat_id in (None, a["chat_id"])]

    def callback_answer(self, query_id: str) -> dict | None:
        """The answerCallbackQuery parameters for a press; None while it is unanswered."""
        with self._lock:
            return copy.deepcopy(self._answers[query_id])

    def commands(self, language_code: str = "") -> list[dict]:
        """The commands setMyCommands set for the default scope and ``language_code`` ("": for every language)."""
        with self._lock:
            return copy.deepcopy(self._commands.get(DEFAULT_SCOPE + language_code, []))


def _holds(predicate: Callable[[dict], Any], event: dict) -> bool:
    try:
        return bool(predicate(event))
    except Exception:  # a predicate reading a field this message lacks
        return False
