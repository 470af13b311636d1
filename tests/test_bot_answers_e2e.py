"""Every update gets an answer (issue 11): the real bot process against the fake Bot API on 127.0.0.1.

Free text and unknown commands get the next step in chat words; /cancel leaves the /train card and
photo mode; other archives are named, by name and by their bytes; photos, images sent as files and
albums before any model get one message saying what to do first; voice, video and stickers get what
the bot takes.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from bot import texts
from bot.albums import ALBUM_WAIT_S
from tests.builders import image_bytes
from tests.test_bot_e2e import ANN, BotProcess, say, shapes_zip, text_of
from tests.test_bot_limits_e2e import finished_events, refused_calls, seed_job

RAR = b"Rar!\x1a\x07\x01\x00" + bytes(64)
SEVEN_Z = b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(64)
GZIP = b"\x1f\x8b\x08\x00" + bytes(64)
EMPTY_ZIP = b"PK\x05\x06" + bytes(18)
CLI_SYNTAX = ("--", "python -m", "pipeline ")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


@pytest.fixture
def bot(tg, data_dir):
    process = BotProcess(tg, data_dir)
    tg.wait_until_polling()
    yield process
    process.stop()


def tar_bytes() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo("a.xml")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"<a>"))
    return out.getvalue()


def upload_checked(tg, user, tmp_path: Path) -> None:
    """A small dataset sent and checked: its report and its preview are both in."""
    mark = tg.mark()
    user.send_document(shapes_zip(tmp_path, 12), "shapes.zip")
    tg.wait_for(lambda m: m["kind"] == "photo", chat_id=user.chat_id, since=mark, timeout=60)


def answers(tg, user, send, settle: float = 1.0) -> list[str]:
    """What the bot says to ``send()`` (a user action): waits for a first reply, then ``settle`` more
    seconds so that a second reply, which must not come, would be seen (an album's other photos would be
    answered after the album's wait: give it longer)."""
    mark = tg.mark()
    send()
    tg.wait_for(lambda m: True, chat_id=user.chat_id, since=mark, timeout=30)
    time.sleep(settle)
    return [text_of(e) for e in tg.events(user.chat_id, since=mark) if e["event"] == "sent"]


def test_text_and_unknown_commands_get_the_next_step(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    [hint] = answers(tg, ann, lambda: ann.send_text("hello, what do I do?"), settle=0.5)
    assert hint == texts.free_text("upload", None)
    [unknown] = answers(tg, ann, lambda: ann.send_text("/frobnicate now"), settle=0.5)
    assert unknown.startswith("I don't know /frobnicate.") and ".zip" in unknown
    upload_checked(tg, ann, tmp_path)
    [hint] = answers(tg, ann, lambda: ann.send_text("ok"), settle=0.5)
    assert "/train" in hint and "/model" in hint
    assert not any(syntax in text for text in (hint, unknown) for syntax in CLI_SYNTAX)


def test_cancel_leaves_the_train_card_and_photo_mode(tg, bot, tmp_path, data_dir):
    ann = tg.user(ANN, "Ann")
    assert text_of(say(tg, ann, "/cancel", "Nothing")) == texts.NOTHING_TO_CANCEL
    upload_checked(tg, ann, tmp_path)
    card = say(tg, ann, "/train 20 steps", "Ready to train")
    mark = tg.mark()
    reply = say(tg, ann, "/cancel", "Cancelled:")
    assert text_of(reply) == texts.cancelled(["train_card"])
    edited = tg.wait_for(lambda m: m["message_id"] == card["message_id"], chat_id=ANN, since=mark)
    assert text_of(edited) == texts.CANCELLED and tg.buttons(edited) == []
    job = seed_job(data_dir, ANN, finished_events(["circle"]), archive=EMPTY_ZIP)
    tg.wait_until(lambda: any(f"Job {job} finished" in text_of(m) for m in tg.messages(ANN)), 30, "the end")
    say(tg, ann, "/predict", f"model of job {job}")
    assert text_of(say(tg, ann, "/cancel", "Cancelled:")) == texts.cancelled(["predict"])
    assert text_of(say(tg, ann, "/cancel", "Nothing")) == texts.NOTHING_TO_CANCEL


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("photos.rar", RAR, "rar"),
        ("photos.7z", SEVEN_Z, "7z"),
        ("photos.tar.gz", GZIP, "gzip"),
        ("photos.tgz", GZIP, "gzip"),
        ("photos.tar", None, "tar"),
    ],
)
def test_other_archives_are_named_by_name_and_by_bytes(tg, bot, name, data, kind):
    ann = tg.user(ANN, "Ann")
    data = data or tar_bytes()
    [by_name] = answers(tg, ann, lambda: ann.send_document(data, name), settle=0.5)
    assert by_name == texts.other_archive_sent(kind) and "send a .zip" in by_name
    mark = tg.mark()
    ann.send_document(data, "photos.zip")  # named a zip, and something else inside
    failed = tg.wait_for(lambda m: "could not use" in text_of(m), chat_id=ANN, since=mark)
    assert text_of(failed) == texts.could_not_use("photos.zip", texts.other_archive(kind))


def test_predict_a_photo_an_image_file_and_an_album_before_any_model_get_one_answer_each(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    first = texts.no_model_yet("upload", None)
    assert answers(tg, ann, lambda: ann.send_text("/predict"), settle=0.5) == [first]
    assert answers(tg, ann, lambda: ann.send_photo(image_bytes((320, 240)))) == [first]
    assert answers(tg, ann, lambda: ann.send_document(image_bytes((320, 240), fmt="PNG"), "IMG_0001.png")) == [first]
    album = [image_bytes((320, 240), color=(40 * n, 90, 90)) for n in range(4)]
    assert answers(tg, ann, lambda: ann.send_album(album), settle=ALBUM_WAIT_S + 1) == [first]
    upload_checked(tg, ann, tmp_path)
    [then] = answers(tg, ann, lambda: ann.send_photo(image_bytes((320, 240))))
    assert then == texts.no_model_yet("train", None) and "/train" in then
    assert refused_calls(tg) == []


def test_voice_video_and_stickers_hear_what_the_bot_takes(tg, bot):
    ann = tg.user(ANN, "Ann")
    for kind in ("voice", "video", "sticker", "video_note", "audio"):
        [reply] = answers(tg, ann, lambda kind=kind: ann.send_media(kind), settle=0.3)
        assert reply == texts.media_refused(kind) and ".zip" in reply, kind


@pytest.mark.slow
def test_an_image_sent_as_a_file_is_predicted_in_predict_mode(
    tg, tmp_path, trained_job, exported_archive, shapes_workspace
):
    from tests.test_bot_e2e import seed_finished_job

    job, _ = seed_finished_job(tmp_path / "data", trained_job, exported_archive, shapes_workspace)
    mark = tg.mark()
    process = BotProcess(tg, tmp_path / "data")
    try:
        tg.wait_until_polling()
        ann = tg.user(ANN, "Ann")
        tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark, timeout=60)
        say(tg, ann, "/predict", f"model of job {job}")
        mark = tg.mark()
        ann.send_document(image_bytes((320, 240), fmt="PNG"), "IMG_0002.png")
        drawn = tg.wait_for(lambda m: m["kind"] == "photo", chat_id=ANN, since=mark, timeout=180)
        assert drawn["bytes"][:8] == b"\x89PNG\r\n\x1a\n" and text_of(drawn)
    finally:
        process.stop()
