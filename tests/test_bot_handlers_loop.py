"""No handler blocks the bot's event loop, and what goes wrong reaches the user in the catalogue's words.

The bot is ``python -m bot`` itself, in a process of its own, on an asyncio loop in debug mode
(``tests/debug_loop_bot.py``), which logs every callback that holds the loop longer than ``SLOW_S``; it talks
to the fake Bot API on 127.0.0.1. The machine's ``nvidia-smi`` is a script that takes 3 s and then reports a
GPU: asked on the loop, it would show as a 3 s callback.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bot import texts
from tests.test_bot_e2e import ANN, BotProcess, say, shapes_zip, text_of

SLOW_S = 0.05
SLOW_SMI = "#!/bin/sh\necho asked >> \"$0.calls\"\nsleep 3\necho '0, GPU-0a1b2c3d, 16384, 8.0'\n"


@pytest.fixture
def slow_smi(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "nvidia-smi").write_text(SLOW_SMI)
    (folder / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder / "nvidia-smi.calls"


@pytest.fixture
def bot(tg, tmp_path, slow_smi):
    (tmp_path / "data").mkdir()
    process = BotProcess(tg, tmp_path / "data", command=("-m", "tests.debug_loop_bot", str(SLOW_S)))
    tg.wait_until_polling(timeout=60)  # start-up asks nvidia-smi, off the loop
    yield process
    process.stop()


def logged(log: Path, logger: str) -> list[str]:
    """What ``logger`` wrote into the bot's log, each message without the traceback that may follow it."""
    text = log.read_text(encoding="utf-8", errors="replace")
    pattern = rf"^\S+ \S+ [A-Z]+ {re.escape(logger)}: (.*?)(?=\nTraceback|\n\d{{4}}-\d\d-\d\d |\Z)"
    return [message.rstrip() for message in re.findall(pattern, text, flags=re.S | re.M)]


def slow_callbacks(tmp_path: Path) -> list[str]:
    return [line for line in logged(tmp_path / "bot.log", "asyncio") if line.startswith("Executing")]


def press(tg, user, message: dict, data: str, expect: str) -> dict:
    mark = tg.mark()
    user.press(message, data)
    return tg.wait_for(lambda m: expect in text_of(m), chat_id=user.chat_id, since=mark)


def test_no_handler_holds_the_event_loop(tg, bot, tmp_path, slow_smi):
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    ann.send_document(shapes_zip(tmp_path, 24), "shapes.zip")
    tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=120)
    tg.wait_for(lambda m: m["kind"] == "photo", chat_id=ANN, since=mark)
    train, val = re.search(
        r"train (\d+) images, val (\d+) images", text_of(say(tg, ann, "/split 0.2 3", "Split:"))
    ).groups()
    assert text_of(say(tg, ann, "/split many", "Usage")) == texts.SPLIT_USAGE
    assert "ball" in text_of(say(tg, ann, "/labels rename circle=ball", "Classes"))
    mark = tg.mark()
    ann.send_text("/labels file")
    assert b"ball" in tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark)["bytes"]
    choice = say(tg, ann, "/model", "Pick a detector")
    # The GPU the slow nvidia-smi reported, asked once at start-up: a small dataset on it gets the mobile model.
    assert "Recommended (*): spinenet49-mobile - 24 labelled images" in text_of(choice)
    press(tg, ann, choice, "model:mobilenetv2-fpn", texts.model_chosen("mobilenetv2-fpn"))
    card = say(tg, ann, "/train 30 steps", "Ready to train")
    assert f"images: {train} train / {val} val" in text_of(card) and "classes: ball, square, triangle" in text_of(card)
    assert "30 steps" in text_of(card) and "device: 1 GPU (16 GB each)" in text_of(card)
    press(tg, ann, card, card["reply_markup"]["inline_keyboard"][0][1]["callback_data"], texts.CANCELLED)
    assert text_of(say(tg, ann, "/status", "No such job")) == texts.NO_JOB_YET
    for command in ("/stop", "/resume", "/export"):
        say(tg, ann, command, "job")  # no job to name: each says so
    assert text_of(say(tg, ann, "/predict", "model")) == texts.no_model_yet("train", None)
    assert "No jobs yet" in text_of(say(tg, ann, "/jobs", "Disk:"))
    say(tg, ann, "/datasets", "Your datasets")
    assert slow_callbacks(tmp_path) == []
    assert slow_smi.read_text().splitlines() == ["asked"]  # once, at start-up, for every card after


def test_store_errors_reach_the_user_in_the_catalogues_words_and_their_detail_the_log(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    assert text_of(say(tg, ann, "/model", "No dataset")) == texts.NO_DATASET  # the store's own refusal, worded
    database = tmp_path / "data" / "detbot.db"
    with closing(sqlite3.connect(database)) as conn:  # from now on the database refuses to record an upload
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON datasets BEGIN SELECT RAISE(ABORT, 'simulated'); END")
        conn.commit()
    mark = tg.mark()
    ann.send_document(shapes_zip(tmp_path, 6), "shapes.zip")
    reply = text_of(tg.wait_for(lambda m: m["kind"] == "text", chat_id=ANN, since=mark))
    assert reply == texts.STORE_BROKEN and str(tmp_path) not in reply and "bug" not in reply
    lines = logged(tmp_path / "bot.log", "bot.app")
    assert any(str(database) in line and "simulated" in line and "detbot bug" in line for line in lines), lines
