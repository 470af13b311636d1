"""An HTTP fake of the Telegram Bot API on 127.0.0.1: the part of it detbot's bot uses.

The bot runs as its own process (``python -m bot``) and talks to it as to ``api.telegram.org``::

    with FakeTelegram() as tg:
        bot = subprocess.Popen([sys.executable, "-m", "bot"], env={**os.environ, **tg.env("TELEGRAM_BOT_TOKEN")})
        tg.wait_until_polling()
        tg.user(42, "Ann").send_text("/start")
        reply = tg.wait_for(lambda m: "Pascal VOC" in m["text"], chat_id=42)

aiohttp serves in a thread of its own; the test-side methods are thread-safe.

As the cloud Bot API does it, because the bot relies on it: ``{base_url}{token}/{method}`` (method names
case-insensitive); form or multipart bodies, non-string values JSON-encoded (python-telegram-bot's
encoding); errors with the HTTP status of ``error_code``: 401 wrong token, 404 unknown method, 400,
403 "bot was blocked by the user", 413 above the upload limit. getUpdates long polling (``offset``
confirms, ``timeout`` waits, ``limit``) and ``deleteWebhook(drop_pending_updates)``. Message ids per chat.
Plain text trimmed, 1..4096 characters; captions up to 1024. Inline keyboards (callback_data 1..64 bytes),
which an edit without ``reply_markup`` removes; "message is not modified". A callback query answered
once. Uploads kept byte for byte: documents up to 50 MB, photos up to 10 MB and a real image (editMessageMedia
replaces a photo with another); albums of 2-10 uploaded photos (sendMediaGroup: a message each, sharing a
media_group_id). Whether a message was
sent silently (``disable_notification``) is kept as its "silent"; chat actions are recorded (``chat_actions``). A user's
photo as a real 90 px thumbnail, then the original; albums (a media_group_id shared by 2-10 photos);
stickers, voice, audio, video and video notes (placeholder bytes). getFile refuses files above 20 MB ("file is too
big"), else gives the path to download. setMyCommands checks names and descriptions, kept per language_code.
A user's ``language_code`` (their app's language) goes in the ``from`` of their updates when set.

Not faked, because the bot sends none of it: ``parse_mode`` (refused with Telegram's "unsupported
parse_mode", so markup cannot pass for plain text), re-sends by file_id or URL, reply keyboards,
replies, deletions, webhooks, flood control (429), local Bot API servers. Group chats are
faked as far as the bot uses them: members who write and press buttons in one chat (``tg.group(-5, "Team")
.member(tg.user(1, "Ann"))``); ``press_forged`` sends callback_data no button carries, as a modified client can.
"""

from tests.fake_telegram.bot_api import MB, Upload
from tests.fake_telegram.server import DEFAULT_TOKEN, ApiCall, FakeGroup, FakeTelegram, FakeUser

__all__ = ["DEFAULT_TOKEN", "MB", "ApiCall", "FakeGroup", "FakeTelegram", "FakeUser", "Upload"]
