"""The Telegram fake answers as the Bot API does: the real python-telegram-bot client works against it.

No detbot code here: a small PTB Application (long polling, as ``python -m bot`` runs) in its own
thread and event loop, or a bare ``telegram.Bot``, driven through the fake's test side. Expected
descriptions are the cloud API's, as PTB reports them.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import urllib.error
import urllib.request
import zipfile

import pytest
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, NetworkError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from tests.fake_telegram import DEFAULT_TOKEN, MB, FakeTelegram

OWNER = 42


def png(width: int = 200, height: int = 120) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def zip_bytes(n: int = 3) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(n):
            archive.writestr(f"Annotations/{i}.xml", "<annotation/>" * (i + 1))
    return out.getvalue()


BOT_ZIP = zip_bytes(5)
BOT_PNG = png(320, 200)


def make_bot(server: FakeTelegram, token: str = DEFAULT_TOKEN) -> Bot:
    return Bot(token, base_url=server.base_url, base_file_url=server.base_file_url)


class RunningApp:
    """A PTB Application polling in its own thread and loop."""

    def __init__(self, app: Application):
        self.app = app
        self.errors: list[BaseException] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
            self.errors.append(context.error)

        self.app.add_error_handler(on_error)
        try:
            async with self.app:
                await self.app.start()
                await self.app.updater.start_polling(poll_interval=0.0, timeout=1, drop_pending_updates=True)
                self._ready.set()
                await self._stop.wait()
                await self.app.updater.stop()
                await self.app.stop()
        except BaseException as exc:  # surfaced by __enter__/__exit__
            self.errors.append(exc)
            self._ready.set()

    def __enter__(self) -> RunningApp:
        self._thread.start()
        assert self._ready.wait(15), "the application did not start"
        assert not self.errors, self.errors
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the application did not stop"


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    train = InlineKeyboardButton("Train", callback_data="train:20")
    docs = InlineKeyboardButton("Docs", url="https://example.org/docs")
    await update.message.reply_text(
        f"Hello, {update.effective_user.first_name}!", reply_markup=InlineKeyboardMarkup([[train, docs]])
    )


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    doc = update.message.document
    if update.effective_user.id != OWNER:
        await update.message.reply_text("not allowed")
        return
    try:
        data = await (await doc.get_file()).download_as_bytearray()
    except BadRequest as exc:
        await update.message.reply_text(f"error: {exc.message}")
        return
    await update.message.reply_text(f"got {len(data)} bytes of {doc.file_name} ({doc.mime_type})")


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    biggest = update.message.photo[-1]
    data = await (await biggest.get_file()).download_as_bytearray()
    sizes = [(size.width, size.height) for size in update.message.photo]
    await update.message.reply_text(f"photo {len(data)} bytes, sizes {sizes}")


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.callback_query.answer("working on it")
    await update.callback_query.edit_message_text(f"pressed {update.callback_query.data}")


async def twice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    sent = await update.message.reply_text("first")
    edited = await sent.edit_text("second")
    try:
        await edited.edit_text("second ")  # trimmed by Telegram: the same text
    except BadRequest as exc:
        await update.message.reply_text(f"caught: {exc.message}")


async def files(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    doc = await update.message.reply_document(BOT_ZIP, filename="model.zip", caption="model ready")
    photo = await update.message.reply_photo(BOT_PNG, caption="chart")
    d = doc.document
    sizes = [(p.width, p.height) for p in photo.photo]
    await update.message.reply_text(f"sent {d.file_name} {d.file_size} {d.mime_type}; photo sizes {sizes}")


def build_app(server: FakeTelegram) -> Application:
    app = (
        Application.builder().token(DEFAULT_TOKEN).base_url(server.base_url).base_file_url(server.base_file_url).build()
    )
    for name, callback in (("start", start), ("twice", twice), ("files", files)):
        app.add_handler(CommandHandler(name, callback))
    app.add_handler(MessageHandler(filters.Document.ALL, on_document))
    app.add_handler(MessageHandler(filters.PHOTO, on_photo))
    app.add_handler(CallbackQueryHandler(on_button))
    return app


def test_application_commands_and_buttons(tg):
    with RunningApp(build_app(tg)) as running:
        tg.wait_until_polling(10)
        ann = tg.user(OWNER, "Ann")
        ann.send_text("/start")  # a command reaches CommandHandler; the reply keeps its keyboard
        hello = tg.wait_for(lambda m: m["text"] == "Hello, Ann!", timeout=10)
        assert hello["chat_id"] == OWNER and hello["kind"] == "text" and hello["message_id"] == 2
        assert tg.buttons(hello) == [("Train", "train:20"), ("Docs", None)]

        # a press: answered once, and an edit without reply_markup removes the keyboard
        query_id = ann.press(hello, "train:20")
        edited = tg.wait_for(lambda m: m["event"] == "edited" and m["message_id"] == hello["message_id"], timeout=10)
        assert edited["text"] == "pressed train:20" and edited["reply_markup"] is None
        tg.wait_until(lambda: tg.callback_answer(query_id) is not None, 10, "the answer")
        assert tg.callback_answer(query_id)["text"] == "working on it"
        with pytest.raises(AssertionError):
            ann.press(hello, "train:20")  # the button is gone

        mark = tg.mark()
        ann.send_text("/twice")
        caught = tg.wait_for(lambda m: m["text"].startswith("caught:"), since=mark, timeout=10)
        assert caught["text"].startswith("caught: Message is not modified: specified new message content")
        assert [e["text"] for e in tg.events(OWNER, since=mark) if e["event"] == "edited"] == ["second"]
        tg.wait_until(lambda: tg.pending_updates == 0, 10, "every update confirmed")
    assert not running.errors, running.errors
    assert [c.params for c in tg.requests if c.method == "deleteWebhook"] == [{"drop_pending_updates": True}]


def test_application_files_both_ways(tg):
    with RunningApp(build_app(tg)) as running:
        tg.wait_until_polling(10)
        ann, eve = tg.user(OWNER, "Ann"), tg.user(99, "Eve")
        # documents: the owner's is fetched once, the stranger's never
        data = zip_bytes()
        mine, theirs = ann.send_document(data, "voc.zip"), eve.send_document(zip_bytes(1), "evil.zip")
        tg.wait_for(lambda m: m["text"] == f"got {len(data)} bytes of voc.zip (application/zip)", timeout=10)
        tg.wait_for(lambda m: m["text"] == "not allowed", chat_id=99, timeout=10)
        assert (tg.get_file_count(mine), tg.download_count(mine)) == (1, 1)
        assert (tg.get_file_count(theirs), tg.download_count(theirs)) == (0, 0)

        big = ann.send_document(b"PK\x03\x04", "huge.zip", file_size=21 * MB)  # over the cloud API's 20 MB
        tg.wait_for(lambda m: m["text"] == "error: File is too big", timeout=10)
        assert (tg.get_file_count(big), tg.download_count(big)) == (1, 0)

        picture = png(400, 300)  # a thumbnail, then the original bytes
        ann.send_photo(picture)
        tg.wait_for(lambda m: m["text"] == f"photo {len(picture)} bytes, sizes [(90, 68), (400, 300)]", timeout=10)

        ann.send_text("/files")  # the bot's uploads: bytes, name and caption as sent
        summary = tg.wait_for(lambda m: m["text"].startswith("sent "), timeout=10)
        assert summary["text"] == f"sent model.zip {len(BOT_ZIP)} application/zip; photo sizes [(90, 56), (320, 200)]"
        [doc] = [m for m in tg.messages(OWNER) if m["kind"] == "document"]
        assert (doc["bytes"], doc["filename"], doc["caption"]) == (BOT_ZIP, "model.zip", "model ready")
        [photo] = [m for m in tg.messages(OWNER) if m["kind"] == "photo"]
        assert (photo["bytes"], photo["caption"]) == (BOT_PNG, "chart")
    assert not running.errors, running.errors


def test_wrong_token_and_unknown_method(tg):
    async def main():
        with pytest.raises(InvalidToken):
            async with make_bot(tg, "123456789:wrong"):
                pass
        async with make_bot(tg) as bot:
            with pytest.raises(EndPointNotFound):
                await bot.do_api_request("fooBar")
            assert (await bot.get_me()).username == tg.bot_username
            assert await bot.do_api_request("GETME")  # method names are case-insensitive

    asyncio.run(main())
    for path, code, description in [
        ("/bot123:nope/getMe", 401, "Unauthorized"),
        (f"/bot{DEFAULT_TOKEN}/fooBar", 404, "Not Found: method not found"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{tg.port}{path}", data=b"")
        assert err.value.code == code
        assert json.loads(err.value.read()) == {"ok": False, "error_code": code, "description": description}


def test_get_updates_long_polling(tg):
    ann = tg.user(7, "Ann")

    async def main():
        async with make_bot(tg) as bot:
            t0 = time.monotonic()
            assert await bot.get_updates(timeout=1) == ()
            assert time.monotonic() - t0 >= 0.9

            threading.Timer(0.3, ann.send_text, args=("/train 20",)).start()
            t0 = time.monotonic()
            [update] = await bot.get_updates(timeout=10)
            assert time.monotonic() - t0 < 3  # answered when the update came, not at the timeout
            message = update.message
            assert message.text == "/train 20" and message.chat.type == "private"
            assert message.from_user.first_name == "Ann" and not message.from_user.is_bot
            assert message.entities[0].type == "bot_command" and message.entities[0].length == 6
            assert [u.update_id for u in await bot.get_updates()] == [update.update_id]  # not confirmed yet
            assert await bot.get_updates(offset=update.update_id + 1) == ()
            assert tg.pending_updates == 0

            for text in ("a", "b", "c"):
                ann.send_text(text)
            batch = await bot.get_updates(limit=2)
            assert [u.message.text for u in batch] == ["a", "b"]
            assert [u.message.message_id for u in batch] == [2, 3]  # message ids count per chat
            ann.send_text("stale")
            await bot.delete_webhook(drop_pending_updates=True)
            assert await bot.get_updates() == ()

    asyncio.run(main())


def test_messages_and_their_errors(tg):
    ann, bob = tg.user(5, "Ann"), tg.user(6, "Bob")
    bob.block()

    async def main():
        async with make_bot(tg) as bot:
            again = InlineKeyboardMarkup.from_button(InlineKeyboardButton("Again", callback_data="again"))
            m = await bot.send_message(5, "x" * 4096, reply_markup=again)
            assert m.reply_markup.inline_keyboard[0][0].callback_data == "again"
            with pytest.raises(BadRequest, match="Message is too long"):
                await bot.send_message(5, "x" * 4097)
            with pytest.raises(BadRequest, match="Message text is empty"):
                await bot.send_message(5, "   ")
            with pytest.raises(BadRequest, match="Unsupported parse_mode"):
                await bot.send_message(5, "x", parse_mode="Plain")
            with pytest.raises(BadRequest, match="Chat not found"):
                await bot.send_message(12345, "hi")
            with pytest.raises(Forbidden, match="bot was blocked by the user"):
                await bot.send_message(6, "hi")
            with pytest.raises(BadRequest, match="Button_data_invalid"):
                too_long = InlineKeyboardButton("x", callback_data="y" * 65)
                await bot.send_message(5, "x", reply_markup=InlineKeyboardMarkup.from_button(too_long))
            with pytest.raises(BadRequest, match="Message to edit not found"):
                await bot.edit_message_text("x", chat_id=5, message_id=999)
            with pytest.raises(BadRequest, match="Message is not modified"):
                await bot.edit_message_text("x" * 4096, chat_id=5, message_id=m.message_id, reply_markup=again)
            await bot.edit_message_reply_markup(
                chat_id=5, message_id=m.message_id, reply_markup=InlineKeyboardMarkup([])
            )
            with pytest.raises(BadRequest, match="Message is not modified"):
                await bot.edit_message_reply_markup(
                    chat_id=5, message_id=m.message_id, reply_markup=InlineKeyboardMarkup([])
                )
            with pytest.raises(BadRequest, match="Message caption is too long"):
                await bot.send_photo(5, png(), caption="c" * 1025)
            with pytest.raises(BadRequest, match="Image_process_failed"):
                await bot.send_photo(5, b"not an image")
            with pytest.raises(BadRequest, match="Wrong file identifier"):
                await bot.send_document(5, "no-such-file-id")
            with pytest.raises(BadRequest, match="Query is too old"):
                await bot.answer_callback_query("123")
            with pytest.raises(BadRequest, match="Bot_command_invalid"):
                await bot.set_my_commands([("Train", "Train a model")])
            await bot.set_my_commands([("train", "Train a model"), ("status", "Show progress")])

    ann.send_text("hello")
    asyncio.run(main())
    assert [c["command"] for c in tg.commands()] == ["train", "status"]
    assert [(m["message_id"], m["reply_markup"]) for m in tg.messages(5)] == [(2, None)]  # refusals took no ids


def test_uploads_above_the_limit_are_refused():
    with FakeTelegram(upload_limit=MB) as server:
        server.user(5)

        async def main():
            async with make_bot(server) as bot:
                for size in (MB + 1, 3 * MB):
                    with pytest.raises(NetworkError, match="Request Entity Too Large"):
                        await bot.send_document(5, bytes(size), filename="model.zip")
                await bot.send_document(5, bytes(MB), filename="model.zip")

        asyncio.run(main())
        assert [len(m["bytes"]) for m in server.messages(5)] == [MB]
