"""The Telegram fake is faithful: the real python-telegram-bot client works against it.

No detbot code here: a small PTB Application (long polling, like ``python -m bot``)
runs in its own thread and event loop and is driven through the fake's
test-side API.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile

import pytest
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fake_telegram import MB, FakeTelegram

TOKEN = "123456789:AAFakeTelegramTokenForDetbotTests_x"
OWNER = 42


def png(width: int = 200, height: int = 120) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def zip_bytes(n: int = 3) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            zf.writestr(f"Annotations/{i}.xml", "<annotation/>" * (i + 1))
    return buf.getvalue()


BOT_ZIP = zip_bytes(5)
BOT_PNG = png(320, 200)


@pytest.fixture
def tg():
    with FakeTelegram(TOKEN) as server:
        yield server


def make_bot(server: FakeTelegram, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=server.base_url, base_file_url=server.base_file_url)


def run(coro):
    return asyncio.run(coro)


class RunningApp:
    """Runs a PTB Application with long polling in its own thread and loop."""

    def __init__(self, app: Application):
        self.app = app
        self.errors: list[BaseException] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
            self.errors.append(context.error)

        self.app.add_error_handler(on_error)
        try:
            async with self.app:
                await self.app.start()
                await self.app.updater.start_polling(poll_interval=0.0, timeout=1)
                self._ready.set()
                await self._stop.wait()
                await self.app.updater.stop()
                await self.app.stop()
        except BaseException as exc:  # surfaced by __enter__/__exit__
            self.errors.append(exc)
            self._ready.set()

    def __enter__(self) -> RunningApp:
        self._thread.start()
        assert self._ready.wait(15), "application did not start"
        assert not self.errors, self.errors
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "application did not stop"


def build_app(server: FakeTelegram) -> Application:
    app = Application.builder().token(TOKEN).base_url(server.base_url).base_file_url(server.base_file_url).build()

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("Train", callback_data="train:20"),
                    InlineKeyboardButton("Docs", url="https://example.org/docs"),
                ]
            ]
        )
        await update.message.reply_text(f"Hello, {update.effective_user.first_name}!", reply_markup=keyboard)

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
        await update.message.reply_text(f"got {len(data)} bytes of {doc.file_name} ({doc.mime_type})", do_quote=True)

    async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        biggest = update.message.photo[-1]
        data = await (await biggest.get_file()).download_as_bytearray()
        await update.message.reply_text(
            f"photo {biggest.width}x{biggest.height} {len(data)} bytes, "
            f"{len(update.message.photo)} sizes, caption={update.message.caption}"
        )

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        await query.answer("working on it")
        await query.edit_message_text(f"pressed <b>{query.data}</b>", parse_mode="HTML")

    async def twice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        sent = await update.message.reply_text("first")
        edited = await sent.edit_text("second")
        try:
            await edited.edit_text("second")
        except BadRequest as exc:
            await update.message.reply_text(f"caught: {exc.message}")

    async def files(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat.id
        await context.bot.send_chat_action(chat, "upload_document")
        doc_msg = await update.message.reply_document(
            BOT_ZIP, filename="model.zip", caption="<b>model</b> ready", parse_mode="HTML"
        )
        photo_msg = await update.message.reply_photo(BOT_PNG, caption="chart")
        await context.bot.send_document(chat, doc_msg.document.file_id, caption="again")
        await context.bot.send_photo(chat, photo_msg.photo[-1].file_id)
        d = doc_msg.document
        await update.message.reply_text(
            f"sent {d.file_name} {d.file_size} {d.mime_type}; "
            f"photo sizes {[(p.width, p.height) for p in photo_msg.photo]}"
        )

    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("twice", twice))
    app.add_handler(CommandHandler("files", files))
    app.add_handler(MessageHandler(filters.Document.ALL, on_document))
    app.add_handler(MessageHandler(filters.PHOTO, on_photo))
    app.add_handler(CallbackQueryHandler(on_button))
    return app


def test_real_application_round_trip(tg):
    with RunningApp(build_app(tg)) as running:
        tg.wait_until_polling(10)
        ann = tg.user(OWNER, first_name="Ann")
        eve = tg.user(99, first_name="Eve")

        # command -> reply with an inline keyboard
        ann.send_text("/start")
        hello = tg.wait_for(lambda m: m["text"] == "Hello, Ann!", timeout=10)
        assert hello["chat_id"] == OWNER and hello["kind"] == "text"
        assert tg.buttons(hello) == [("Train", "train:20"), ("Docs", None)]
        assert hello["api"]["from"]["is_bot"] is True

        # button press -> answerCallbackQuery + edit (HTML parsed into entities)
        query_id = ann.press(hello, "train:20")
        edited = tg.wait_for(lambda m: m["event"] == "edited" and m["message_id"] == hello["message_id"], timeout=10)
        assert edited["text"] == "pressed train:20"
        assert {"type": "bold", "offset": 8, "length": 8} in edited["entities"]
        assert edited["history"][0]["text"] == "Hello, Ann!"
        assert edited["reply_markup"] is None  # editing without reply_markup drops the keyboard
        assert tg.wait_for_answer(query_id, timeout=10)["text"] == "working on it"
        with pytest.raises(AssertionError):
            ann.press(hello, "train:20")  # the button is gone

        # documents: the owner's file is fetched once, the stranger's never
        data = zip_bytes()
        mine = ann.send_document(data, "voc.zip")
        theirs = eve.send_document(zip_bytes(1), "evil.zip")
        got = tg.wait_for(lambda m: m["text"].startswith("got "), chat_id=OWNER, timeout=10)
        assert got["text"] == f"got {len(data)} bytes of voc.zip (application/zip)"
        assert got["reply_to_message_id"] == ann.last_message["message_id"]
        assert got["api"]["reply_to_message"]["document"]["file_id"] == mine
        tg.wait_for(lambda m: m["text"] == "not allowed", chat_id=99, timeout=10)
        assert (tg.get_file_count(mine), tg.download_count(mine)) == (1, 1)
        assert (tg.get_file_count(theirs), tg.download_count(theirs)) == (0, 0)

        # over the cloud API's 20 MB getFile limit
        big = ann.send_document(b"PK\x03\x04", "huge.zip", file_size=21 * MB)
        tg.wait_for(lambda m: m["text"] == "error: File is too big", timeout=10)
        assert (tg.get_file_count(big), tg.download_count(big)) == (1, 0)

        # photo: several PhotoSizes, the largest is the original bytes
        picture = png(400, 300)
        ann.send_photo(picture, caption="look")
        tg.wait_for(lambda m: m["text"] == f"photo 400x300 {len(picture)} bytes, 2 sizes, caption=look", timeout=10)

        # editing to the same content -> BadRequest "message is not modified"
        mark = tg.mark()
        ann.send_text("/twice")
        caught = tg.wait_for(lambda m: m["text"].startswith("caught:"), since=mark, timeout=10)
        assert caught["text"].startswith("caught: Message is not modified: specified new message content")
        first = next(m for m in tg.messages(OWNER) if m["history"] and m["history"][0]["text"] == "first")
        assert first["text"] == "second" and len(first["history"]) == 1

        # uploads by the bot: bytes, filename, mime and caption captured; file_id re-sends work
        ann.send_text("/files")
        summary = tg.wait_for(lambda m: m["text"].startswith("sent "), timeout=10)
        assert summary["text"] == (f"sent model.zip {len(BOT_ZIP)} application/zip; photo sizes [(90, 56), (320, 200)]")
        docs = [m for m in tg.messages(OWNER) if m["kind"] == "document"]
        assert [d["bytes"] for d in docs] == [BOT_ZIP, BOT_ZIP]
        assert docs[0]["filename"] == "model.zip" and docs[0]["mime_type"] == "application/zip"
        assert docs[0]["caption"] == "model ready" and docs[0]["raw_text"] == "<b>model</b> ready"
        assert docs[1]["caption"] == "again" and docs[1]["file_id"] == docs[0]["file_id"]
        photos = [m for m in tg.messages(OWNER) if m["kind"] == "photo"]
        assert [p["bytes"] for p in photos] == [BOT_PNG, BOT_PNG]
        assert photos[0]["caption"] == "chart"
        assert "upload_document" in tg.chat_actions(OWNER)

        tg.wait_until_confirmed(10)
    assert not running.errors, running.errors
    methods = {c.method for c in tg.requests}
    assert {
        "getMe",
        "deleteWebhook",
        "getUpdates",
        "sendMessage",
        "editMessageText",
        "answerCallbackQuery",
        "getFile",
        "sendDocument",
        "sendPhoto",
    } <= methods
    assert tg.conflicts == 0
    upload = next(
        c for c in tg.calls("sendDocument") if "document" in c.params and not isinstance(c.params["document"], str)
    )
    assert upload.params["document"].filename == "model.zip"


BOT_PROCESS = """
import os
from telegram.ext import Application, CommandHandler

async def train(update, context):
    await update.message.reply_text(f"training for {context.args[0]} epochs")

app = (Application.builder().token(os.environ["TOKEN"])
       .base_url(os.environ["TELEGRAM_BASE_URL"])
       .base_file_url(os.environ["TELEGRAM_BASE_FILE_URL"]).build())
app.add_handler(CommandHandler("train", train))
app.run_polling(poll_interval=0.0, timeout=1, drop_pending_updates=True)
"""


def test_bot_in_a_separate_process(tg):
    env = {**os.environ, **tg.env(token_var="TOKEN")}
    proc = subprocess.Popen(
        [sys.executable, "-c", BOT_PROCESS], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        tg.wait_until_polling(20)
        tg.user(OWNER).send_text("/train 20")
        reply = tg.wait_for(lambda m: m["text"] == "training for 20 epochs", timeout=10)
        assert reply["chat_id"] == OWNER
        tg.wait_until_confirmed(10)
    finally:
        proc.terminate()  # run_polling stops gracefully on SIGTERM
        output = proc.communicate(timeout=15)[0].decode()
    assert proc.returncode == 0, output
    assert tg.conflicts == 0
    assert tg.calls("deleteWebhook")[0].params["drop_pending_updates"] is True


def test_wrong_token_and_unknown_method(tg):
    async def main():
        with pytest.raises(InvalidToken):
            async with make_bot(tg, "123456789:wrong"):
                pass
        async with make_bot(tg) as bot:
            with pytest.raises(EndPointNotFound):
                await bot.do_api_request("fooBar")
            assert (await bot.get_me()).username == tg.bot_username
            assert await bot.do_api_request("GETME")  # methods are case-insensitive

    run(main())
    assert [c.status for c in tg.calls("getMe")][0] == 401
    for path, code, description in [
        ("/bot123:nope/getMe", 401, "Unauthorized"),
        (f"/bot{TOKEN}/fooBar", 404, "Not Found: method not found"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{tg.port}{path}", data=b"")
        assert err.value.code == code
        assert json.loads(err.value.read()) == {"ok": False, "error_code": code, "description": description}


def test_get_updates_long_polling(tg):
    ann = tg.user(7, first_name="Ann")

    async def main():
        async with make_bot(tg) as bot:
            t0 = time.monotonic()
            assert await bot.get_updates(timeout=1) == ()
            assert time.monotonic() - t0 >= 0.9

            threading.Timer(0.3, ann.send_text, args=("/train 20",)).start()
            t0 = time.monotonic()
            updates = await bot.get_updates(timeout=10)
            assert time.monotonic() - t0 < 3
            [update] = updates
            message = update.message
            assert message.text == "/train 20" and message.chat.type == "private"
            assert message.from_user.first_name == "Ann" and not message.from_user.is_bot
            assert message.entities[0].type == "bot_command" and message.entities[0].length == 6
            # not confirmed yet: delivered again
            assert [u.update_id for u in await bot.get_updates()] == [update.update_id]
            assert await bot.get_updates(offset=update.update_id + 1) == ()
            assert tg.pending_updates == 0

            for text in ("a", "b", "c"):
                ann.send_text(text)
            assert [u.message.text for u in await bot.get_updates(limit=2)] == ["a", "b"]
            assert [u.message.text for u in await bot.get_updates(offset=-1)] == ["c"]
            assert tg.pending_updates == 1

            # allowed_updates is sticky and filters updates out
            ann.send_text("dropped")
            assert await bot.get_updates(allowed_updates=["callback_query"]) == ()
            ann.send_text("kept")
            [kept] = await bot.get_updates(allowed_updates=[])
            assert kept.message.text == "kept"
            assert await bot.get_updates(offset=kept.update_id + 1) == ()

            # a second instance's poll terminates the pending one
            async with make_bot(tg) as other:
                first = asyncio.create_task(bot.get_updates(timeout=5))
                await asyncio.sleep(0.3)
                second = asyncio.create_task(other.get_updates(timeout=0.5))
                with pytest.raises(Conflict, match="(?i)terminated by other getUpdates"):
                    await first
                assert await second == ()

            # drop_pending_updates
            ann.send_text("stale")
            await bot.delete_webhook(drop_pending_updates=True)
            assert await bot.get_updates() == ()

    run(main())
    assert tg.conflicts == 1


def test_messages_markup_and_errors(tg):
    ann = tg.user(5, first_name="Ann")
    bob = tg.user(6, first_name="Bob")
    bob.block()

    async def main():
        async with make_bot(tg) as bot:
            m = await bot.send_message(
                5,
                "Done: <b>5</b> &lt;images&gt;",
                parse_mode="HTML",
                reply_markup=InlineKeyboardMarkup.from_button(InlineKeyboardButton("Again", callback_data="again")),
            )
            assert m.text == "Done: 5 <images>" and m.entities[0].type == "bold"
            assert m.reply_markup.inline_keyboard[0][0].callback_data == "again"
            with pytest.raises(BadRequest, match="(?i)Unsupported start tag"):
                await bot.send_message(5, "a < b", parse_mode="HTML")
            with pytest.raises(BadRequest, match="(?i)reserved"):
                await bot.send_message(5, "loss 0.5", parse_mode="MarkdownV2")
            assert (await bot.send_message(5, r"loss *0\.5*", parse_mode="MarkdownV2")).text == "loss 0.5"
            with pytest.raises(BadRequest, match="(?i)Message is too long"):
                await bot.send_message(5, "x" * 4097)
            with pytest.raises(BadRequest, match="(?i)Message text is empty"):
                await bot.send_message(5, "   ")
            with pytest.raises(BadRequest, match="(?i)Chat not found"):
                await bot.send_message(12345, "hi")
            with pytest.raises(Forbidden, match="(?i)blocked"):
                await bot.send_message(6, "hi")
            with pytest.raises(BadRequest, match="(?i)Button_data_invalid"):
                await bot.send_message(
                    5,
                    "x",
                    reply_markup=InlineKeyboardMarkup.from_button(InlineKeyboardButton("x", callback_data="y" * 65)),
                )
            with pytest.raises(BadRequest, match="(?i)Message to be replied not found"):
                await bot.send_message(5, "x", reply_to_message_id=999)
            with pytest.raises(BadRequest, match="(?i)Message to edit not found"):
                await bot.edit_message_text("x", chat_id=5, message_id=999)
            # same text but different formatting is a modification
            await bot.edit_message_text("Done: 5 <images>", chat_id=5, message_id=m.message_id)
            with pytest.raises(BadRequest, match="(?i)Message is not modified"):
                await bot.edit_message_reply_markup(chat_id=5, message_id=m.message_id)
            with pytest.raises(BadRequest, match="(?i)Message can't be edited"):
                await bot.edit_message_text("x", chat_id=5, message_id=ann.last_message["message_id"])
            assert await bot.delete_message(5, m.message_id)
            with pytest.raises(BadRequest, match="(?i)Message to delete not found"):
                await bot.delete_message(5, m.message_id)
            with pytest.raises(BadRequest, match="(?i)Image_process_failed"):
                await bot.send_photo(5, b"not an image")
            with pytest.raises(BadRequest, match="(?i)Wrong file identifier"):
                await bot.send_document(5, "no-such-file-id")
            with pytest.raises(BadRequest, match="(?i)Query is too old"):
                await bot.answer_callback_query("123")
            await bot.set_my_commands([("train", "Train a model"), ("status", "Show progress")])
            assert [c.command for c in await bot.get_my_commands()] == ["train", "status"]

    ann.send_text("hello")
    run(main())
    assert [c["command"] for c in tg.commands()] == ["train", "status"]
    assert tg.messages(5)[-1]["text"] == "loss 0.5"
    assert all(not m["deleted"] for m in tg.messages(5))


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_flood_control():
    with FakeTelegram(TOKEN, flood_after=2, flood_retry_after=1) as server:
        server.user(5)

        async def main():
            async with make_bot(server) as bot:
                await bot.send_message(5, "1")
                await bot.send_message(5, "2")
                with pytest.raises(RetryAfter):
                    await bot.send_message(5, "3")
            app = (
                Application.builder()
                .token(TOKEN)
                .base_url(server.base_url)
                .rate_limiter(AIORateLimiter(max_retries=2))
                .build()
            )
            async with app:
                t0 = time.monotonic()
                for i in range(3):
                    await app.bot.send_message(5, f"limited {i}")
                return time.monotonic() - t0

        waited = run(main())
        assert [m["text"] for m in server.messages(5)] == ["1", "2", "limited 0", "limited 1", "limited 2"]
        assert waited >= 0.9  # the rate limiter honoured retry_after
        [first_429, *_] = [c for c in server.calls("sendMessage") if c.status == 429]
        assert first_429.error == "Too Many Requests: retry after 1"
        server.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server.base_url}{TOKEN}/sendMessage?chat_id=5&text=x", data=b"")
        assert err.value.code == 429
        assert json.loads(err.value.read()) == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        }
