"""The Bot API methods detbot's bot calls, over the chats' state: users, the bot's messages, files, updates.

A method takes the decoded parameters and returns the ``result`` or raises ``ApiError`` with the
cloud API's code and description. State changes happen under ``_lock``; ``_cond`` wakes the
test thread's waits.
"""

from __future__ import annotations

import asyncio
import copy
import io
import itertools
import json
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from tests.fake_telegram.server import FakeUser

MB = 1024 * 1024
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
DEFAULT_SCOPE = json.dumps({"type": "default"})
CHAT_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice"}
CHAT_ACTIONS |= {"upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note"}


class ApiError(Exception):
    """Raised by a method; becomes Telegram's error response with this HTTP status."""

    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code, self.description = code, description


def _bad(description: str) -> ApiError:
    return ApiError(400, "Bad Request: " + description)


def _attached(item: dict, p: dict) -> Upload | None:
    """The upload an album item names as ``attach://NAME``."""
    name = str(item.get("media", ""))
    return p.get(name.removeprefix("attach://")) if name.startswith("attach://") else None


def _caption(item: dict) -> dict:
    """An album item's caption, as sendPhoto's parameters."""
    return {key: item[key] for key in ("caption", "parse_mode") if item.get(key)}


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str | None
    mime_type: str | None
    data: bytes

    def __repr__(self) -> str:
        return f"Upload({self.filename!r}, {self.mime_type!r}, {len(self.data)} bytes)"


@dataclass
class StoredFile:
    file_id: str
    data: bytes
    size: int  # what Telegram reports, which a test may set above len(data)
    filename: str | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0
    path: str | None = None  # set by the first getFile

    def as_dict(self) -> dict:
        """The Document or PhotoSize object."""
        optional = {"file_name": self.filename, "mime_type": self.mime_type, "width": self.width, "height": self.height}
        ids = {"file_id": self.file_id, "file_unique_id": self.file_id.split("-")[0], "file_size": self.size}
        return ids | {key: value for key, value in optional.items() if value}


class BotApi:
    def __init__(self, token: str, download_limit: int, upload_limit: int, photo_upload_limit: int):
        self.token, self.bot_username = token, "detbot_test_bot"
        self.download_limit, self.upload_limit, self.photo_upload_limit = (
            download_limit,
            upload_limit,
            photo_upload_limit,
        )
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._users: dict[int, FakeUser] = {}  # chats by id: users' private chats, and groups (``FakeGroup``)
        self._message_ids: dict[int, itertools.count] = {}  # per chat, shared by the user's and the bot's messages
        self._messages: dict[tuple[int, int], dict] = {}  # the bot's: (chat_id, message_id) -> current state
        self._events: list[dict] = []  # every send and edit of a bot message, as it was then
        self._file_ids = itertools.count(1)
        self._files: dict[str, StoredFile] = {}
        self._paths: dict[str, StoredFile] = {}
        self._updates: list[dict] = []  # not yet confirmed by a getUpdates offset
        self._update_ids = itertools.count(100_000_001)
        self._pollers: list[asyncio.Future] = []
        self._polls = 0  # getUpdates since the last deleteWebhook
        self._answers: dict[str, dict | None] = {}  # callback query id -> answerCallbackQuery params
        self._commands: dict[str, list[dict]] = {}
        self._get_files: Counter[str] = Counter()
        self._downloads: Counter[str] = Counter()
        self._chat_actions: list[dict] = []  # sendChatAction calls: chat_id, action, time (monotonic)

    # ---------------------------------------------------------------- methods
    def _m_getMe(self, p: dict) -> dict:
        flags = {"can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
        return self._bot_user() | flags

    def _m_deleteWebhook(self, p: dict) -> bool:
        with self._lock:
            if p.get("drop_pending_updates") is True:
                self._updates.clear()
            self._polls = 0
        return True

    def _m_setMyCommands(self, p: dict) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list) or not all(isinstance(command, dict) for command in commands):
            raise _bad("can't parse commands JSON object")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        scope = json.dumps(p["scope"]) if p.get("scope") else DEFAULT_SCOPE
        with self._lock:
            self._commands[scope + str(p.get("language_code", ""))] = [
                {"command": command["command"], "description": command["description"]} for command in commands
            ]
        return True

    async def _m_getUpdates(self, p: dict) -> list:
        loop = asyncio.get_running_loop()
        offset, limit = int(p.get("offset") or 0), min(max(int(p.get("limit") or 100), 1), 100)
        deadline = loop.time() + float(p.get("timeout") or 0)
        with self._lock:
            self._polls += 1
            self._cond.notify_all()
        while True:
            with self._lock:
                self._updates = [update for update in self._updates if update["update_id"] >= offset]
                if self._updates or loop.time() >= deadline or self._closing:
                    return copy.deepcopy(self._updates[:limit])
                waiter = loop.create_future()
                self._pollers.append(waiter)
            try:  # until an update is queued
                await asyncio.wait_for(waiter, deadline - loop.time())
            except TimeoutError:
                pass
            with self._lock:
                if waiter in self._pollers:
                    self._pollers.remove(waiter)

    def _m_sendMessage(self, p: dict) -> dict:
        with self._lock:
            user = self._writable_chat(p)
            return self._new_bot_message(user, p, {"kind": "text", "text": self._text(p, "message is too long")})

    def _m_editMessageText(self, p: dict) -> dict:
        with self._lock:
            record = self._editable(p)
            if record["kind"] != "text":
                raise _bad("there is no text in the message to edit")
            return self._edit(record, text=self._text(p, "MESSAGE_TOO_LONG"), reply_markup=self._markup(p))

    def _m_editMessageReplyMarkup(self, p: dict) -> dict:
        with self._lock:
            return self._edit(self._editable(p), reply_markup=self._markup(p))

    def _m_editMessageMedia(self, p: dict) -> dict:
        """Only a photo replaced by an uploaded photo (``attach://NAME``), with its caption: what the bot edits."""
        with self._lock:
            record, media = self._editable(p), p.get("media")
            if not isinstance(media, dict) or media.get("type") != "photo" or record["kind"] != "photo":
                raise _bad("only a photo replaced by a photo is faked")
            if not _attached(media, p):
                raise _bad("wrong file identifier/HTTP URL specified")
            upload = self._upload({"photo": _attached(media, p)}, "photo", self.photo_upload_limit)
            return self._edit(record, **self._photo_fields(upload, media), reply_markup=self._markup(p))

    def _m_answerCallbackQuery(self, p: dict) -> bool:
        with self._lock:
            query_id = p.get("callback_query_id", "")
            if query_id not in self._answers or self._answers[query_id] is not None:
                raise _bad("query is too old and response timeout expired or query ID is invalid")
            self._answers[query_id] = {key: value for key, value in p.items() if key != "callback_query_id"}
            self._cond.notify_all()
        return True

    def _m_sendPhoto(self, p: dict) -> dict:
        with self._lock:
            user = self._writable_chat(p)
            upload = self._upload(p, "photo", self.photo_upload_limit)
            return self._new_bot_message(user, p, self._photo_fields(upload, p))

    def _m_sendDocument(self, p: dict) -> dict:
        with self._lock:
            user = self._writable_chat(p)
            upload = self._upload(p, "document", self.upload_limit)
            mime = upload.mime_type or "application/octet-stream"
            file = self._store_file(upload.data, filename=upload.filename, mime_type=mime)
            return self._new_bot_message(user, p, self._media("document", upload, p) | {"document": file.as_dict()})

    def _m_sendMediaGroup(self, p: dict) -> list[dict]:
        """An album of 2-10 photos, each uploaded as ``attach://NAME``: one message each, sharing a media_group_id."""
        with self._lock:
            user = self._writable_chat(p)
            media = p.get("media")
            if not isinstance(media, list) or not 2 <= len(media) <= 10:
                raise _bad("wrong number of media specified")  # Telegram: an album holds 2-10 items
            if not all(isinstance(i, dict) and i.get("type") == "photo" and _attached(i, p) for i in media):
                raise _bad("only uploaded photos are faked in albums")
            group, sent = str(secrets.randbits(60)), []
            for item in media:
                photo = self._m_sendPhoto(p | {"photo": _attached(item, p)} | _caption(item))
                record = self._messages[(user.id, photo["message_id"])]
                record["media_group_id"] = self._events[-1]["media_group_id"] = group
                sent.append(self._api_message(record) | {"media_group_id": group})
            return sent

    def _m_sendChatAction(self, p: dict) -> bool:
        with self._lock:
            user = self._writable_chat(p)
            if p.get("action") not in CHAT_ACTIONS:
                raise _bad("wrong parameter action in request")
            self._chat_actions.append({"chat_id": user.id, "action": p["action"], "time": time.monotonic()})
            self._cond.notify_all()
        return True

    def _m_getFile(self, p: dict) -> dict:
        with self._lock:
            file_id = str(p.get("file_id", ""))
            self._get_files[file_id] += 1
            self._cond.notify_all()
            file = self._files.get(file_id)
            if file is None:
                raise _bad("invalid file_id")
            if file.size > self.download_limit:
                raise _bad("file is too big")
            if file.path is None:
                suffix = "." + file.filename.rsplit(".", 1)[1] if "." in (file.filename or "") else ".jpg"
                file.path = f"{'documents' if file.filename else 'photos'}/file_{len(self._paths)}{suffix}"
                self._paths[file.path] = file
            return file.as_dict() | {"file_path": file.path}

    # ---------------------------------------------------------------- parameters
    def _writable_chat(self, p: dict) -> FakeUser:
        user = self._users.get(p.get("chat_id"))
        if user is None:
            raise _bad("chat not found")
        if user.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return user

    def _editable(self, p: dict) -> dict:
        if p.get("chat_id") not in self._users:
            raise _bad("chat not found")
        record = self._messages.get((p["chat_id"], p.get("message_id")))
        if record is None:
            raise _bad("message to edit not found")
        return record

    @staticmethod
    def _text(p: dict, too_long: str) -> str:
        if p.get("parse_mode"):
            raise _bad("unsupported parse_mode")
        text = str(p.get("text") or "").strip()  # Telegram trims
        if not text:
            raise _bad("message text is empty")
        if len(text) > 4096:
            raise _bad(too_long)
        return text

    @staticmethod
    def _media(kind: str, upload: Upload, p: dict) -> dict:
        if p.get("parse_mode"):
            raise _bad("unsupported parse_mode")
        caption = str(p.get("caption") or "").strip() or None
        if caption and len(caption) > 1024:
            raise _bad("message caption is too long")
        return {"kind": kind, "caption": caption, "bytes": upload.data, "filename": upload.filename}

    def _photo_fields(self, upload: Upload, p: dict) -> dict:
        """A photo message's fields: a real image within Telegram's dimensions, its sizes, its caption."""
        try:
            sizes = self._photo_sizes(upload.data)
        except OSError:
            raise _bad("IMAGE_PROCESS_FAILED") from None
        width, height = sizes[-1].width, sizes[-1].height
        if width + height > 10000 or max(width, height) > 20 * min(width, height):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        return self._media("photo", upload, p) | {"photo": [size.as_dict() for size in sizes]}

    @staticmethod
    def _markup(p: dict) -> dict | None:
        markup = p.get("reply_markup")
        if not markup:
            return None
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad("can't parse reply keyboard markup JSON object")  # only inline keyboards are faked
        for button in (button for row in rows for button in row):
            data = button.get("callback_data")
            if "url" not in button and not (isinstance(data, str) and 1 <= len(data.encode()) <= 64):
                raise _bad("BUTTON_DATA_INVALID")
        return markup

    @staticmethod
    def _upload(p: dict, key: str, limit: int) -> Upload:
        upload = p.get(key)
        if not isinstance(upload, Upload):  # the bot never re-sends by file_id or URL, so only uploads are faked
            raise _bad("wrong file identifier/HTTP URL specified")
        if not upload.data:
            raise _bad("file must be non-empty")
        if len(upload.data) > limit:
            raise ApiError(413, "Request Entity Too Large")
        return upload

    # ---------------------------------------------------------------- state
    def _bot_user(self) -> dict:
        return {
            "id": int(self.token.split(":")[0]),
            "is_bot": True,
            "first_name": "DetBot",
            "username": self.bot_username,
        }

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _store_file(self, data: bytes, size: int | None = None, **fields: Any) -> StoredFile:
        with self._lock:
            file_id = f"file{next(self._file_ids)}-{secrets.token_urlsafe(12)}"
            file = self._files[file_id] = StoredFile(file_id, data, len(data) if size is None else size, **fields)
            return file

    def _photo_sizes(self, data: bytes) -> list[StoredFile]:
        """A real 90 px JPEG thumbnail, then the original bytes: the bot must take the last size."""
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            sizes = []
            if max(image.size) > 90:
                thumbnail, out = image.convert("RGB"), io.BytesIO()
                thumbnail.thumbnail((90, 90))
                thumbnail.save(out, "JPEG", quality=80)
                sizes.append(self._store_file(out.getvalue(), width=thumbnail.width, height=thumbnail.height))
            return [*sizes, self._store_file(data, width=image.width, height=image.height)]

    def _new_bot_message(self, user: FakeUser, p: dict, fields: dict) -> dict:
        markup = self._markup(p)
        record = {"message_id": self._next_message_id(user.id), "chat_id": user.id, "date": int(time.time())}
        record |= {"text": None, "caption": None, "bytes": None, "filename": None, "reply_markup": markup} | fields
        record["silent"] = p.get("disable_notification") is True  # sent without a sound
        self._messages[(user.id, record["message_id"])] = record
        self._emit(record, "sent")
        return self._api_message(record)

    def _edit(self, record: dict, **changes: Any) -> dict:
        if all(record[key] == value for key, value in changes.items()):
            raise ApiError(400, NOT_MODIFIED)
        record.update(changes, edit_date=int(time.time()))
        self._emit(record, "edited")
        return self._api_message(record)

    def _emit(self, record: dict, event: str) -> None:
        stamp = {"event": event, "seq": len(self._events) + 1, "at": time.monotonic()}
        self._events.append(copy.deepcopy(record) | stamp)
        self._cond.notify_all()

    def _api_message(self, record: dict) -> dict:
        """The Message object of a bot message, as it is now."""
        user = self._users[record["chat_id"]]
        message = {"message_id": record["message_id"], "from": self._bot_user(), "chat": user.chat_dict()}
        message["date"] = record["date"]
        for key in ("text", "caption", "photo", "document", "reply_markup", "edit_date"):
            if record.get(key):
                message[key] = copy.deepcopy(record[key])
        return message

    def _enqueue(self, payload: dict) -> None:
        with self._lock:
            self._updates.append({"update_id": next(self._update_ids)} | payload)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_pollers)

    def _wake_pollers(self) -> None:
        with self._lock:
            pollers, self._pollers = self._pollers, []
        for poller in pollers:
            if not poller.done():
                poller.set_result(None)
