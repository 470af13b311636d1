"""The real bot process (`python -m bot`) against a fake Telegram Bot API on 127.0.0.1:
a scripted user from upload to trained model, and the ways it must refuse or recover."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
ANN, BOB, EVE = 1001, 1002, 6666
FAST = "trainer.steps_per_loop=5 trainer.checkpoint_interval=5"


class BotProcess:
    def __init__(self, tg: FakeTelegram, data_dir: Path, **settings):
        env = {
            **os.environ,
            **tg.env(token_var="TELEGRAM_BOT_TOKEN"),
            "ALLOWED_USER_IDS": f"{ANN},{BOB}",
            "DETBOT_DATA_DIR": str(data_dir),
            "DETBOT_PROGRESS_INTERVAL_S": "1",
            "PYTHONPATH": str(ROOT),
            **{key: str(value) for key, value in settings.items()},
        }
        self.log = (data_dir.parent / "bot.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot"], cwd=data_dir.parent, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def bot(tg, tmp_path):
    (tmp_path / "data").mkdir()
    process = BotProcess(tg, tmp_path / "data")
    tg.wait_until_polling()
    yield process
    process.stop()
    kill_trainers(tmp_path / "data")


def kill_trainers(data_dir: Path) -> None:
    """Trainers outlive the bot on purpose; a test must not leave them running."""
    from pipeline.train.job_folder import JobPaths
    from pipeline.train.job_process import running_pid

    for pid_file in data_dir.rglob("train.pid"):
        pid = running_pid(JobPaths(pid_file.parent))
        if pid:
            os.kill(pid, signal.SIGKILL)


def shapes_zip(tmp_path: Path, images: int = 40) -> bytes:
    return make_voc_zip(tmp_path / "shapes.zip", SyntheticSpec(images=images, seed=5)).read_bytes()


def text_of(message: dict) -> str:
    return message.get("text") or message.get("caption") or ""


def say(tg, user, text: str, expect: str, timeout: float = 60.0) -> dict:
    mark = tg.mark()
    user.send_text(text)
    return tg.wait_for(lambda m: expect in text_of(m), timeout=timeout, chat_id=user.chat_id, since=mark)


def test_help_and_commands(tg, bot):
    ann = tg.user(ANN, "Ann")
    reply = say(tg, ann, "/start", "Pascal VOC")
    assert "/train" in text_of(reply) and "/predict" in text_of(reply)
    assert {name for name, _ in [(c["command"], c) for c in tg.commands()]} >= {"train", "split", "labels", "model"}


def test_stranger_is_refused_and_nothing_downloaded(tg, bot, tmp_path):
    eve = tg.user(EVE, "Eve")
    mark = tg.mark()
    file_id = eve.send_document(shapes_zip(tmp_path, 12), "mine.zip")
    tg.wait_for(lambda m: "private" in text_of(m), chat_id=EVE, since=mark)
    say(tg, eve, "/status", "private")
    time.sleep(1)
    assert tg.get_file_count(file_id) == 0 and tg.download_count(file_id) == 0


def test_too_big_file_gets_the_self_hosted_advice(tg, bot):
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    file_id = ann.send_document(b"PK\x05\x06" + bytes(18), "huge.zip", file_size=25 * 2**20)
    reply = tg.wait_for(lambda m: "MB" in text_of(m), chat_id=ANN, since=mark)
    assert "self-hosted" in text_of(reply) and "/dataset" in text_of(reply)
    assert tg.download_count(file_id) == 0


def test_bad_zip_gets_a_clear_reply(tg, bot):
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    ann.send_document(b"this is not a zip", "photos.zip")
    reply = tg.wait_for(lambda m: "could not use" in text_of(m), chat_id=ANN, since=mark)
    assert "not a zip" in text_of(reply)


def test_full_flow_upload_split_labels_model_train_nan_alert_archive(tg, bot, tmp_path):
    tf = pytest.importorskip("tensorflow")
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    ann.send_document(shapes_zip(tmp_path), "shapes.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=120)
    assert "40 images" in text_of(report) and "circle" in text_of(report)
    tg.wait_for(lambda m: m["kind"] == "photo" and "boxes" in text_of(m), chat_id=ANN, since=mark)
    assert "val 8 images" in text_of(say(tg, ann, "/split 0.2 3", "Split:"))
    assert "ball" in text_of(say(tg, ann, "/labels rename circle=ball", "Classes"))
    card = say(tg, ann, "/model", "Pick a detector")
    mark = tg.mark()
    ann.press(card, "model:mobilenetv2-fpn")
    tg.wait_for(lambda m: "Model: mobilenetv2-fpn" in text_of(m), chat_id=ANN, since=mark)
    lr = "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=10.0"
    card = say(tg, ann, f"/train 20 steps {FAST} trainer.validation_interval=20 {lr}", "Ready to train")
    assert "20 steps" in text_of(card) and "batch size 8" in text_of(card)
    mark = tg.mark()
    ann.press(card, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    alert = tg.wait_for(lambda m: "Alert" in text_of(m), chat_id=ANN, since=mark, timeout=180)
    assert "NaN" in text_of(alert) and "rolling back" in text_of(alert)
    assert [b for b, _ in tg.buttons(alert)] == ["Stop", "Continue"]


def test_training_progress_plot_and_archive(tg, bot, tmp_path):
    tf = pytest.importorskip("tensorflow")
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    ann.send_document(shapes_zip(tmp_path, 24), "shapes.zip")
    tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=120)
    card = say(tg, ann, f"/train 10 steps {FAST} trainer.validation_interval=10", "Ready to train")
    mark = tg.mark()
    ann.press(card, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    tg.wait_for(lambda m: "step 5/10" in text_of(m), chat_id=ANN, since=mark, timeout=180)
    tg.wait_for(lambda m: m["kind"] == "photo" and "AP50" in text_of(m), chat_id=ANN, since=mark, timeout=180)
    tg.wait_for(lambda m: m["kind"] == "photo" and "detections" in text_of(m), chat_id=ANN, since=mark, timeout=60)
    tg.wait_for(lambda m: "finished" in text_of(m), chat_id=ANN, since=mark, timeout=180)
    archive = tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, since=mark, timeout=600)
    with zipfile.ZipFile(io.BytesIO(archive["bytes"])) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "model")
    assert "label_map.pbtxt" in names and any(n.startswith("saved_model/") for n in names)
    model = tf.saved_model.load(str(tmp_path / "model" / "saved_model"))
    assert model.signatures["serving_default"] is not None
    say(tg, ann, "/predict", "Send a photo")
    mark = tg.mark()
    ann.send_photo(_photo())
    drawn = tg.wait_for(
        lambda m: m["kind"] == "photo" and m.get("caption") is not None and "AP" not in text_of(m),
        chat_id=ANN,
        since=mark,
        timeout=180,
    )
    assert drawn["bytes"][:8] == b"\x89PNG\r\n\x1a\n"


def _photo() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (120, 140, 160))
    ImageDraw.Draw(image).ellipse((100, 60, 200, 160), fill=(220, 50, 40))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


def upload(tg, user, tmp_path: Path, images: int = 24) -> None:
    mark = tg.mark()
    user.send_document(shapes_zip(tmp_path, images), "shapes.zip")
    tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=user.chat_id, since=mark, timeout=120)


def start_training(tg, user, args: str) -> dict:
    card = say(tg, user, f"/train {args}", "Ready to train")
    mark = tg.mark()
    user.press(card, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    return tg.wait_for(lambda m: text_of(m).startswith("Job "), chat_id=user.chat_id, since=mark, timeout=120)


def job_id(message: dict) -> str:
    return text_of(message).split()[1]


def test_queue_ownership_and_restart_reattaches(tg, bot, tmp_path):
    import re

    ann, bob = tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    upload(tg, ann, tmp_path)
    upload(tg, bob, tmp_path)
    ann_status = start_training(tg, ann, f"500 steps {FAST} trainer.validation_interval=500")
    ann_job = job_id(ann_status)
    bob_status = start_training(tg, bob, f"10 steps {FAST} trainer.validation_interval=10")
    assert "position 1 in the queue" in text_of(bob_status)
    refused = say(tg, bob, f"/status {ann_job}", "of yours")
    assert ann_job in text_of(refused) and "Ann" not in text_of(refused)
    first = tg.wait_for(
        lambda m: m["message_id"] == ann_status["message_id"] and re.search(r"step \d+/500", text_of(m)),
        chat_id=ANN,
        timeout=180,
    )
    step_before = int(re.search(r"step (\d+)/500", text_of(first)).group(1))
    bot.kill()
    trainer_pid = int(
        (tmp_path / "data").joinpath(*_job_dir(tmp_path, ann_job)).joinpath("train.pid").read_text().split()[0]
    )
    os.kill(trainer_pid, 0)  # the trainer outlived the bot
    again = BotProcess(tg, tmp_path / "data")
    try:
        later = tg.wait_for(
            lambda m: (
                m["message_id"] == ann_status["message_id"]
                and int(re.search(r"step (\d+)/500", text_of(m)).group(1)) > step_before
            ),
            chat_id=ANN,
            timeout=120,
        )
        assert "running" in text_of(later)
        confirm = say(tg, ann, "/stop", "Stop job")
        mark = tg.mark()
        ann.press(confirm, f"stop:{ann_job}")
        tg.wait_for(lambda m: "stopped" in text_of(m) and ann_job in text_of(m), chat_id=ANN, since=mark, timeout=120)
        tg.wait_for(
            lambda m: m["message_id"] == bob_status["message_id"] and "running" in text_of(m), chat_id=BOB, timeout=120
        )
    finally:
        again.stop()


def _job_dir(tmp_path: Path, wanted: str) -> tuple[str, ...]:
    from storage import open_store

    with open_store(tmp_path / "data" / "detbot.db") as store:
        job = store.job(ANN, wanted)
    return job.job_dir.relative_to(tmp_path / "data").parts


@pytest.mark.skipif(not (SHARED / "kangaroo.zip").exists(), reason="shared datasets not present")
def test_kangaroo_upload_report(tg, bot):
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    ann.send_document((SHARED / "kangaroo.zip").read_bytes(), "kangaroo.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=180)
    text = text_of(report)
    assert "164 images" in text and "kangaroo" in text and "bad_image x1" in text and "00090.jpg" in text


def test_dead_trainer_is_marked_interrupted_and_resumes(tg, bot, tmp_path):
    import re

    from pipeline.train.job_folder import JobPaths
    from pipeline.train.job_process import running_pid
    from storage import open_store

    ann = tg.user(ANN, "Ann")
    upload(tg, ann, tmp_path)
    status = start_training(tg, ann, f"500 steps {FAST} trainer.validation_interval=500")
    job = job_id(status)
    tg.wait_for(lambda m: re.search(r"step \d+/500", text_of(m)), chat_id=ANN, timeout=180)
    with open_store(tmp_path / "data" / "detbot.db") as store:
        job_dir = store.job(ANN, job).job_dir
    deadline = time.monotonic() + 120  # progress is reported before the loop's checkpoint is written
    while time.monotonic() < deadline and '"checkpoint"' not in (job_dir / "events.jsonl").read_text():
        time.sleep(0.2)
    os.kill(running_pid(JobPaths(job_dir)), signal.SIGKILL)
    notice = tg.wait_for(lambda m: "stopped unexpectedly" in text_of(m), chat_id=ANN, timeout=60)
    assert f"/resume {job}" in text_of(notice)
    mark = tg.mark()
    ann.send_text(f"/resume {job}")
    resumed = tg.wait_for(
        lambda m: re.search(r"step \d+/500", text_of(m)) and "running" in text_of(m),
        chat_id=ANN,
        since=mark,
        timeout=180,
    )
    assert job in text_of(resumed)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the trainer itself confirms it resumed from its checkpoint
        events = [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]
        starts = [e for e in events if e["event"] == "started"]
        if len(starts) == 2 and events[-1]["event"] == "progress":
            break
        time.sleep(0.5)
    assert [e["resumed"] for e in starts] == [False, True] and starts[1]["step"] > 0
    assert events[-1]["step"] > starts[1]["step"]
