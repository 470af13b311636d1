"""Telegram's limits by construction (issue 11): 4096 characters a message, 1024 a caption.

The fake Bot API refuses longer ones with Telegram's 400s, so a reply path that bypasses
``bot/send.py`` fails here: a 300-class dataset through the real bot (report, /split, /labels,
the /train card), the end of a 300-class training (its "finished" words and then the archive),
and a dataset with one image and 50 copies of it.
"""

from __future__ import annotations

import ast
import json
import random
import time
from pathlib import Path

import pytest

from bot import send, texts
from storage import open_store
from tests.builders import image_bytes, xml, zip_bytes
from tests.test_bot_e2e import ANN, BotProcess, say, text_of

BOT = Path(__file__).resolve().parents[1] / "bot"
SENDING = {
    "reply_text",
    "reply_photo",
    "reply_document",
    "reply_media_group",
    "send_message",
    "send_photo",
    "send_document",
    "send_media_group",
    "edit_message_text",
    "edit_message_caption",
}
CLASSES = [f"part_number_{index:03d}_with_a_long_name" for index in range(300)]


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


def refused_calls(tg) -> list[str]:
    return [f"{c.method}: {c.error}" for c in tg.requests if (c.status or 0) >= 400]


def many_classes_zip() -> bytes:
    """20 images of 30 boxes each: every one of the 300 classes in two images, in a few hundred KB."""
    entries = {}
    for index in range(20):
        names = CLASSES[(index % 10) * 30 : (index % 10 + 1) * 30]
        boxes = [
            (name, 4 + 50 * (n % 6), 4 + 40 * (n // 6), 44 + 50 * (n % 6), 38 + 40 * (n // 6))
            for n, name in enumerate(names)
        ]
        entries[f"parts/{index:03d}.jpg"] = image_bytes((320, 240), color=(10 * index, 90, 160))
        entries[f"parts/{index:03d}.xml"] = xml(f"{index:03d}.jpg", (320, 240), boxes)
    return zip_bytes(entries)


def sent_since(tg, mark: int) -> list[dict]:
    return [e for e in tg.events(ANN, since=mark) if e["event"] == "sent"]


def test_no_reply_path_bypasses_the_send_helper():
    """Every send and edit of a text or caption is in bot/send.py: nowhere else can pass a limit."""
    found = []
    for path in BOT.rglob("*.py"):
        if path.name == "send.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in SENDING:
                found.append(f"{path.relative_to(BOT.parent)}:{node.lineno} {node.attr}")
    assert found == []


def test_long_texts_split_at_lines_and_cut_ones_say_so():
    rng = random.Random(3)
    lines = ["x" * rng.randint(0, 300) for _ in range(400)] + ["y " * 5000, "한" * 5000, "\U0001f600" * 3000]
    text = "\n".join(lines)
    pieces = send.chunks(text)
    assert all(0 < send.length(piece) <= send.TEXT_LIMIT for piece in pieces)
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    short = send.chunks("\n".join(lines[:400]))  # lines that fit are never broken
    assert [line for piece in short for line in piece.split("\n") if line] == [line for line in lines[:400] if line]
    cut = send.fit(text, send.CAPTION_LIMIT)
    assert send.length(cut) <= send.CAPTION_LIMIT and cut.endswith("more lines)")


def test_a_300_class_dataset_report_split_labels_and_card(tg, bot):
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    ann.send_document(many_classes_zip(), "parts.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=120)
    dataset_id = text_of(report).split()[1].rstrip(":")
    assert "300 classes" in text_of(report) and texts.report_file(dataset_id) in text_of(report)
    attached = tg.wait_for(lambda m: m["filename"] == texts.report_file(dataset_id), chat_id=ANN, since=mark)
    whole = attached["bytes"].decode()
    assert all(f"  {name}: " in whole for name in CLASSES)
    tg.wait_for(lambda m: m["kind"] == "photo", chat_id=ANN, since=mark)  # the preview follows the report

    mark = tg.mark()
    ann.send_text("/split 0.2 3")
    table = tg.wait_for(lambda m: m["filename"] == texts.split_file(dataset_id), chat_id=ANN, since=mark)
    assert all(name in table["bytes"].decode() for name in CLASSES)
    assert any(text_of(m).startswith("Split: ") for m in sent_since(tg, mark))

    mark = tg.mark()
    ann.send_text("/labels")
    tg.wait_for(lambda m: "/labels file" in text_of(m), chat_id=ANN, since=mark)
    listed = "\n".join(text_of(m) for m in sent_since(tg, mark))
    assert len(sent_since(tg, mark)) >= 2 and all(f": {name}" in listed for name in CLASSES)

    card = say(tg, ann, "/train 20 steps", "Ready to train")
    assert "and 288 more, 300 in all (/labels lists them)" in text_of(card)
    assert [label for label, _ in tg.buttons(card)] == [texts.START_BUTTON, texts.CANCEL_BUTTON]
    assert refused_calls(tg) == []


def test_51_copies_of_one_image_are_one_short_line_and_the_whole_list_is_attached(tg, bot):
    ann = tg.user(ANN, "Ann")
    copies = [f"holiday_photo_{index:04d}.jpg" for index in range(51)]
    entries = {f"trip/{name}": image_bytes((64, 48)) for name in copies}
    entries |= {f"trip/{name[:-4]}.xml": xml(name, (64, 48), [("cat", 5, 5, 30, 30)]) for name in copies}
    for index in range(6):  # something to split besides the copies
        entries[f"trip/other_{index}.jpg"] = image_bytes((64, 48), color=(20 * index, 200, 90))
        entries[f"trip/other_{index}.xml"] = xml(f"other_{index}.jpg", (64, 48), [("cat", 5, 5, 30, 30)])
    mark = tg.mark()
    ann.send_document(zip_bytes(entries), "trip.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=60)
    line = next(line for line in text_of(report).split("\n") if "byte-identical" in line)
    assert len(line) < 220 and line.endswith("more")
    dataset_id = text_of(report).split()[1].rstrip(":")
    attached = tg.wait_for(lambda m: m["filename"] == texts.report_file(dataset_id), chat_id=ANN, since=mark)
    assert all(name in attached["bytes"].decode() for name in copies)
    assert refused_calls(tg) == []


def seed_job(data_dir: Path, user_id: int, events: list[dict], archive: bytes | None = None) -> str:
    """A job of ``user_id``'s as the bot records one whose trainer wrote ``events`` and has exited, with no
    TensorFlow: a ready dataset row, the job "running" until the watcher reads the events; the model archive
    (any bytes: it is only sent) when given. The job's id."""
    workspace = data_dir / "users" / str(user_id) / "datasets" / "seeded"
    job_dir = workspace / "jobs" / "seeded-job"
    job_dir.mkdir(parents=True)
    (job_dir / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
    summary = {"images": 20, "labelled_images": 20, "classes": {}, "splits": {}, "problems": []}
    with open_store(data_dir / "detbot.db") as store:
        store.ensure_user(user_id, "Ann")
        dataset = store.finish_dataset(store.add_dataset(user_id, "seeded.zip", workspace, 1000).id, summary)
        store.set_current_dataset(user_id, dataset.id)
        request = {"model": "mobilenetv2-fpn", "steps": 200, "epochs": None, "overrides": []}
        job = store.add_job(user_id, user_id, dataset.id, job_dir, "mobilenetv2-fpn", request)
        kept = None
        if archive is not None:
            kept = job_dir / f"model-{job.id}.zip"
            kept.write_bytes(archive)
        store.update_job(job.id, status="running", started=time.time() - 60, archive=kept)
    return job.id


def finished_events(classes: list[str]) -> list[dict]:
    per_class = {name: round(0.3 + 0.002 * index, 3) for index, name in enumerate(classes)}
    return [
        {"event": "started", "step": 0, "time": time.time() - 50, "resumed": False},
        {"event": "finished", "step": 200, "time": time.time() - 1, "AP": 0.41, "AP50": 0.77, "best_step": 200}
        | {"per_class_AP": per_class},
    ]


def test_the_end_of_a_300_class_training_is_said_and_its_archive_still_follows(tg, data_dir):
    job = seed_job(data_dir, ANN, finished_events(CLASSES), archive=b"PK\x05\x06" + bytes(18))
    tg.user(ANN, "Ann")
    mark = tg.mark()
    process = BotProcess(tg, data_dir)
    try:
        archive = tg.wait_for(lambda m: m["filename"] == f"model-{job}.zip", chat_id=ANN, since=mark, timeout=60)
        sent = sent_since(tg, mark)
        words = next(m for m in sent if text_of(m).startswith(f"Job {job} finished"))
        table = next(m for m in sent if m["filename"] == texts.ap_file(job))
        assert words["seq"] < table["seq"] < archive["seq"] and archive["caption"] == texts.ARCHIVE_CAPTION
        assert "Weakest classes: part_number_000_with_a_long_name AP 0.300" in text_of(words)
        assert all(f"  {name}: AP" in table["bytes"].decode() for name in CLASSES)
        assert refused_calls(tg) == []
    finally:
        process.stop()
