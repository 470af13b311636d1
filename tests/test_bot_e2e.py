"""The real bot process (`python -m bot`) against a fake Telegram Bot API on 127.0.0.1:
a scripted user from upload to trained model, and the ways it must refuse or recover.

Trainings are real and as short as a chat user can ask for; one of them lives through a bot restart, a
killed trainer, a resume and a queue. The model the user receives is the run's shared ``trained_job``,
recorded in the bot's store as the bot records a finished job (``seed_finished_job``; the bot's end of it, its
archive and /predict are checked in test_bot_predict_e2e.py), so no test here trains to the end."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from pipeline.train.events import read_events
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import running_pid
from tests.builders import copy_job
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
ANN, BOB, EVE = 1001, 1002, 6666
# Loops of 5 steps, each with a checkpoint: progress and something to resume from within seconds.
FAST = "report_every=5 checkpoint_every=5"
PNG = b"\x89PNG\r\n\x1a\n"


class BotProcess:
    def __init__(self, tg: FakeTelegram, data_dir: Path, command: tuple[str, ...] = ("-m", "bot"), **settings):
        env = {
            **os.environ,
            **tg.env(token_var="TELEGRAM_BOT_TOKEN"),
            "ALLOWED_USER_IDS": f"{ANN},{BOB}",
            "DETBOT_DATA_DIR": str(data_dir),
            "DETBOT_PROGRESS_INTERVAL_S": "1",
            # Nothing can be downloaded here: the catalogue's checkpoints are out of reach, so the bot trains
            # from scratch (pretrained starts are tested in test_finetune.py, from a checkpoint served locally).
            "DETBOT_NO_PRETRAINED": "1",
            "PYTHONPATH": str(ROOT),
            **{key: str(value) for key, value in settings.items()},
        }
        self.log = (data_dir.parent / "bot.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *command], cwd=data_dir.parent, env=env, stdout=self.log, stderr=subprocess.STDOUT
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


def kill_trainers(data_dir: Path) -> None:
    """Trainers outlive the bot on purpose; a test must not leave them running."""
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


def test_full_flow_upload_split_labels_model_and_training_card(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    ann.send_document(shapes_zip(tmp_path), "shapes.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=120)
    assert "40 images" in text_of(report) and "circle" in text_of(report)
    assert "typing" in [action["action"] for action in tg.chat_actions(ANN)]  # shown while the check ran
    tg.wait_for(lambda m: m["kind"] == "photo" and "boxes" in text_of(m), chat_id=ANN, since=mark)
    assert "val 8 images" in text_of(say(tg, ann, "/split 0.2 3", "Split:"))
    assert "ball" in text_of(say(tg, ann, "/labels rename circle=ball", "Classes"))
    card = say(tg, ann, "/model", "Pick a detector")
    mark = tg.mark()
    ann.press(card, "model:mobilenetv2-fpn")
    tg.wait_for(lambda m: "Model: mobilenetv2-fpn" in text_of(m), chat_id=ANN, since=mark)
    card = say(tg, ann, "/train 20 steps lr=0.01", "Ready to train")
    for shown in ("mobilenetv2-fpn", "ball", "32 train / 8 val", "batch size 8, 20 steps", "lr=0.01"):
        assert shown in text_of(card)
    mark = tg.mark()
    ann.press(card, card["reply_markup"]["inline_keyboard"][0][1]["callback_data"])
    tg.wait_for(lambda m: m["message_id"] == card["message_id"] and "Cancelled" in text_of(m), chat_id=ANN, since=mark)
    assert "No such job" in text_of(say(tg, ann, "/status", "job"))


@pytest.mark.slow
def test_a_training_lives_through_restart_death_resume_and_queue_and_a_nan_alerts(tg, bot, tmp_path):
    """One job: progress and evaluation in the chat, a bot restart, a killed trainer, /resume, another user's
    job queued behind it that starts when it is stopped, and that job's NaN alert: three trainer starts."""
    ann, bob = tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    upload(tg, ann, tmp_path)
    upload(tg, bob, tmp_path)
    mark = tg.mark()
    status = start_training(tg, ann, f"500 steps {FAST} eval_every=10")
    job, job_dir = job_id(status), _job_dir(tmp_path, ANN, job_id(status))
    _progress_and_evaluation_reach_the_chat(tg, status, mark)
    before = _shown_step(tg, status)
    bot.kill()
    assert running_pid(JobPaths(job_dir)), "the trainer outlived the bot"
    mark = tg.mark()
    again = BotProcess(tg, tmp_path / "data")
    try:
        later = tg.wait_for(lambda m: _is_status(m, status) and _step(m) > before, chat_id=ANN, since=mark, timeout=120)
        assert "running" in text_of(later)
        _killed_trainer_is_interrupted(tg, status, job_dir)
        mark = tg.mark()
        ann.send_text(f"/resume {job}")
        reply = tg.wait_for(
            lambda m: not _is_status(m, status) and text_of(m).startswith(f"Job {job} ("), chat_id=ANN, since=mark
        )
        assert "running" in text_of(reply)
        bob_status = _queued_behind(tg, bob, job)
        _resumed_from_its_checkpoint(tg, status, job_dir, mark)
        _stopped_and_the_queue_moves_on(tg, ann, job, bob_status)
        bob_job = job_id(bob_status)
        alert = tg.wait_for(lambda m: "Alert" in text_of(m), chat_id=BOB, timeout=180)
        assert bob_job in text_of(alert) and "NaN" in text_of(alert) and "rolling back" in text_of(alert)
        assert [b for b, _ in tg.buttons(alert)] == ["Stop", "Continue"]
        mark = tg.mark()
        bob.press(alert, f"nan:stop:{bob_job}")
        tg.wait_for(lambda m: "stopping" in text_of(m) and bob_job in text_of(m), chat_id=BOB, since=mark)
    finally:
        kill_trainers(tmp_path / "data")
        again.stop()


def _progress_and_evaluation_reach_the_chat(tg, status: dict, since: int) -> None:
    tg.wait_for(lambda m: _is_status(m, status) and _step(m) > 0, chat_id=ANN, since=since, timeout=180)
    plot = tg.wait_for(lambda m: m["kind"] == "photo" and "AP50" in text_of(m), chat_id=ANN, since=since, timeout=180)
    assert plot["bytes"][:8] == PNG and job_id(status) in text_of(plot)
    tg.wait_for(lambda m: m["kind"] == "photo" and "detections" in text_of(m), chat_id=ANN, since=since, timeout=60)


def _killed_trainer_is_interrupted(tg, status: dict, job_dir: Path) -> None:
    paths = JobPaths(job_dir)
    assert any(e["event"] == "checkpoint" for e in read_events(paths.events))
    os.kill(running_pid(paths), signal.SIGKILL)
    notice = tg.wait_for(lambda m: "stopped unexpectedly" in text_of(m), chat_id=ANN, timeout=60)
    assert f"/resume {job_id(status)}" in text_of(notice)


def _queued_behind(tg, bob, ann_job: str) -> dict:
    """Bob's job waits for Ann's, whose status he cannot see: its status message."""
    bob_status = start_training(tg, bob, f"20 steps lr=10 {FAST}")
    assert "position 1 in the queue" in text_of(bob_status)
    refused = say(tg, bob, f"/status {ann_job}", "of yours")
    assert ann_job in text_of(refused) and "Ann" not in text_of(refused)
    return bob_status


def _resumed_from_its_checkpoint(tg, status: dict, job_dir: Path, since: int) -> None:
    """The trainer itself says it resumed from its checkpoint and trains on; the status message follows it."""
    path = JobPaths(job_dir).events
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        events = read_events(path)
        starts = [e for e in events if e["event"] == "started"]
        if len(starts) == 2 and events[-1]["event"] in ("progress", "checkpoint"):
            break
        time.sleep(0.5)
    assert [e["resumed"] for e in starts] == [False, True] and starts[1]["step"] > 0
    assert events[-1]["step"] > starts[1]["step"]
    step = starts[1]["step"]
    tg.wait_for(lambda m: _is_status(m, status) and _step(m) > step, chat_id=ANN, since=since, timeout=60)


def _stopped_and_the_queue_moves_on(tg, ann, ann_job: str, bob_status: dict) -> None:
    confirm = say(tg, ann, "/stop", "Stop job")
    mark = tg.mark()
    ann.press(confirm, f"stop:{ann_job}")
    tg.wait_for(
        lambda m: "stopped at step" in text_of(m) and ann_job in text_of(m), chat_id=ANN, since=mark, timeout=120
    )
    tg.wait_for(lambda m: _is_status(m, bob_status) and "running" in text_of(m), chat_id=BOB, since=mark, timeout=120)


def _is_status(message: dict, status: dict) -> bool:
    return message["message_id"] == status["message_id"] and message["chat_id"] == status["chat_id"]


def _step(message: dict) -> int:
    """The step a status message shows; -1 before the first progress report."""
    found = re.search(r"step (\d+)/\d+", text_of(message))
    return int(found.group(1)) if found else -1


def _shown_step(tg, status: dict) -> int:
    current = next(m for m in tg.messages(status["chat_id"]) if m["message_id"] == status["message_id"])
    return _step(current)


def seed_finished_job(data: Path, trained_job: Path, archive: Path, workspace: Path) -> tuple[str, Path]:
    """Ann's job as the bot records one whose trainer has just finished and been exported: her ready dataset (a
    copy of ``workspace``), the job's folder in it (a copy of ``trained_job``), the model archive there, and the
    job still "running" in the store until the watcher reads the trainer's last events. (job id, archive)."""
    from storage import open_store

    dataset_dir = data / "users" / str(ANN) / "datasets" / "shapes"
    shutil.copytree(workspace, dataset_dir)
    summary = json.loads((dataset_dir / "summary.json").read_text())
    with open_store(data / "detbot.db") as store:
        store.ensure_user(ANN, "Ann")
        size = sum(path.stat().st_size for path in dataset_dir.rglob("*") if path.is_file())
        dataset = store.add_dataset(ANN, "shapes.zip", dataset_dir, size)
        store.finish_dataset(dataset.id, summary)
        store.set_current_dataset(ANN, dataset.id)
        request = {"model": "mobilenetv2-fpn", "steps": 200, "epochs": None, "overrides": []}
        job = store.add_job(
            ANN, ANN, dataset.id, dataset_dir / "jobs" / "mobilenetv2-fpn-trained", "mobilenetv2-fpn", request
        )
        copy_job(trained_job, job.job_dir)
        kept = shutil.copyfile(archive, job.job_dir / f"model-{job.id}.zip")
        now = time.time()
        store.update_job(job.id, status="running", started=now - 60, archive=kept)
    return job.id, kept


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


def _job_dir(tmp_path: Path, user: int, wanted: str) -> Path:
    from storage import open_store

    with open_store(tmp_path / "data" / "detbot.db") as store:
        return store.job(user, wanted).job_dir


@pytest.mark.skipif(not (SHARED / "kangaroo.zip").exists(), reason="shared datasets not present")
def test_kangaroo_upload_report(tg, bot):
    ann = tg.user(ANN, "Ann")
    mark = tg.mark()
    ann.send_document((SHARED / "kangaroo.zip").read_bytes(), "kangaroo.zip")
    report = tg.wait_for(lambda m: text_of(m).startswith("Dataset "), chat_id=ANN, since=mark, timeout=180)
    text = text_of(report)
    assert "164 images" in text and "kangaroo" in text and "bad_image x1" in text and "00090.jpg" in text
