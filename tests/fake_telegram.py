"""A real HTTP fake of the Telegram Bot API, for end-to-end tests of detbot.

The bot under test runs as a separate process (``python -m bot``) and talks to
this server exactly as it would talk to ``api.telegram.org``::

    with FakeTelegram(token=TOKEN) as tg:
        env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, **tg.env()}
        bot = subprocess.Popen([sys.executable, "-m", "bot"], env=env)
        tg.wait_until_polling()
        ann = tg.user(42, first_name="Ann")
        ann.send_text("/start")
        reply = tg.wait_for(lambda m: m["chat_id"] == 42 and "Welcome" in m["text"])

The server runs aiohttp on 127.0.0.1 in a background thread with its own event
loop.  Every test-side method is thread-safe and meant to be called from the
pytest thread.

What is mimicked, because python-telegram-bot (PTB) or the cloud Bot API
depend on it:

* URLs: ``{base_url}{token}/{method}`` (method names are case-insensitive, as
  in Telegram) and ``{base_file_url}{token}/{file_path}`` for downloads.
* Request bodies: PTB posts ``application/x-www-form-urlencoded`` (or
  ``multipart/form-data`` when it uploads a file) where strings are sent raw
  and every other value JSON-encoded (``reply_markup``, ``chat_id``...).  JSON
  bodies and query strings are accepted too.  Uploaded files arrive as
  multipart parts named after the parameter (``document``/``photo``) carrying
  PTB's ``InputFile.field_tuple`` (filename, bytes, mime type);
  ``attach://<name>`` references are resolved.
* Responses: ``{"ok": true, "result": ...}``; errors are
  ``{"ok": false, "error_code": N, "description": "..."}`` with the HTTP status
  equal to ``error_code`` (PTB maps the *status*: 400 BadRequest, 401/404
  InvalidToken, 403 Forbidden, 409 Conflict, 429 + ``parameters.retry_after``
  RetryAfter).
* getUpdates long polling: ``offset`` confirms (negative offsets keep the
  tail), ``timeout`` waits until an update arrives, ``limit``,
  ``allowed_updates`` (sticky, like Telegram), and a newer getUpdates
  terminates a pending one with 409 "Conflict: terminated by other getUpdates
  request" (two bot instances show up in ``server.conflicts``).
  ``deleteWebhook(drop_pending_updates=True)`` drops queued updates.
* Text: ``parse_mode`` HTML / MarkdownV2 / Markdown is parsed into plain text +
  entities with tdlib's error messages ("can't parse entities: ..."), text is
  trimmed, 4096/1024 limits, empty text, "message is not modified" compares
  text + entities + inline keyboard, and editing text without ``reply_markup``
  removes the inline keyboard (as Telegram does).
* Files: getFile refuses files above ``download_limit`` (20 MB on the cloud
  API) with "Bad Request: file is too big"; user photos come as several
  PhotoSize entries (a real 90px JPEG thumbnail first, the original bytes last);
  re-sending by ``file_id`` checks the file type.

Not mimicked: groups/channels, inline mode, webhooks delivery, media groups,
photo re-encoding (the largest PhotoSize is the original bytes).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import html
import io
import itertools
import json
import mimetypes
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

try:  # Pillow is a detbot dependency; used for photo sizes and validation.
    from PIL import Image
except ImportError:  # pragma: no cover
    Image = None

__all__ = ["ApiCall", "FakeTelegram", "FakeUser", "Upload", "DEFAULT_TOKEN", "MB"]

MB = 1024 * 1024
DEFAULT_TOKEN = "123456789:AAFakeTelegramTokenForDetbotTests_x"

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
CONFLICT_POLL = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
# Update types Telegram only delivers when asked for explicitly.
OPT_IN_UPDATES = {"chat_member", "message_reaction", "message_reaction_count"}
# Methods that count against `flood_after`.
FLOOD_METHODS = {
    "sendmessage",
    "sendphoto",
    "senddocument",
    "editmessagetext",
    "editmessagecaption",
    "editmessagereplymarkup",
    "copymessage",
    "forwardmessage",
    "sendmediagroup",
}
# Parameters Telegram treats as strings even when they look like JSON.
STRING_PARAMS = {
    "text",
    "caption",
    "parse_mode",
    "callback_query_id",
    "file_id",
    "action",
    "url",
    "inline_message_id",
    "photo",
    "document",
    "thumbnail",
    "language_code",
    "secret_token",
    "business_connection_id",
    "message_effect_id",
    "description",
    "short_description",
    "name",
    "ip_address",
}


class ApiError(Exception):
    """Raised inside handlers; becomes a Telegram error response."""

    def __init__(self, code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


def _bad(description: str) -> ApiError:
    return ApiError(400, "Bad Request: " + description)


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str | None
    mime_type: str | None
    data: bytes

    def __repr__(self) -> str:
        return f"Upload({self.filename!r}, {self.mime_type!r}, {len(self.data)} bytes)"


@dataclass
class ApiCall:
    """One request the bot made (``server.requests``)."""

    method: str  # canonical camelCase name when known, else as requested
    params: dict[str, Any]  # decoded parameters; uploads appear as Upload objects
    time: float  # time.time() when received
    http_method: str = "POST"
    token_ok: bool = True
    status: int | None = None  # HTTP status of the response, None while pending
    error: str | None = None  # description of an error response
    result: Any = None  # "result" of a successful response
    done_time: float | None = None


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    kind: str  # "photo" | "document"
    data: bytes
    size: int
    owner: str  # "bot" or "user:<id>"
    filename: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    file_path: str | None = None
    group: str | None = None  # PhotoSizes of one photo share a group


_REQUEST: contextvars.ContextVar[web.Request] = contextvars.ContextVar("fake_telegram_request")


def _u16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


class _ParseError(Exception):
    pass


# --------------------------------------------------------------------------- parse modes
_HTML_TAGS = {
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "span",
    "pre",
    "code",
    "blockquote",
}
_HTML_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
_HTML_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
_HTML_ATTR = re.compile(r"""\s*([a-zA-Z0-9_-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


class _Out:
    """Accumulates plain text and tracks the UTF-16 offset."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0  # UTF-16 code units, as in Telegram entity offsets
        self.chars = 0

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.pos += _u16(s)
        self.chars += len(s)

    def text(self) -> str:
        return "".join(self.parts)


def _parse_html(src: str) -> tuple[str, list[dict]]:
    out, stack, ents = _Out(), [], []
    boff = lambda i: len(src[:i].encode())  # noqa: E731  (tdlib reports UTF-8 byte offsets)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "&":
            m = _HTML_ENTITY.match(src, i)
            if m:
                named, dec, hexa = m.groups()
                if named:
                    out.add(html.unescape(m.group(0)))
                else:
                    cp = int(dec) if dec else int(hexa, 16)
                    out.add(chr(cp) if 0 < cp <= 0x10FFFF else "")
                i = m.end()
            else:
                out.add("&")
                i += 1
            continue
        if c != "<":
            out.add(c)
            i += 1
            continue
        begin = i
        i += 1
        if i < n and src[i] == "/":
            if not stack:
                raise _ParseError(f"Unexpected end tag at byte offset {boff(begin)}")
            j = src.find(">", i)
            if j < 0:
                raise _ParseError(f"Unclosed end tag at byte offset {boff(begin)}")
            tag = src[i + 1 : j].strip().lower()
            top = stack[-1]
            if tag != top["tag"]:
                raise _ParseError(
                    f'Unmatched end tag at byte offset {boff(begin)}, expected "</{top["tag"]}>", found "</{tag}>"'
                )
            stack.pop()
            i = j + 1
            length = out.pos - top["offset"]
            if top["type"] == "code" and stack and stack[-1]["type"] == "pre" and top.get("language"):
                stack[-1]["language"] = top["language"]
                continue
            if top["type"] is None or length <= 0:
                continue
            ent = {"type": top["type"], "offset": top["offset"], "length": length}
            if top["type"] == "text_link":
                ent["url"] = top["url"]
            if top["type"] == "custom_emoji":
                ent["custom_emoji_id"] = top["custom_emoji_id"]
            if top["type"] == "pre" and top.get("language"):
                ent["language"] = top["language"]
            ents.append(ent)
            continue
        j = i
        while j < n and not src[j].isspace() and src[j] != ">":
            j += 1
        if j >= n:
            raise _ParseError(f"Unclosed start tag at byte offset {boff(begin)}")
        tag = src[i:j].lower()
        if tag not in _HTML_TAGS:
            raise _ParseError(f'Unsupported start tag "{tag}" at byte offset {boff(begin)}')
        k = src.find(">", j)
        if k < 0:
            raise _ParseError(f"Unclosed start tag at byte offset {boff(begin)}")
        attrs = {}
        for m in _HTML_ATTR.finditer(src[j:k]):
            value = next((g for g in m.groups()[1:] if g is not None), "")
            attrs[m.group(1).lower()] = html.unescape(value)
        i = k + 1
        entry: dict[str, Any] = {"tag": tag, "type": _HTML_TYPES[tag], "offset": out.pos}
        if tag == "a":
            if attrs.get("href"):
                entry["url"] = attrs["href"]
            else:
                entry["type"] = None
        elif tag == "span" and attrs.get("class") != "tg-spoiler":
            raise _ParseError('Tag "span" must have class "tg-spoiler"')
        elif tag == "tg-emoji":
            if not attrs.get("emoji-id"):
                raise _ParseError('Tag "tg-emoji" must have attribute "emoji-id"')
            entry["custom_emoji_id"] = attrs["emoji-id"]
        elif tag == "code" and attrs.get("class", "").startswith("language-"):
            entry["language"] = attrs["class"][len("language-") :]
        elif tag == "blockquote" and "expandable" in attrs:
            entry["type"] = "expandable_blockquote"
        stack.append(entry)
    if stack:
        raise _ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1]["tag"]}"')
    return out.text(), ents


_MD2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MD2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def _parse_markdown_v2(src: str) -> tuple[str, list[dict]]:
    out, stack, ents = _Out(), [], []
    boff = lambda i: len(src[:i].encode())  # noqa: E731
    i, n = 0, len(src)
    nxt = lambda k: src[k] if k < n else ""  # noqa: E731
    quote_start: int | None = None
    while i < n:
        c = src[i]
        top = stack[-1]["type"] if stack else None
        line_start = i == 0 or src[i - 1] == "\n"
        if c == "\\" and i + 1 < n and 0 < ord(src[i + 1]) <= 126:
            out.add(src[i + 1])
            i += 2
            continue
        if c == ">" and line_start and top not in ("code", "pre"):
            if quote_start is None:
                quote_start = out.pos
            i += 1
            continue
        if c == "\n" and quote_start is not None and nxt(i + 1) != ">":
            if out.pos > quote_start:
                ents.append({"type": "blockquote", "offset": quote_start, "length": out.pos - quote_start})
            quote_start = None
        reserved = "`" if top in ("code", "pre") else _MD2_RESERVED
        if c not in reserved:
            out.add(c)
            i += 1
            continue
        end = {
            "bold": c == "*",
            "italic": c == "_" and nxt(i + 1) != "_",
            "underline": c == "_" and nxt(i + 1) == "_",
            "strikethrough": c == "~",
            "spoiler": c == "|" and nxt(i + 1) == "|",
            "code": c == "`",
            "pre": c == "`" and src[i + 1 : i + 3] == "``",
            "text_link": c == "]",
            "custom_emoji": c == "]",
        }.get(top, False)
        if not end:
            entry: dict[str, Any] = {"offset": out.pos, "chars": out.chars, "byte": boff(i)}
            if c == "_":
                entry["type"] = "underline" if nxt(i + 1) == "_" else "italic"
                i += 2 if entry["type"] == "underline" else 1
            elif c == "*":
                entry["type"] = "bold"
                i += 1
            elif c == "~":
                entry["type"] = "strikethrough"
                i += 1
            elif c == "|" and nxt(i + 1) == "|":
                entry["type"] = "spoiler"
                i += 2
            elif c == "[":
                entry["type"] = "text_link"
                i += 1
            elif c == "!" and nxt(i + 1) == "[":
                entry["type"] = "custom_emoji"
                i += 2
            elif c == "`" and src[i + 1 : i + 3] == "``":
                entry["type"] = "pre"
                i += 3
                j = i
                while j < n and not src[j].isspace() and src[j] != "`":
                    j += 1
                if j != i and j < n and src[j] != "`":
                    entry["language"] = src[i:j]
                    i = j
                if nxt(i) in ("\n", "\r"):
                    i += 2 if nxt(i + 1) in ("\n", "\r") and nxt(i + 1) != nxt(i) else 1
            elif c == "`":
                entry["type"] = "code"
                i += 1
            else:
                raise _ParseError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
            stack.append(entry)
            continue
        entry = stack.pop()
        kind = entry["type"]
        i += {"underline": 2, "spoiler": 2, "pre": 3}.get(kind, 1)
        ent = {"type": kind, "offset": entry["offset"], "length": out.pos - entry["offset"]}
        if kind in ("text_link", "custom_emoji"):
            url = None
            if nxt(i) == "(":
                j, buf = i + 1, []
                while j < n and src[j] != ")":
                    if src[j] == "\\" and j + 1 < n:
                        j += 1
                    buf.append(src[j])
                    j += 1
                if j >= n:
                    raise _ParseError(f"Can't find end of a URL at byte offset {boff(i + 1)}")
                url = "".join(buf)
                i = j + 1
            if kind == "custom_emoji":
                if not url or not url.startswith("tg://emoji?id="):
                    raise _ParseError("Custom emoji entity must contain a tg://emoji URL")
                ent["custom_emoji_id"] = url[len("tg://emoji?id=") :]
            else:
                if url is None:
                    url = out.text()[entry["chars"] :]  # the link text is the URL
                if not url or not re.search(r"[.:]", url):  # Telegram drops invalid URLs
                    continue
                ent["url"] = url
        if entry.get("language"):
            ent["language"] = entry["language"]
        if ent["length"] > 0:
            ents.append(ent)
    if stack:
        e = stack[-1]
        raise _ParseError(f"Can't find end of {_MD2_NAMES[e['type']]} entity at byte offset {e['byte']}")
    if quote_start is not None and out.pos > quote_start:
        ents.append({"type": "blockquote", "offset": quote_start, "length": out.pos - quote_start})
    return out.text(), ents


def _parse_markdown(src: str) -> tuple[str, list[dict]]:
    """Legacy ``Markdown`` (v1): no nesting, escapes only _ * ` [."""
    out, ents = _Out(), []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.add(src[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.add(c)
            i += 1
            continue
        start_byte = len(src[:i].encode())
        is_pre = c == "`" and src[i + 1 : i + 3] == "``"
        end_char = "]" if c == "[" else c
        language = None
        if is_pre:
            i += 3
            j = i
            while j < n and not src[j].isspace() and src[j] != "`":
                j += 1
            if j != i and j < n and src[j] != "`":
                language = src[i:j]
                i = j
            if i < n and src[i] == "\n":
                i += 1
        else:
            i += 1
        begin = out.pos
        while i < n and (src[i] != end_char or (is_pre and src[i : i + 3] != "```")):
            out.add(src[i])
            i += 1
        if i >= n:
            raise _ParseError(f"Can't find end of the entity starting at byte offset {start_byte}")
        i += 3 if is_pre else 1
        ent: dict[str, Any] = {"offset": begin, "length": out.pos - begin}
        if c == "[":
            ent["type"] = "text_link"
            if i < n and src[i] == "(":
                j = src.find(")", i)
                if j < 0:
                    raise _ParseError(f"Can't find end of a URL at byte offset {len(src[:i].encode())}")
                ent["url"] = src[i + 1 : j]
                i = j + 1
            else:
                continue
        else:
            ent["type"] = {"_": "italic", "*": "bold", "`": "pre" if is_pre else "code"}[c]
            if language:
                ent["language"] = language
        if ent["length"] > 0:
            ents.append(ent)
    return out.text(), ents


_AUTO_COMMAND = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")
_AUTO_URL = re.compile(r"(?<![\w@])https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")


def _auto_entities(text: str, existing: list[dict]) -> list[dict]:
    """bot_command and url entities Telegram detects in any text."""
    found = []
    blocked = [(e["offset"], e["offset"] + e["length"]) for e in existing if e["type"] in ("code", "pre", "text_link")]
    for typ, rx in (("bot_command", _AUTO_COMMAND), ("url", _AUTO_URL)):
        for m in rx.finditer(text):
            off, length = _u16(text[: m.start()]), _u16(m.group(0))
            if any(a < off + length and off < b for a, b in blocked):
                continue
            found.append({"type": typ, "offset": off, "length": length})
    return found


def render_text(text: str, parse_mode: str | None = None, entities: list[dict] | None = None) -> tuple[str, list[dict]]:
    """Turns (text, parse_mode/entities) into Telegram's (plain text, entities).

    Raises ApiError like Telegram for malformed markup.  Leading/trailing
    whitespace is trimmed (entities shifted), as Telegram does.
    """
    if entities is not None:
        plain, ents = text, [dict(e) for e in entities]
    elif parse_mode:
        mode = str(parse_mode).lower()
        parser = {"html": _parse_html, "markdownv2": _parse_markdown_v2, "markdown": _parse_markdown}.get(mode)
        if parser is None:
            raise _bad("unsupported parse_mode")
        try:
            plain, ents = parser(text)
        except _ParseError as exc:
            raise _bad(f"can't parse entities: {exc}") from None
    else:
        plain, ents = text, []
    stripped_left = plain.lstrip()
    shift = _u16(plain) - _u16(stripped_left)
    plain = stripped_left.rstrip()
    total = _u16(plain)
    fixed = []
    for e in ents:
        start = max(0, e["offset"] - shift)
        end = min(total, e["offset"] + e["length"] - shift)
        if end > start:
            fixed.append({**e, "offset": start, "length": end - start})
    fixed += _auto_entities(plain, fixed)
    fixed.sort(key=lambda e: (e["offset"], -e["length"]))
    return plain, fixed


# --------------------------------------------------------------------------- users
class FakeUser:
    """A Telegram user in a private chat with the bot.  Get one from ``server.user()``."""

    def __init__(
        self,
        server: FakeTelegram,
        user_id: int,
        first_name: str,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
    ):
        self.server = server
        self.id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.blocked = False
        self.last_message: dict | None = None  # the last message this user sent (API dict)

    @property
    def chat_id(self) -> int:
        return self.id

    def as_dict(self) -> dict:
        d = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        if self.language_code:
            d["language_code"] = self.language_code
        return d

    def chat_dict(self) -> dict:
        d = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        return d

    # --- actions: each enqueues one Update
    def send_text(self, text: str, reply_to: dict | int | None = None) -> dict:
        """Sends a text message; returns the Telegram Message dict."""
        plain, ents = render_text(text)
        if not plain:
            raise ValueError("Telegram does not deliver empty messages")
        return self.server._user_message(
            self, {"text": plain, **({"entities": ents} if ents else {})}, reply_to=reply_to
        )

    def send_document(
        self,
        data: bytes,
        filename: str = "file.bin",
        mime: str | None = "application/zip",
        caption: str | None = None,
        file_size: int | None = None,
        reply_to: dict | int | None = None,
    ) -> str:
        """Sends a file as a document; returns its file_id.

        ``file_size`` overrides the size Telegram reports (to test the 20 MB
        getFile limit without allocating 20 MB).
        """
        rec = self.server._new_file(
            "document", bytes(data), owner=f"user:{self.id}", filename=filename, mime_type=mime, size=file_size
        )
        doc = self.server._document_dict(rec)
        self.server._user_message(self, {"document": doc, **_caption_fields(caption)}, reply_to=reply_to)
        return rec.file_id

    def send_photo(self, data: bytes, caption: str | None = None, reply_to: dict | int | None = None) -> str:
        """Sends a compressed photo; returns the file_id of the largest size (the original bytes)."""
        try:
            sizes = self.server._photo_files(bytes(data), owner=f"user:{self.id}")
        except ValueError as exc:
            raise ValueError(f"send_photo needs real image bytes: {exc}") from None
        self.server._user_message(
            self,
            {"photo": [self.server._photo_size_dict(r) for r in sizes], **_caption_fields(caption)},
            reply_to=reply_to,
        )
        return sizes[-1].file_id

    def press(self, message: dict | int, callback_data: str) -> str:
        """Presses the inline button with ``callback_data`` on a bot message; returns the query id."""
        return self.server._press(self, message, callback_data)

    def click(self, message: dict | int, text: str) -> str:
        """Presses the inline button labelled ``text``."""
        for label, data in self.server.buttons(self.server._current(self.id, message)):
            if label == text:
                if data is None:
                    raise AssertionError(f"button {text!r} has no callback_data")
                return self.press(message, data)
        raise AssertionError(f"no button {text!r} on message: {self.server.buttons(message)}")

    def block(self) -> None:
        """The user blocks the bot: sends to this chat fail with 403."""
        self.blocked = True

    def unblock(self) -> None:
        self.blocked = False

    def __repr__(self) -> str:
        return f"FakeUser({self.id}, {self.first_name!r})"


def _caption_fields(caption: str | None) -> dict:
    if not caption:
        return {}
    plain, ents = render_text(caption)
    return {"caption": plain, **({"caption_entities": ents} if ents else {})}


# --------------------------------------------------------------------------- server
class FakeTelegram:
    """HTTP fake of the Telegram Bot API for one bot token (see module docstring)."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_first_name: str = "DetBot",
        bot_username: str = "detbot_test_bot",
        download_limit: int = 20 * MB,
        upload_limit: int = 50 * MB,
        photo_upload_limit: int = 10 * MB,
        flood_after: int | None = None,
        flood_retry_after: int = 1,
    ):
        self.token = token
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        head = token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 777000
        self.bot_first_name = bot_first_name
        self.bot_username = bot_username
        self.download_limit = download_limit
        self.upload_limit = upload_limit
        self.photo_upload_limit = photo_upload_limit
        self.flood_after = flood_after
        self.flood_retry_after = flood_retry_after

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._closing = False

        self._users: dict[int, FakeUser] = {}
        self._next_message_id: dict[int, int] = {}
        self._messages: dict[tuple[int, int], dict] = {}  # (chat_id, message_id) -> record
        self._files: dict[str, _File] = {}
        self._files_by_path: dict[str, _File] = {}
        self._file_counter = itertools.count(1)
        self._updates: list[dict] = []  # unconfirmed
        self._update_ids = itertools.count(100_000_001)
        self._poll_waiters: list[asyncio.Future] = []
        self._allowed_updates: list[str] | None = None
        self._webhook_url = ""
        self._polls_since_reset = 0
        self._events: list[dict] = []
        self._callbacks: dict[str, dict] = {}
        self._chat_actions: list[tuple[int, str, float]] = []
        self._commands: dict[tuple[str, str], list[dict]] = {}
        self._flood: dict[int, dict] = {}
        self._fail_next: dict[str, list[ApiError]] = {}
        self._requests: list[ApiCall] = []
        self.get_file_counts: Counter[str] = Counter()
        self.download_counts: Counter[str] = Counter()
        self.conflicts = 0

        self._methods: dict[str, tuple[str, Callable]] = {}
        for name in (
            "getMe",
            "logOut",
            "close",
            "deleteWebhook",
            "setWebhook",
            "getWebhookInfo",
            "setMyCommands",
            "getMyCommands",
            "deleteMyCommands",
            "setMyDescription",
            "setMyShortDescription",
            "setMyName",
            "setChatMenuButton",
            "getChat",
            "getUpdates",
            "sendMessage",
            "editMessageText",
            "editMessageCaption",
            "editMessageReplyMarkup",
            "deleteMessage",
            "deleteMessages",
            "answerCallbackQuery",
            "sendChatAction",
            "sendPhoto",
            "sendDocument",
            "getFile",
        ):
            handler = getattr(self, "_m_" + name, None) or self._m_noop
            self._methods[name.lower()] = (name, handler)

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    def env(self, token_var: str | None = None) -> dict[str, str]:
        """Environment for the bot process (TELEGRAM_BASE_URL, TELEGRAM_BASE_FILE_URL)."""
        env = {"TELEGRAM_BASE_URL": self.base_url, "TELEGRAM_BASE_FILE_URL": self.base_file_url}
        if token_var:
            env[token_var] = self.token
        return env

    def start(self) -> FakeTelegram:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._thread_main, name="FakeTelegram", daemon=True)
        self._thread.start()
        if not self._started.wait(15):
            raise RuntimeError("FakeTelegram did not start")
        if self._startup_error is not None:
            raise RuntimeError("FakeTelegram failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._ashutdown(), loop).result(10)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._astart())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._startup_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _astart(self) -> None:
        app = web.Application(client_max_size=self.upload_limit + 4 * MB)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _ashutdown(self) -> None:
        with self._lock:
            self._closing = True
        self._wake_pollers("closing")
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ HTTP layer
    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return self._error_response(ApiError(404, "Not Found"))

    @staticmethod
    def _error_response(err: ApiError) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
        if err.retry_after is not None:
            body["parameters"] = {"retry_after": err.retry_after}
        return web.json_response(body, status=err.code)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: self._coerce(k, v) for k, v in request.query.items()}
        if not request.body_exists:
            return params
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad("can't parse JSON object") from None
            if isinstance(body, dict):
                params.update(body)
            return params
        form = await request.post()
        uploads: dict[str, Upload] = {}
        for key, value in form.items():
            if isinstance(value, web.FileField):
                uploads[key] = Upload(value.filename, value.content_type, value.file.read())
            else:
                params[key] = self._coerce(key, value)
        for key, upload in uploads.items():
            if key not in params:
                params[key] = upload
        for key, value in list(params.items()):  # attach://name references
            if isinstance(value, str) and value.startswith("attach://"):
                name = value[len("attach://") :]
                if name in uploads:
                    params[key] = uploads[name]
        return params

    @staticmethod
    def _coerce(key: str, value: Any) -> Any:
        if key in STRING_PARAMS or not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value

    async def _handle_api(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        raw_method = request.match_info["method"]
        canonical, handler = self._methods.get(raw_method.lower(), (raw_method, None))
        call = ApiCall(
            method=canonical, params={}, time=time.time(), http_method=request.method, token_ok=token == self.token
        )
        with self._lock:
            self._requests.append(call)
        _REQUEST.set(request)
        try:
            try:
                call.params = await self._read_params(request)
            except web.HTTPRequestEntityTooLarge:
                raise ApiError(413, "Request Entity Too Large") from None
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            self._check_injected(raw_method.lower())
            self._check_flood(raw_method.lower(), call.params)
            result = handler(call.params)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as err:
            with self._lock:
                call.status, call.error, call.done_time = err.code, err.description, time.time()
                self._cond.notify_all()
            return self._error_response(err)
        except Exception as exc:  # a bug in the fake: make it loud
            with self._lock:
                call.status, call.error, call.done_time = 500, repr(exc), time.time()
                self._cond.notify_all()
            return web.json_response(
                {"ok": False, "error_code": 500, "description": f"Internal Server Error: {exc!r}"}, status=500
            )
        with self._lock:
            call.status, call.result, call.done_time = 200, result, time.time()
            self._cond.notify_all()
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        with self._lock:
            rec = self._files_by_path.get(path)
            if request.match_info["token"] != self.token or rec is None:
                return self._error_response(ApiError(404, "Not Found"))
            self.download_counts[rec.file_id] += 1
            self._cond.notify_all()
            data = rec.data
        return web.Response(body=data, content_type="application/octet-stream")

    def _check_injected(self, method: str) -> None:
        with self._lock:
            queue = self._fail_next.get(method)
            if queue:
                raise queue.pop(0)

    def _check_flood(self, method: str, params: dict) -> None:
        if not self.flood_after or method not in FLOOD_METHODS:
            return
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            return
        now = time.monotonic()
        with self._lock:
            st = self._flood.setdefault(chat_id, {"count": 0, "until": 0.0})
            if now < st["until"]:
                retry = max(1, int(st["until"] - now + 0.999))
                raise ApiError(429, f"Too Many Requests: retry after {retry}", retry_after=retry)
            if st["count"] >= self.flood_after:
                st["count"] = 0
                st["until"] = now + self.flood_retry_after
                raise ApiError(
                    429, f"Too Many Requests: retry after {self.flood_retry_after}", retry_after=self.flood_retry_after
                )
            st["count"] += 1

    # ------------------------------------------------------------------ helpers (locked)
    def _bot_user(self) -> dict:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_first_name, "username": self.bot_username}

    def _chat(self, params: dict, key: str = "chat_id") -> FakeUser:
        chat_id = params.get(key)
        if chat_id in (None, ""):
            raise _bad("chat_id is empty")
        if isinstance(chat_id, str):
            try:
                chat_id = int(chat_id)
            except ValueError:
                raise _bad("chat not found") from None
        user = self._users.get(chat_id)
        if user is None:
            raise _bad("chat not found")
        return user

    def _writable_chat(self, params: dict) -> FakeUser:
        user = self._chat(params)
        if user.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return user

    def _alloc_message_id(self, chat_id: int) -> int:
        mid = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = mid + 1
        return mid

    def _new_file(
        self,
        kind: str,
        data: bytes,
        owner: str,
        filename: str | None = None,
        mime_type: str | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> _File:
        with self._lock:
            n = next(self._file_counter)
            prefix = {"photo": "AgACAgIAAxkBAAI", "document": "BQACAgIAAxkBAAI"}[kind]
            file_id = f"{prefix}{n:06d}{secrets.token_urlsafe(24)}"
            unique = f"AQAD{n:06d}{secrets.token_urlsafe(6)}"
            rec = _File(
                file_id,
                unique,
                kind,
                data,
                size if size is not None else len(data),
                owner,
                filename,
                mime_type,
                width,
                height,
            )
            self._files[file_id] = rec
            return rec

    def _photo_files(self, data: bytes, owner: str) -> list[_File]:
        """PhotoSize files for an image: a real 90px JPEG thumbnail, then the original."""
        if Image is None:
            return [self._new_file("photo", data, owner, width=1, height=1)]
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                width, height = img.size
                sizes = []
                if max(width, height) > 90:
                    thumb = img.convert("RGB")
                    thumb.thumbnail((90, 90))
                    buf = io.BytesIO()
                    thumb.save(buf, "JPEG", quality=80)
                    sizes.append((buf.getvalue(), thumb.size))
        except Exception as exc:
            raise ValueError(f"not an image ({exc})") from None
        out = [self._new_file("photo", d, owner, width=w, height=h) for d, (w, h) in sizes]
        out.append(self._new_file("photo", data, owner, width=width, height=height))
        for f in out:
            f.group = out[-1].file_id
        return out

    @staticmethod
    def _photo_size_dict(rec: _File) -> dict:
        return {
            "file_id": rec.file_id,
            "file_unique_id": rec.file_unique_id,
            "width": rec.width or 0,
            "height": rec.height or 0,
            "file_size": rec.size,
        }

    @staticmethod
    def _document_dict(rec: _File) -> dict:
        d = {"file_id": rec.file_id, "file_unique_id": rec.file_unique_id, "file_size": rec.size}
        if rec.filename:
            d["file_name"] = rec.filename
        if rec.mime_type:
            d["mime_type"] = rec.mime_type
        return d

    def _api_message(self, rec: dict, with_reply: bool = True) -> dict:
        user = self._users[rec["chat_id"]]
        m: dict[str, Any] = {
            "message_id": rec["message_id"],
            "from": self._bot_user() if rec["from_bot"] else user.as_dict(),
            "chat": user.chat_dict(),
            "date": rec["date"],
        }
        if rec.get("edit_date"):
            m["edit_date"] = rec["edit_date"]
        reply_id = rec.get("reply_to_message_id")
        if with_reply and reply_id:
            target = self._messages.get((rec["chat_id"], reply_id))
            if target is not None and not target["deleted"]:
                m["reply_to_message"] = self._api_message(target, with_reply=False)
        for key in ("text", "entities", "photo", "document", "caption", "caption_entities"):
            if rec.get(key):
                m[key] = copy.deepcopy(rec[key])
        markup = rec.get("reply_markup")
        if markup and "inline_keyboard" in markup:
            m["reply_markup"] = copy.deepcopy(markup)
        return m

    def _snapshot(self, rec: dict, event: str) -> dict:
        snap = {k: v for k, v in rec.items() if k not in ("history",)}
        snap = copy.deepcopy(snap)
        snap["history"] = copy.deepcopy(rec["history"])
        snap["event"] = event
        snap["api"] = self._api_message(rec)
        return snap

    def _emit(self, rec: dict, event: str) -> None:
        snap = self._snapshot(rec, event)
        snap["seq"] = len(self._events) + 1
        self._events.append(snap)
        self._cond.notify_all()

    def _enqueue_update(self, payload: dict) -> dict:
        with self._lock:
            update = {"update_id": next(self._update_ids), **payload}
            self._updates.append(update)
            self._cond.notify_all()
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._wake_pollers, "update")
        return update

    def _wake_pollers(self, reason: str) -> None:
        with self._lock:
            waiters, self._poll_waiters = self._poll_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(reason)

    def _resolve_reply(self, chat_id: int, params: dict) -> int | None:
        rp = params.get("reply_parameters")
        if isinstance(rp, dict):
            target, allow = rp.get("message_id"), rp.get("allow_sending_without_reply", False)
            if rp.get("chat_id") not in (None, chat_id, str(chat_id)):
                raise _bad("message to be replied not found")
        else:
            target = params.get("reply_to_message_id")
            allow = params.get("allow_sending_without_reply", False)
        if target in (None, "", 0):
            return None
        try:
            target = int(target)
        except (TypeError, ValueError):
            raise _bad("message to be replied not found") from None
        rec = self._messages.get((chat_id, target))
        if rec is None or rec["deleted"]:
            if allow:
                return None
            raise _bad("message to be replied not found")
        return target

    @staticmethod
    def _check_markup(markup: Any) -> dict | None:
        if markup in (None, ""):
            return None
        if isinstance(markup, str):
            try:
                markup = json.loads(markup)
            except ValueError:
                raise _bad("can't parse reply keyboard markup JSON object") from None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays')
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                        raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
                    actions = set(button) - {"text"}
                    if not actions:
                        raise _bad(
                            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                        )
                    if "callback_data" in button:
                        data = button["callback_data"]
                        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                            raise _bad("BUTTON_DATA_INVALID")
            if not any(rows):
                return None
        return markup

    def _new_bot_message(
        self, user: FakeUser, method: str, fields: dict, params: dict, extra: dict | None = None
    ) -> dict:
        reply_to = self._resolve_reply(user.id, params)
        markup = self._check_markup(params.get("reply_markup"))
        rec = {
            "message_id": self._alloc_message_id(user.id),
            "chat_id": user.id,
            "from_bot": True,
            "method": method,
            "date": int(time.time()),
            "edit_date": None,
            "kind": fields.pop("kind"),
            "text": None,
            "entities": None,
            "caption": None,
            "caption_entities": None,
            "photo": None,
            "document": None,
            "raw_text": None,
            "parse_mode": params.get("parse_mode"),
            "reply_markup": markup,
            "reply_to_message_id": reply_to,
            "bytes": None,
            "filename": None,
            "mime_type": None,
            "file_id": None,
            "file_size": None,
            "deleted": False,
            "history": [],
        }
        rec.update(fields)
        rec.update(extra or {})
        self._messages[(user.id, rec["message_id"])] = rec
        self._emit(rec, "sent")
        return self._api_message(rec)

    def _message_for_edit(self, params: dict) -> dict:
        if params.get("inline_message_id"):
            raise _bad("message to edit not found")  # inline mode is not faked
        user = self._chat(params)
        try:
            mid = int(params.get("message_id"))
        except (TypeError, ValueError):
            raise _bad("message identifier is not specified") from None
        rec = self._messages.get((user.id, mid))
        if rec is None or rec["deleted"]:
            raise _bad("message to edit not found")
        if not rec["from_bot"]:
            raise _bad("message can't be edited")
        return rec

    @staticmethod
    def _inline_markup(markup: dict | None) -> dict | None:
        return markup if markup and "inline_keyboard" in markup else None

    def _apply_edit(self, rec: dict, changes: dict) -> dict:
        rec["history"].append(
            {
                "text": rec["text"],
                "entities": copy.deepcopy(rec["entities"]),
                "caption": rec["caption"],
                "reply_markup": copy.deepcopy(rec["reply_markup"]),
                "date": rec["edit_date"] or rec["date"],
            }
        )
        rec.update(changes)
        rec["edit_date"] = int(time.time())
        self._emit(rec, "edited")
        return self._api_message(rec)

    def _render_caption(self, params: dict) -> tuple[str | None, list[dict] | None]:
        caption = params.get("caption")
        if caption in (None, ""):
            return None, None
        plain, ents = render_text(str(caption), params.get("parse_mode"), params.get("caption_entities"))
        if _u16(plain) > 1024:
            raise _bad("message caption is too long")
        return plain or None, ents or None

    # ------------------------------------------------------------------ API methods
    def _m_noop(self, p: dict) -> bool:
        return True

    def _m_getMe(self, p: dict) -> dict:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _drop_pending(self, p: dict) -> None:
        if p.get("drop_pending_updates") in (True, "true", "True", 1):
            self._updates.clear()

    def _m_deleteWebhook(self, p: dict) -> bool:
        with self._lock:
            self._webhook_url = ""
            self._drop_pending(p)
            self._polls_since_reset = 0
        return True

    def _m_setWebhook(self, p: dict) -> bool:
        with self._lock:
            self._webhook_url = str(p.get("url") or "")
            self._drop_pending(p)
            self._polls_since_reset = 0
        self._wake_pollers("webhook")
        return True

    def _m_getWebhookInfo(self, p: dict) -> dict:
        with self._lock:
            return {
                "url": self._webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }

    @staticmethod
    def _commands_key(p: dict) -> tuple[str, str]:
        scope = p.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(p.get("language_code") or "")

    def _m_setMyCommands(self, p: dict) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        for c in commands:
            name = c.get("command", "") if isinstance(c, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name.lstrip("/")):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        with self._lock:
            self._commands[self._commands_key(p)] = [
                {"command": c["command"].lstrip("/"), "description": c["description"]} for c in commands
            ]
        return True

    def _m_getMyCommands(self, p: dict) -> list:
        with self._lock:
            return copy.deepcopy(self._commands.get(self._commands_key(p), []))

    def _m_deleteMyCommands(self, p: dict) -> bool:
        with self._lock:
            self._commands.pop(self._commands_key(p), None)
        return True

    def _m_getChat(self, p: dict) -> dict:
        with self._lock:
            user = self._chat(p)
            return {
                **user.chat_dict(),
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                },
            }

    async def _m_getUpdates(self, p: dict) -> list:
        loop = asyncio.get_running_loop()

        def num(key: str, default: float) -> float:
            value = p.get(key, default)
            try:
                return float(value if value not in (None, "") else default)
            except (TypeError, ValueError):
                raise _bad(f"wrong parameter {key}") from None

        offset, limit, timeout = int(num("offset", 0)), int(num("limit", 100)), num("timeout", 0)
        limit = min(max(limit, 1), 100)
        with self._lock:
            if self._webhook_url:
                raise ApiError(409, CONFLICT_WEBHOOK)
            if "allowed_updates" in p:
                allowed = p["allowed_updates"]
                self._allowed_updates = list(allowed) if isinstance(allowed, list) else None
            stale, self._poll_waiters = self._poll_waiters, []
            self._polls_since_reset += 1
            self._cond.notify_all()
        for fut in stale:  # a newer getUpdates terminates the pending one
            if not fut.done():
                fut.set_result("conflict")
        deadline = loop.time() + max(timeout, 0)
        while True:
            with self._lock:
                if offset > 0:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                elif offset < 0:
                    self._updates = self._updates[offset:]
                allowed = self._allowed_updates
                keep = []
                for u in self._updates:
                    kind = next(k for k in u if k != "update_id")
                    if (kind in allowed) if allowed else (kind not in OPT_IN_UPDATES):
                        keep.append(u)
                self._updates = keep
                batch = copy.deepcopy(self._updates[:limit])
                remaining = deadline - loop.time()
                if batch or remaining <= 0 or self._closing:
                    self._cond.notify_all()
                    return batch
                fut = loop.create_future()
                self._poll_waiters.append(fut)
            try:
                reason = await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                reason = "timeout"
            finally:
                with self._lock:
                    if fut in self._poll_waiters:
                        self._poll_waiters.remove(fut)
            if reason == "conflict":
                # An abandoned long poll (PTB cancels it on shutdown) is terminated
                # too, but nobody is there to see it: only count live pollers.
                await asyncio.sleep(0.05)
                transport = _REQUEST.get().transport
                if transport is None or transport.is_closing():
                    return []
                with self._lock:
                    self.conflicts += 1
                raise ApiError(409, CONFLICT_POLL)
            if reason == "webhook":
                raise ApiError(409, CONFLICT_WEBHOOK)

    def _m_sendMessage(self, p: dict) -> dict:
        with self._lock:
            user = self._writable_chat(p)
            text = p.get("text")
            if text in (None, ""):
                raise _bad("message text is empty")
            plain, ents = render_text(str(text), p.get("parse_mode"), p.get("entities"))
            if not plain:
                raise _bad("message text is empty")
            if _u16(plain) > 4096:
                raise _bad("message is too long")
            return self._new_bot_message(
                user, "sendMessage", {"kind": "text", "text": plain, "entities": ents or None, "raw_text": str(text)}, p
            )

    def _m_editMessageText(self, p: dict) -> dict:
        with self._lock:
            rec = self._message_for_edit(p)
            text = p.get("text")
            if text in (None, ""):
                raise _bad("message text is empty")
            plain, ents = render_text(str(text), p.get("parse_mode"), p.get("entities"))
            if not plain:
                raise _bad("message text is empty")
            if _u16(plain) > 4096:
                raise _bad("MESSAGE_TOO_LONG")
            if rec["kind"] != "text":
                raise _bad("there is no text in the message to edit")
            markup = self._inline_markup(self._check_markup(p.get("reply_markup")))
            if (
                plain == rec["text"]
                and (ents or None) == rec["entities"]
                and markup == self._inline_markup(rec["reply_markup"])
            ):
                raise ApiError(400, NOT_MODIFIED)
            return self._apply_edit(
                rec,
                {
                    "text": plain,
                    "entities": ents or None,
                    "raw_text": str(text),
                    "parse_mode": p.get("parse_mode"),
                    "reply_markup": markup,
                },
            )

    def _m_editMessageCaption(self, p: dict) -> dict:
        with self._lock:
            rec = self._message_for_edit(p)
            if rec["kind"] == "text":
                raise _bad("there is no caption in the message to edit")
            caption, ents = self._render_caption(p)
            markup = self._inline_markup(self._check_markup(p.get("reply_markup")))
            if (
                caption == rec["caption"]
                and ents == rec["caption_entities"]
                and markup == self._inline_markup(rec["reply_markup"])
            ):
                raise ApiError(400, NOT_MODIFIED)
            return self._apply_edit(rec, {"caption": caption, "caption_entities": ents, "reply_markup": markup})

    def _m_editMessageReplyMarkup(self, p: dict) -> dict:
        with self._lock:
            rec = self._message_for_edit(p)
            markup = self._inline_markup(self._check_markup(p.get("reply_markup")))
            if markup == self._inline_markup(rec["reply_markup"]):
                raise ApiError(400, NOT_MODIFIED)
            return self._apply_edit(rec, {"reply_markup": markup})

    def _delete(self, user: FakeUser, mid: Any) -> None:
        try:
            rec = self._messages.get((user.id, int(mid)))
        except (TypeError, ValueError):
            rec = None
        if rec is None or rec["deleted"]:
            raise _bad("message to delete not found")
        rec["deleted"] = True
        if rec["from_bot"]:
            self._emit(rec, "deleted")

    def _m_deleteMessage(self, p: dict) -> bool:
        with self._lock:
            self._delete(self._chat(p), p.get("message_id"))
            return True

    def _m_deleteMessages(self, p: dict) -> bool:
        with self._lock:
            user = self._chat(p)
            for mid in p.get("message_ids") or []:
                try:
                    self._delete(user, mid)
                except ApiError:
                    pass
            return True

    def _m_answerCallbackQuery(self, p: dict) -> bool:
        with self._lock:
            query = self._callbacks.get(str(p.get("callback_query_id", "")))
            if query is None or query["answered"]:
                raise _bad("query is too old and response timeout expired or query ID is invalid")
            query["answered"] = True
            query["answer"] = {k: v for k, v in p.items() if k != "callback_query_id"}
            self._cond.notify_all()
            return True

    def _m_sendChatAction(self, p: dict) -> bool:
        with self._lock:
            user = self._writable_chat(p)
            action = p.get("action")
            if action not in CHAT_ACTIONS:
                raise _bad("wrong parameter action in request")
            self._chat_actions.append((user.id, action, time.time()))
            return True

    def _input_file(self, p: dict, key: str, kind: str, user: FakeUser) -> tuple[list[_File], Upload | None]:
        """Resolves an upload or file_id into stored files (a list for photo sizes)."""
        value = p.get(key)
        if isinstance(value, Upload):
            limit = self.photo_upload_limit if kind == "photo" else self.upload_limit
            if not value.data:
                raise _bad("file must be non-empty")
            if len(value.data) > limit:
                raise ApiError(413, "Request Entity Too Large")
            if kind == "photo":
                try:
                    files = self._photo_files(value.data, owner="bot")
                except ValueError:
                    raise _bad("IMAGE_PROCESS_FAILED") from None
                w, h = files[-1].width or 1, files[-1].height or 1
                if w + h > 10000 or max(w, h) / max(1, min(w, h)) > 20:
                    raise _bad("PHOTO_INVALID_DIMENSIONS")
                return files, value
            mime = value.mime_type or mimetypes.guess_type(value.filename or "")[0]
            return [
                self._new_file(
                    "document", value.data, "bot", filename=value.filename, mime_type=mime or "application/octet-stream"
                )
            ], value
        if value in (None, ""):
            raise _bad(f"there is no {key} in the request")
        if not isinstance(value, str):
            raise _bad("wrong type of the web page content")
        rec = self._files.get(value)
        if rec is None:
            raise _bad("wrong file identifier/HTTP URL specified")
        if rec.kind != kind:
            raise _bad("type of file mismatch")
        if kind == "photo":
            group = [f for f in self._files.values() if rec.group and f.group == rec.group]
            return sorted(group or [rec], key=lambda f: (f.width or 0) * (f.height or 0)), None
        return [rec], None

    def _send_media(self, p: dict, kind: str, method: str) -> dict:
        with self._lock:
            user = self._writable_chat(p)
            files, upload = self._input_file(p, kind, kind, user)
            caption, cap_ents = self._render_caption(p)
            main = files[-1]
            fields = {
                "kind": kind,
                "caption": caption,
                "caption_entities": cap_ents,
                "raw_text": p.get("caption"),
                "bytes": main.data,
                "file_id": main.file_id,
                "file_size": main.size,
                "filename": upload.filename if upload else main.filename,
                "mime_type": (upload.mime_type if upload else None) or main.mime_type,
            }
            if kind == "photo":
                fields["photo"] = [self._photo_size_dict(f) for f in files]
            else:
                fields["document"] = self._document_dict(main)
            return self._new_bot_message(user, method, fields, p)

    def _m_sendPhoto(self, p: dict) -> dict:
        return self._send_media(p, "photo", "sendPhoto")

    def _m_sendDocument(self, p: dict) -> dict:
        return self._send_media(p, "document", "sendDocument")

    def _m_getFile(self, p: dict) -> dict:
        with self._lock:
            file_id = str(p.get("file_id") or "")
            self.get_file_counts[file_id] += 1
            self._cond.notify_all()
            rec = self._files.get(file_id)
            if rec is None:
                raise _bad("invalid file_id")
            if rec.size > self.download_limit:
                raise _bad("file is too big")
            if rec.file_path is None:
                n = len(self._files_by_path) + 1
                if rec.kind == "photo":
                    rec.file_path = f"photos/file_{n}.jpg"
                else:
                    ext = ""
                    if rec.filename and "." in rec.filename:
                        ext = "." + rec.filename.rsplit(".", 1)[1]
                    rec.file_path = f"documents/file_{n}{ext}"
                self._files_by_path[rec.file_path] = rec
            return {
                "file_id": rec.file_id,
                "file_unique_id": rec.file_unique_id,
                "file_size": rec.size,
                "file_path": rec.file_path,
            }

    # ------------------------------------------------------------------ user side (test thread)
    def user(
        self,
        user_id: int,
        first_name: str = "Ann",
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> FakeUser:
        """The user (and private chat) ``user_id``; created on first call, then reused."""
        with self._lock:
            u = self._users.get(user_id)
            if u is None:
                u = FakeUser(self, user_id, first_name, last_name, username, language_code)
                self._users[user_id] = u
            return u

    def _user_message(self, user: FakeUser, content: dict, reply_to: dict | int | None) -> dict:
        with self._lock:
            mid = self._alloc_message_id(user.id)
            reply_id = reply_to["message_id"] if isinstance(reply_to, dict) else reply_to
            rec = {
                "message_id": mid,
                "chat_id": user.id,
                "from_bot": False,
                "date": int(time.time()),
                "edit_date": None,
                "kind": next(k for k in ("text", "photo", "document") if k in content),
                "reply_to_message_id": reply_id,
                "reply_markup": None,
                "deleted": False,
                "history": [],
                **content,
            }
            self._messages[(user.id, mid)] = rec
            message = self._api_message(rec)
            user.last_message = message
        self._enqueue_update({"message": message})
        return message

    def _current(self, chat_id: int, message: dict | int) -> dict:
        if isinstance(message, dict):
            mid = message["message_id"]
        else:  # a message_id, or a telegram.Message
            mid = int(getattr(message, "message_id", message))
        with self._lock:
            rec = self._messages.get((chat_id, mid))
            if rec is None or not rec["from_bot"]:
                raise AssertionError(f"no bot message {mid} in chat {chat_id}")
            return self._snapshot(rec, "current")

    def _press(self, user: FakeUser, message: dict | int, callback_data: str) -> str:
        with self._lock:
            current = self._current(user.id, message)
            if current["deleted"]:
                raise AssertionError(f"message {current['message_id']} was deleted")
            datas = [d for _, d in self.buttons(current)]
            if callback_data not in datas:
                raise AssertionError(
                    f"message {current['message_id']} has no button with callback_data "
                    f"{callback_data!r}; buttons: {self.buttons(current)}"
                )
            query_id = str(secrets.randbits(63))
            self._callbacks[query_id] = {
                "user_id": user.id,
                "message_id": current["message_id"],
                "data": callback_data,
                "answered": False,
                "answer": None,
            }
            payload = {
                "callback_query": {
                    "id": query_id,
                    "from": user.as_dict(),
                    "message": current["api"],
                    "chat_instance": str(-(user.id * 7919 + self.bot_id) % 10**18),
                    "data": callback_data,
                }
            }
        self._enqueue_update(payload)
        return query_id

    # ------------------------------------------------------------------ assertions (test thread)
    def messages(self, chat_id: int | None = None, *, include_deleted: bool = False) -> list[dict]:
        """Current state of the bot's messages (oldest first), optionally in one chat.

        Each dict has: message_id, chat_id, kind ("text"|"photo"|"document"), text/entities,
        caption, reply_markup, reply_to_message_id, bytes/filename/mime_type/file_id/file_size
        (uploads), history (previous versions, oldest first), edit_date, deleted, method,
        raw_text (as the bot sent it, before parse_mode), api (the Telegram Message dict).
        """
        with self._lock:
            recs = sorted(
                (
                    r
                    for r in self._messages.values()
                    if r["from_bot"]
                    and (chat_id is None or r["chat_id"] == chat_id)
                    and (include_deleted or not r["deleted"])
                ),
                key=lambda r: (self._seq_of(r), r["message_id"]),
            )
            return [self._snapshot(r, "current") for r in recs]

    def _seq_of(self, rec: dict) -> int:
        for e in self._events:
            if e["chat_id"] == rec["chat_id"] and e["message_id"] == rec["message_id"]:
                return e["seq"]
        return 0

    def message(self, chat_id: int, message_id: int) -> dict:
        """Current state of one bot message."""
        return self._current(chat_id, message_id)

    def events(self, chat_id: int | None = None, since: int = 0) -> list[dict]:
        """Every send/edit/delete of a bot message as a snapshot with "event" and "seq"."""
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._events
                if e["seq"] > since and (chat_id is None or e["chat_id"] == chat_id)
            ]

    def mark(self) -> int:
        """A cursor for ``wait_for(since=...)``: only later sends/edits are considered."""
        with self._lock:
            return len(self._events)

    def wait_for(
        self, predicate: Callable[[dict], Any], timeout: float = 30.0, *, chat_id: int | None = None, since: int = 0
    ) -> dict:
        """Waits for a bot message send or edit (snapshot) with ``predicate(msg)`` true.

        Scans events after ``since`` (see ``mark()``), oldest first, so an earlier
        matching message is returned at once.  Snapshots have the ``messages()``
        keys plus "event" ("sent"|"edited") and "seq".  A predicate raising
        KeyError/TypeError/etc. counts as False.
        """
        deadline = time.monotonic() + timeout
        checked = since
        with self._cond:
            while True:
                for e in self._events[checked:]:
                    checked = e["seq"]
                    if e["event"] == "deleted" or (chat_id is not None and e["chat_id"] != chat_id):
                        continue
                    try:
                        ok = predicate(e)
                    except Exception:
                        ok = False
                    if ok:
                        return copy.deepcopy(e)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no bot message matched within {timeout}s; last messages:\n"
                        + self._describe(self._events[-12:])
                        + self._describe_failures()
                    )
                self._cond.wait(min(remaining, 0.5))

    def wait_until(self, condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
        """Waits until ``condition()`` (evaluated under the server lock) is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + self._describe_failures())
                self._cond.wait(min(remaining, 0.5))

    def _describe(self, events: Iterable[dict]) -> str:
        lines = []
        for e in events:
            body = (
                e.get("text")
                if e.get("kind") == "text"
                else f"[{e.get('kind')}] {e.get('caption') or e.get('filename') or ''}"
            )
            lines.append(
                f"  #{e['seq']} {e['event']} chat={e['chat_id']} id={e['message_id']}: "
                f"{str(body)[:200]!r} buttons={self.buttons(e)}"
            )
        return "\n".join(lines) or "  (none)"

    def _describe_failures(self) -> str:
        bad = [c for c in self._requests if c.status and c.status >= 400 and c.method != "getUpdates"]
        if not bad:
            return ""
        return "\nfailed API calls:\n" + "\n".join(f"  {c.method} -> {c.status} {c.error}" for c in bad[-8:])

    @staticmethod
    def buttons(message: dict) -> list[tuple[str, str | None]]:
        """(text, callback_data) of every inline button, row by row (callback_data None for URL buttons)."""
        markup = message.get("reply_markup") or (message.get("api") or {}).get("reply_markup") or {}
        return [(b.get("text"), b.get("callback_data")) for row in markup.get("inline_keyboard", []) for b in row]

    @property
    def requests(self) -> list[ApiCall]:
        """Every API request so far (method, params, time, status...), oldest first."""
        with self._lock:
            return list(self._requests)

    def calls(self, method: str) -> list[ApiCall]:
        """Requests to one method (case-insensitive), oldest first."""
        method = method.lower()
        with self._lock:
            return [c for c in self._requests if c.method.lower() == method]

    @property
    def get_updates_calls(self) -> int:
        return len(self.calls("getUpdates"))

    @property
    def polling(self) -> bool:
        """True while a getUpdates long poll is waiting."""
        with self._lock:
            return bool(self._poll_waiters)

    def wait_until_polling(self, timeout: float = 30.0) -> None:
        """Waits until the bot calls getUpdates (after its last deleteWebhook, if any).

        Updates sent before this may be dropped by ``drop_pending_updates``.
        """
        self.wait_until(lambda: self._polls_since_reset > 0, timeout, "the bot to poll getUpdates")

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by the bot (via getUpdates offset)."""
        with self._lock:
            return len(self._updates)

    def wait_until_confirmed(self, timeout: float = 30.0) -> None:
        """Waits until the bot has fetched and confirmed every queued update."""
        self.wait_until(lambda: not self._updates, timeout, "all updates to be confirmed")

    def get_file_count(self, file_id: str) -> int:
        """getFile calls for ``file_id`` (including refused ones)."""
        with self._lock:
            return self.get_file_counts[file_id]

    def download_count(self, file_id: str) -> int:
        """Downloads of ``file_id``'s bytes from the file endpoint."""
        with self._lock:
            return self.download_counts[file_id]

    def callback_answer(self, query_id: str) -> dict | None:
        """The answerCallbackQuery params for a press, or None if not answered (yet)."""
        with self._lock:
            query = self._callbacks.get(query_id)
            if query is None:
                raise KeyError(query_id)
            return copy.deepcopy(query["answer"]) if query["answered"] else None

    def wait_for_answer(self, query_id: str, timeout: float = 30.0) -> dict:
        self.wait_until(lambda: self._callbacks[query_id]["answered"], timeout, f"answerCallbackQuery({query_id})")
        return self.callback_answer(query_id)  # type: ignore[return-value]

    def chat_actions(self, chat_id: int | None = None) -> list[str]:
        with self._lock:
            return [a for c, a, _ in self._chat_actions if chat_id is None or c == chat_id]

    def commands(self, scope: dict | None = None, language_code: str = "") -> list[dict]:
        """What setMyCommands stored for a scope (default scope by default)."""
        with self._lock:
            key = self._commands_key({"scope": scope, "language_code": language_code})
            return copy.deepcopy(self._commands.get(key, []))

    def file_bytes(self, file_id: str) -> bytes:
        with self._lock:
            return self._files[file_id].data

    def fail_next(
        self,
        method: str,
        error_code: int = 400,
        description: str = "Bad Request: injected",
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Makes the next ``times`` calls of ``method`` fail with this Telegram error."""
        if error_code == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._fail_next.setdefault(method.lower(), []).extend(
                ApiError(error_code, description, retry_after) for _ in range(times)
            )


try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture
    def fake_telegram():
        """A running FakeTelegram with DEFAULT_TOKEN (``from tests.fake_telegram import fake_telegram``)."""
        with FakeTelegram() as server:
            yield server
