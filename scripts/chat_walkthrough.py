"""The README's chat walkthrough, from a real run: the real bot (``python -m bot``) against the fake Bot
API of the tests on 127.0.0.1, an English user with kangaroo.zip from upload to /predict, then a
Korean user up to the /train card. Prints the chat as a transcript (each message as it finally read,
with its buttons) and the wall time of each step.

    .venv/bin/python scripts/chat_walkthrough.py [--steps 300] [--dataset ../shared/datasets/kangaroo.zip]

Trains for real (from scratch: nothing can be downloaded here), so it takes a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data.synthetic import SyntheticSpec, make_voc_zip  # noqa: E402
from tests.fake_telegram import DEFAULT_TOKEN, FakeTelegram  # noqa: E402
from tests.test_bot_e2e import ANN, BOB, BotProcess, kill_trainers, text_of  # noqa: E402


def shown(message: dict) -> str:
    kind = message["kind"]
    body = text_of(message)
    head = {"photo": "[photo] ", "document": f"[document {message.get('filename')}] "}.get(kind, "")
    buttons = " ".join(f"[{label}]" for label, _ in FakeTelegram.buttons(message))
    lines = (head + body).splitlines() or [head]
    if buttons:
        lines.append(buttons)
    return "\n        ".join(lines)


class Chat:
    """One user's side of the chat: what they send, and the bot's messages that answer it."""

    def __init__(self, tg: FakeTelegram, user):
        self.tg, self.user = tg, user

    def step(self, said: str, act, until, timeout: float = 120.0) -> list[dict]:
        mark, started = self.tg.mark(), time.monotonic()
        act()
        self.tg.wait_for(until, timeout, chat_id=self.user.chat_id, since=mark)
        time.sleep(1.0)  # what follows at once (a preview after a report) belongs to this step too
        events = self.tg.events(self.user.chat_id, since=mark)
        final: dict[int, dict] = {}
        for event in events:  # a message edited in place is shown once, as it finally read
            final[event["message_id"]] = event
        print(f"you   > {said}    ({time.monotonic() - started:.1f} s)")
        for message in final.values():
            edits = sum(1 for e in events if e["message_id"] == message["message_id"] and e["event"] == "edited")
            note = f"   <- edited {edits}x in place" if edits else ""
            print(f"detbot> {shown(message)}{note}")
        return list(final.values())

    def text(self, text: str, expect: str, timeout: float = 60.0) -> list[dict]:
        return self.step(text, lambda: self.user.send_text(text), lambda m: expect in text_of(m), timeout)

    def press(self, message: dict, label: str, until, timeout: float = 120.0) -> list[dict]:
        data = dict(FakeTelegram.buttons(message))[label]
        return self.step(f"(taps {label})", lambda: self.user.press(message, data), until, timeout)


def first_with(messages: list[dict], needle: str) -> dict:
    return next(m for m in messages if needle in text_of(m))


def english(tg: FakeTelegram, dataset: Path, steps: int) -> None:
    chat = Chat(tg, tg.user(ANN, "Ann", language_code="en"))
    chat.text("/start", "detbot")
    chat.step(
        f"[{dataset.name}]",
        lambda: chat.user.send_document(dataset.read_bytes(), dataset.name),
        lambda m: m["kind"] == "photo",
        timeout=300,
    )
    card = first_with(chat.text("/split", "is split"), "is split")
    chat.press(card, next(label for label, _ in tg.buttons(card) if "20" in label), lambda m: "train" in text_of(m))
    choice = first_with(chat.text("/model", "Pick a detector"), "Pick a detector")
    chat.press(choice, next(label for label, _ in tg.buttons(choice) if "*" in label), lambda m: "Model:" in text_of(m))
    card = first_with(chat.text(f"/train {steps} steps", "Ready to train"), "Ready to train")
    chat.press(card, "Start", lambda m: m["kind"] == "document" and m.get("filename", "").endswith(".zip"), 3600)
    chat.text("/predict", "photo")
    with zipfile.ZipFile(dataset) as archive:
        name = next(n for n in sorted(archive.namelist()) if n.endswith(".jpg") and "00001" in n)
        photo = archive.read(name)
    shot = chat.step("[photo of a kangaroo]", lambda: chat.user.send_photo(photo), lambda m: m["kind"] == "photo")
    buttons = tg.buttons(shot[-1])
    if buttons:  # the threshold buttons: the same photo re-drawn at another score
        chat.press(shot[-1], buttons[0][0], lambda m: m["kind"] == "photo" and m["event"] == "edited", 60)


def korean(tg: FakeTelegram, work: Path) -> None:
    chat = Chat(tg, tg.user(BOB, "지민", language_code="ko-KR"))
    chat.text("/start", "detbot")
    zipped = make_voc_zip(work / "도형.zip", SyntheticSpec(images=30, seed=5, classes=("원", "사각형")))
    chat.step(
        "[도형.zip]", lambda: chat.user.send_document(zipped.read_bytes(), "도형.zip"), lambda m: m["kind"] == "photo"
    )
    choice = first_with(chat.text("/model", "검출기"), "검출기")
    chat.press(choice, next(label for label, _ in tg.buttons(choice) if "*" in label), lambda m: "모델:" in text_of(m))
    card = first_with(chat.text("/train 20 steps", "학습 준비"), "학습 준비")
    chat.press(card, tg.buttons(card)[1][0], lambda m: "취소" in text_of(m))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "kangaroo.zip")
    args = parser.parse_args()
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    with tempfile.TemporaryDirectory() as work, FakeTelegram(DEFAULT_TOKEN) as tg:
        data = Path(work) / "data"
        data.mkdir()
        bot = BotProcess(tg, data, DETBOT_PROGRESS_INTERVAL_S=10)
        try:
            tg.wait_until_polling()
            english(tg, args.dataset, args.steps)
            korean(tg, Path(work))
        finally:
            bot.stop()
            kill_trainers(data)


if __name__ == "__main__":
    main()
