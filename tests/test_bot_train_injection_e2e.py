"""Issue 8, at chat level (the real bot process against the fake Bot API): /train words are data.

No trainer option and no config key outside the allowlist gets past /train, nor does a length
that is not finite, positive and within DETBOT_MAX_STEPS; allowed settings reach the trainer only
as the bot writes them; a launch that fails says why and frees its place at once.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import yaml

from storage import open_store
from tests.test_bot_e2e import ANN, BotProcess, kill_trainers, say, text_of, upload
from tests.test_chat_overrides import FORBIDDEN_KEYS, TRAINER_OPTIONS

MAX_STEPS = 1000
LR_KEY = "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate"


@pytest.fixture
def bot(tg, tmp_path):
    (tmp_path / "data").mkdir()
    process = BotProcess(tg, tmp_path / "data", DETBOT_MAX_STEPS=MAX_STEPS, DETBOT_MAX_JOBS_PER_USER=1)
    tg.wait_until_polling()
    yield process
    process.stop()
    kill_trainers(tmp_path / "data")


def reply(tg, user, text: str) -> str:
    """The bot's next message in the user's chat after ``text``."""
    mark = tg.mark()
    user.send_text(text)
    return text_of(tg.wait_for(lambda m: m["kind"] == "text", chat_id=user.chat_id, since=mark, timeout=30))


def jobs_of(tmp_path, user_id: int = ANN):
    with open_store(tmp_path / "data" / "detbot.db") as store:
        return store.jobs(user_id)


def press_start(tg, user, card: dict) -> int:
    mark = tg.mark()
    user.press(card, card["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    return mark


def test_injection_attempts_are_refused_and_no_job_or_trainer_comes_of_them(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    upload(tg, ann, tmp_path)
    for word in TRAINER_OPTIONS + ("--job-dir", "--pretrained-url"):
        text = reply(tg, ann, f"/train 1 steps {word} {tmp_path / 'elsewhere'}")
        assert "looks like an option of the trainer" in text and "lr:" in text, word
    for word in FORBIDDEN_KEYS:
        text = reply(tg, ann, f"/train 1 steps {word}")
        assert f"'{word.partition('=')[0]}' cannot be set from the chat" in text and "batch:" in text, word
    for words in ("1e15 steps", "steps=1e15", "inf", "nan", "-1", "1e15", f"{MAX_STEPS + 1} steps"):
        assert re.search(r"refused: (steps|epochs) must be", reply(tg, ann, f"/train {words}")), words
    for words, refusal in (
        ("lr=1e9", "lr (learning rate) must be a number from 1e-06 to 10"),
        ("batch=0", "batch (images per training step) must be a whole number from 1 to 256"),
        ("hflip=/etc/passwd", "true or false"),
    ):
        assert refusal in reply(tg, ann, f"/train 1 steps {words}"), words
    # Epochs are planned into steps first (an epoch is at least one step), then held to the ceiling.
    assert re.search(rf"makes \d+ training steps; this bot allows at most {MAX_STEPS}\.", reply(tg, ann, "/train 5000"))
    assert jobs_of(tmp_path) == []
    assert not list((tmp_path / "data").rglob("jobs")) and not (tmp_path / "elsewhere").exists()
    assert "Ready to train" in reply(tg, ann, "/train 5 steps lr=0.01")  # the same chat, a fair request


def test_allowed_settings_reach_the_trainer_only_as_the_bot_writes_them(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    upload(tg, ann, tmp_path)
    card = say(
        tg, ann, "/train 5 steps lr=0.02 batch=4 eval_every=20 early_stop=2 hflip=false scale_max=1.5", "Ready to train"
    )
    assert "batch size 4, 5 steps" in text_of(card) and "lr=0.02" in text_of(card)
    mark = press_start(tg, ann, card)
    tg.wait_for(lambda m: "running" in text_of(m), chat_id=ANN, since=mark, timeout=90)
    (job,) = jobs_of(tmp_path)
    meta = json.loads((job.job_dir / "job.json").read_text())
    request = meta["request"]
    assert (request["steps"], request["batch_size"], request["early_stop_evals"]) == (5, 4, 2)
    assert request["pretrained_url"] is None and request.get("url_policy", "public") == "public"
    assert request["overrides"] == [
        f"{LR_KEY}=0.02",
        "trainer.validation_interval=20",
        "task.train_data.parser.aug_rand_hflip=false",
        "task.train_data.parser.aug_scale_max=1.5",
    ]
    params = yaml.safe_load((job.job_dir / "params.yaml").read_text())
    assert params["trainer"]["optimizer_config"]["learning_rate"]["cosine"]["initial_learning_rate"] == 0.02
    assert params["task"]["train_data"]["parser"]["aug_rand_hflip"] is False
    assert params["task"]["model"]["num_classes"] <= 4 and params["task"]["init_checkpoint"] in (None, "")
    launch = (job.job_dir / "launch.log").read_text()
    assert "exit 0" in launch and "--url-policy public" in launch and f" -- {LR_KEY}=0.02" in launch
    os.kill(job.pid, signal.SIGKILL)  # the detached trainer this test had the bot start; no training needed


def test_a_launch_that_fails_says_why_and_frees_its_place_at_once(tg, bot, tmp_path):
    ann = tg.user(ANN, "Ann")
    upload(tg, ann, tmp_path)
    first = say(tg, ann, "/train 5 steps", "Ready to train")
    second = say(tg, ann, "/train 6 steps", "Ready to train")
    for record in (tmp_path / "data").rglob("*.tfrecord"):  # the workspace loses its records after the cards
        record.unlink()
    for card in (first, second):  # with one job allowed, the second starts only if the first let go
        mark = press_start(tg, ann, card)
        failure = tg.wait_for(lambda m: "could not start" in text_of(m), chat_id=ANN, since=mark, timeout=60)
        assert "no train/val records" in text_of(failure) and "/train again" in text_of(failure)
        assert failure["message_id"] == card["message_id"]  # the card became the job's status message
    jobs = jobs_of(tmp_path)
    assert [job.status for job in jobs] == ["failed", "failed"] and all(job.pid is None for job in jobs)
    assert all("no train/val records" in job.error and job.finished - job.started < 30 for job in jobs)
    assert all("exit 1" in (job.job_dir / "launch.log").read_text() for job in jobs)
