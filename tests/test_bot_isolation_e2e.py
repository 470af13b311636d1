"""Chat level, the real bot process against the fake Bot API: one user's broken job or blocked chat
never stalls anyone else, and a dataset a job trains on cannot be re-split or relabelled.

No training runs: each job is a store row whose events.jsonl the test writes by hand and whose
trainer is a sleeping process of the test (what `pipeline.train.job_process.running_pid` checks)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.data.steps import prepare
from pipeline.data.synthetic import SyntheticSpec, make_voc_zip
from pipeline.train.events import EventLog
from pipeline.train.job_process import process_start
from storage import open_store
from tests.test_bot_e2e import ANN, BOB, BotProcess, say, text_of


@pytest.fixture
def sleepers():
    started: list[subprocess.Popen] = []

    def start() -> int:
        started.append(subprocess.Popen(["sleep", "300"]))
        return started[-1].pid

    yield start
    for process in started:
        process.kill()
        process.wait()


class World:
    """The bot's data folder, seeded through the store before (and changed while) the bot runs."""

    def __init__(self, root: Path):
        self.root, self.data = root, root / "data"
        self.data.mkdir()
        self.store = open_store(self.data / "detbot.db")

    def dataset(self, user: int, workspace: Path | None = None, summary: dict | None = None) -> str:
        self.store.ensure_user(user, f"user {user}")
        workspace = workspace or self.data / f"ws-{user}-{time.monotonic_ns()}"
        dataset = self.store.add_dataset(user, "shapes.zip", workspace, 1000)
        self.store.finish_dataset(dataset.id, summary or {"images": 12, "classes": {"circle": {}}})
        self.store.set_current_dataset(user, dataset.id)
        return dataset.id

    def job(self, user: int, dataset_id: str, pid: int | None = None) -> tuple[str, EventLog]:
        """A queued job, or with ``pid`` a running one whose trainer is that process."""
        folder = self.data / f"job-{time.monotonic_ns()}"
        folder.mkdir()
        job = self.store.add_job(user, user, dataset_id, folder, "mobilenetv2-fpn", {"steps": 100})
        if pid is not None:
            (folder / "train.pid").write_text(f"{pid} {process_start(pid)}\n")
            self.store.update_job(job.id, status="running", pid=pid, started=time.time())
        return job.id, EventLog(folder / "events.jsonl")


@pytest.fixture
def world(tmp_path):
    seeded = World(tmp_path)
    yield seeded
    seeded.store.close()


@pytest.fixture
def start_bot(tg, world):
    bots = []

    def start(**settings) -> BotProcess:
        bots.append(BotProcess(tg, world.data, **settings))
        tg.wait_until_polling()
        return bots[-1]

    yield start
    for bot in bots:
        bot.stop()


def progress(log: EventLog, step: int) -> None:
    log.emit("progress", step, total_loss=1.0 / step, total_steps=100, images_per_sec=9.0)


def status_shows(tg, chat_id: int, job_id: str, step: int, since: int = 0, timeout: float = 20.0) -> dict:
    return tg.wait_for(
        lambda m: text_of(m).startswith(f"Job {job_id}") and f"step {step}/100" in text_of(m),
        chat_id=chat_id,
        since=since,
        timeout=timeout,
    )


def test_a_corrupt_events_line_stalls_neither_other_jobs_nor_the_queue(tg, world, sleepers, start_bot):
    tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    ann_job, ann_log = world.job(ANN, world.dataset(ANN), sleepers())
    ann_log.emit("started", 0)
    with ann_log.path.open("ab") as stream:  # torn by a full disk, then continued on a new line
        stream.write(b'{"event": "progress", "step": 3, "tot\n')
    progress(ann_log, 5)
    bob_dataset = world.dataset(BOB)
    bob_job, bob_log = world.job(BOB, bob_dataset, sleepers())
    queued, _ = world.job(BOB, bob_dataset)  # its workspace has no records: the launch fails at once
    progress(bob_log, 5)
    start_bot(DETBOT_TRAINING_SLOTS=3)
    status_shows(tg, ANN, ann_job, 5)
    mark = tg.mark()
    progress(bob_log, 9)
    status_shows(tg, BOB, bob_job, 9, since=mark)
    notice = tg.wait_for(lambda m: queued in text_of(m) and "could not start" in text_of(m), chat_id=BOB, timeout=20)
    assert "no train/val records" in text_of(notice)  # the reason, not just "failed"
    assert "no train/val records" in world.store.job_by_id(queued).error
    mark = tg.mark()
    progress(ann_log, 12)  # the corrupt line is behind her job's offset now: it goes on too
    status_shows(tg, ANN, ann_job, 12, since=mark)


def test_a_user_who_blocked_the_bot_is_paused_while_others_continue(tg, world, sleepers, start_bot):
    ann = tg.user(ANN, "Ann")
    tg.user(BOB, "Bob")  # Bob can still be reached; only Ann blocked the bot
    ann_job, ann_log = world.job(ANN, world.dataset(ANN), sleepers())
    bob_job, bob_log = world.job(BOB, world.dataset(BOB), sleepers())
    ann.block()
    progress(ann_log, 5), progress(bob_log, 5)
    start_bot(DETBOT_TRAINING_SLOTS=2)
    status_shows(tg, BOB, bob_job, 5)
    tg.wait_until(lambda: world.store.notices_paused(ANN), timeout=20, what="Ann's notices to be paused")
    refused = [c for c in tg.requests if c.params.get("chat_id") == ANN]
    assert [c.status for c in refused] == [403]
    for step in (20, 30, 40):  # several ticks of progress for both; only Bob hears of it
        mark = tg.mark()
        progress(ann_log, step), progress(bob_log, step)
        status_shows(tg, BOB, bob_job, step, since=mark)
    assert [c for c in tg.requests if c.params.get("chat_id") == ANN] == refused
    assert world.store.events(ann_job)[-1].step == 40  # her job is still mirrored
    ann.unblock()
    say(tg, ann, "/jobs", ann_job)  # writing again lifts the pause
    assert not world.store.notices_paused(ANN)
    mark = tg.mark()
    progress(ann_log, 50)
    status_shows(tg, ANN, ann_job, 50, since=mark)


def test_split_and_labels_are_refused_on_a_dataset_in_use(tg, world, sleepers, start_bot, tmp_path):
    summaries = {}
    for name in ("one", "two"):
        archive = make_voc_zip(tmp_path / f"{name}.zip", SyntheticSpec(images=12, seed=3))
        summaries[name] = prepare(archive, world.data / name)
    running_on = world.dataset(ANN, world.data / "one", summaries["one"])
    running, _ = world.job(ANN, running_on, sleepers())
    queued_on = world.dataset(ANN, world.data / "two", summaries["two"])
    queued, _ = world.job(ANN, queued_on)  # one training slot, held by `running`: it stays queued
    world.store.set_current_dataset(ANN, running_on)
    records = sorted((world.data / "one" / "data").glob("*.tfrecord"))
    before = {path: path.read_bytes() for path in [*records, world.data / "one" / "split.json"]}
    start_bot()
    ann = tg.user(ANN, "Ann")
    refusal = text_of(say(tg, ann, "/split 0.3", "in use"))
    assert f"Dataset {running_on} is in use by job {running} (running)" in refusal and "/stop" in refusal
    assert f"{running} (running)" in text_of(say(tg, ann, "/labels rename circle=ball", "in use"))
    listing = text_of(say(tg, ann, "/labels", "Classes"))  # reading the classes is fine
    assert "circle" in listing and "ball" not in listing
    assert {path: path.read_bytes() for path in before} == before

    world.store.set_current_dataset(ANN, queued_on)
    assert f"{queued} (queued)" in text_of(say(tg, ann, "/split 0.3", "in use"))
    card = say(tg, ann, f"/stop {queued}", "Stop job")
    mark = tg.mark()
    ann.press(card, f"stop:{queued}")
    tg.wait_for(lambda m: "Stopping job" in text_of(m), chat_id=ANN, since=mark)
    split = text_of(say(tg, ann, "/split 0.3", "Split:"))  # no job uses it any more
    assert re.search(r"val [34] images", split)
    assert "ball" in text_of(say(tg, ann, "/labels rename circle=ball", "Classes"))
    assert world.store.dataset(ANN, queued_on).ready
