"""The watcher keeps every job and every user apart: a torn or corrupt events.jsonl line, a job
that cannot be read, or a user who blocked the bot (403) never stalls the other jobs or the queue.

The watcher runs for real, with python-telegram-bot's Bot talking to the fake Bot API; the jobs
are store rows whose events.jsonl is written by hand and whose trainer is a sleeping process."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from types import SimpleNamespace

import pytest
from telegram import Bot

from bot.config import load_settings
from bot.monitor import watch
from bot.training import TrainingService
from bot.users import Users
from pipeline.train.events import EventLog
from pipeline.train.job_process import process_start
from storage import MIGRATIONS, DatasetInUse, StoreError, open_store
from tests.fake_telegram import DEFAULT_TOKEN

ANN, BOB = 1001, 1002


@pytest.fixture
def sleeper():
    """A live process to stand in for a trainer, so `running_pid` sees the job as running."""
    process = subprocess.Popen(["sleep", "300"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture
def service(tmp_path):
    store = open_store(tmp_path / "detbot.db")
    launched = []

    async def run_cli(args, env=None):  # the trainer launch; what is tested is that the queue gets here
        launched.append(args)
        return {"pid": 999_999}

    settings = load_settings(
        {
            "TELEGRAM_BOT_TOKEN": "123:abc",
            "ALLOWED_USER_IDS": f"{ANN},{BOB}",
            "DETBOT_TRAINING_SLOTS": "3",
            "DETBOT_DATA_DIR": str(tmp_path),
            # A status message changes at most once a progress interval: the shortest, for ticks a second apart.
            "DETBOT_PROGRESS_INTERVAL_S": "1",
        },
        env_file=None,
    )
    svc = TrainingService(store, settings, run_cli=run_cli)
    svc.launched = launched
    yield svc
    store.close()


def new_job(svc, tmp_path, user: int, name: str, pid: int | None):
    store = svc.store
    store.ensure_user(user, f"user {user}")
    dataset = store.add_dataset(user, "shapes.zip", str(tmp_path / f"ws-{name}"), 1000)
    store.finish_dataset(dataset.id, {"images": 40, "classes": {"circle": {}}})
    job = store.add_job(user, user, dataset.id, tmp_path / name, "mobilenetv2-fpn", {"steps": 100})
    (tmp_path / name).mkdir()
    if pid is None:
        return job
    (tmp_path / name / "train.pid").write_text(f"{pid} {process_start(pid)}\n")
    return store.update_job(job.id, status="running", pid=pid, started=time.time())


def progress(step: int) -> dict:
    return {"total_loss": 1.0 / step, "total_steps": 100, "images_per_sec": 9.0}


def tick(svc, tg) -> None:
    async def run():
        async with Bot(DEFAULT_TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
            services = SimpleNamespace(training=svc, users=Users(svc.store, frozenset()))
            await watch(SimpleNamespace(bot=bot, bot_data={"services": services}))

    asyncio.run(run())


def texts_to(tg, chat_id: int) -> list[str]:
    return [m["text"] for m in tg.events(chat_id) if m["event"] in ("sent", "edited")]


# --- events.jsonl: torn and corrupt lines --------------------------------------------------------


def test_a_torn_last_line_waits_for_the_next_tick(service, tmp_path, sleeper):
    job = new_job(service, tmp_path, ANN, "a", sleeper)
    events = tmp_path / "a" / "events.jsonl"
    EventLog(events).emit("started", 0)
    whole = EventLog(tmp_path / "line").emit("progress", 5, **progress(5))
    line = (tmp_path / "line").read_bytes()
    with events.open("ab") as stream:
        stream.write(line[:20])
    assert [e["event"] for e in service._mirror(job)] == ["started"]
    job = service.store.job_by_id(job.id)
    assert job.events_offset == events.stat().st_size - 20
    with events.open("ab") as stream:
        stream.write(line[20:])
    assert service._mirror(job) == [whole]


def test_a_corrupt_middle_line_is_skipped_once_and_logged(service, tmp_path, sleeper, caplog):
    job = new_job(service, tmp_path, ANN, "a", sleeper)
    events = tmp_path / "a" / "events.jsonl"
    log = EventLog(events)
    log.emit("started", 0)
    with events.open("ab") as stream:
        stream.write(b'{"event": "progress", "st\xff\n[1, 2]\n{"event": "progress"}\n')
    log.emit("progress", 5, **progress(5))
    with caplog.at_level(logging.WARNING, logger="bot.training"):
        assert [(e["event"], e["step"]) for e in service._mirror(job)] == [("started", 0), ("progress", 5)]
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and f"job {job.id}" in skipped[0].getMessage()
    job = service.store.job_by_id(job.id)
    assert job.events_offset == events.stat().st_size
    caplog.clear()
    assert service._mirror(job) == [] and not caplog.records  # not re-read on later ticks
    log.emit("progress", 10, **progress(10))
    assert [e["step"] for e in service._mirror(service.store.job_by_id(job.id))] == [10]
    assert [e.step for e in service.store.events(job.id)] == [0, 5, 10]


def test_a_line_torn_then_continued_keeps_the_record_after_the_tear(service, tmp_path, sleeper, caplog):
    """A full disk cut a record short; once space was back, the next record was appended to it."""
    job = new_job(service, tmp_path, ANN, "a", sleeper)
    events = tmp_path / "a" / "events.jsonl"
    events.write_bytes(b'{"event": "progress", "step": 4, "tot')
    assert service._mirror(job) == []
    EventLog(events).emit("finished", 8, AP=0.5, AP50=0.9, best_step=8)
    with caplog.at_level(logging.WARNING, logger="bot.training"):
        (finished,) = service._mirror(service.store.job_by_id(job.id))
    assert (finished["event"], finished["step"]) == ("finished", 8)
    assert any("kept the record after the tear" in r.getMessage() for r in caplog.records)


# --- the watcher: one job, one user at a time -------------------------------------------------------


def test_an_unreadable_job_does_not_stop_the_other_jobs_nor_the_queue(service, tmp_path, tg, caplog):
    tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    with subprocess.Popen(["sleep", "300"]) as one, subprocess.Popen(["sleep", "300"]) as two:
        try:
            broken = new_job(service, tmp_path, ANN, "broken", one.pid)
            (tmp_path / "broken" / "events.jsonl").mkdir()  # reading it raises IsADirectoryError, every tick
            good = new_job(service, tmp_path, BOB, "good", two.pid)
            EventLog(tmp_path / "good" / "events.jsonl").emit("progress", 7, **progress(7))
            queued = new_job(service, tmp_path, BOB, "queued", None)
            with caplog.at_level(logging.ERROR, logger="bot.monitor"):
                tick(service, tg)
        finally:
            one.kill(), two.kill()
    assert any(f"job {broken.id} could not be watched" in r.getMessage() for r in caplog.records)
    bob = texts_to(tg, BOB)
    assert any(good.id in text and "step 7/100" in text for text in bob)
    assert [args[args.index("--job-dir") + 1] for args in service.launched] == [str(tmp_path / "queued")]
    assert service.store.job_by_id(queued.id).status == "running"
    assert any(queued.id in text and "running" in text for text in bob)
    assert texts_to(tg, ANN) == []


def test_a_user_who_blocked_the_bot_is_paused_and_the_others_go_on(service, tmp_path, tg, sleeper):
    ann, _ = tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    ann_job, bob_job = new_job(service, tmp_path, ANN, "a", sleeper), new_job(service, tmp_path, BOB, "b", sleeper)
    ann_log, bob_log = EventLog(tmp_path / "a" / "events.jsonl"), EventLog(tmp_path / "b" / "events.jsonl")
    ann_log.emit("progress", 5, **progress(5)), bob_log.emit("progress", 5, **progress(5))
    ann.block()
    tick(service, tg)
    to_ann = [c for c in tg.requests if c.params.get("chat_id") == ANN]
    assert [c.status for c in to_ann] == [403]
    assert service.store.notices_paused(ANN) and not service.store.notices_paused(BOB)
    assert any("step 5/100" in text for text in texts_to(tg, BOB))

    ann_log.emit("progress", 10, **progress(10)), bob_log.emit("progress", 10, **progress(10))
    time.sleep(1)  # the progress interval
    tick(service, tg)
    assert [c for c in tg.requests if c.params.get("chat_id") == ANN] == to_ann  # not retried
    assert any("step 10/100" in text for text in texts_to(tg, BOB))
    assert [e.step for e in service.store.events(ann_job.id)] == [5, 10]  # her job is still mirrored
    assert service.store.job_by_id(ann_job.id).status == "running"

    ann.unblock()
    assert service.store.resume_notices(ANN)  # what the gate does when she writes again
    ann_log.emit("progress", 15, **progress(15))
    time.sleep(1)
    tick(service, tg)
    assert [text for text in texts_to(tg, ANN) if "step 15/100" in text and ann_job.id in text]
    assert bob_job.id not in " ".join(texts_to(tg, ANN))


# --- the store's side: the pause flag and the edit claim -------------------------------------------


def test_the_pause_flag_survives_a_restart_and_is_cleared_once(tmp_path):
    with open_store(tmp_path / "db", migrations=MIGRATIONS[:2]) as old:  # a database from before the flag
        old.db["users"].insert({"user_id": ANN, "name": "Ann", "created": 1.0})  # as that version wrote it
    with open_store(tmp_path / "db", clock=lambda: 50.0) as store:
        assert not store.notices_paused(ANN)
        store.pause_notices(ANN)
    with open_store(tmp_path / "db", clock=lambda: 90.0) as store:
        store.pause_notices(ANN)  # blocked again before writing: the first pause's time stays
        assert store.db.execute("SELECT notices_paused FROM users").fetchone()[0] == 50.0
        assert store.resume_notices(ANN) and not store.resume_notices(ANN)
        assert not store.notices_paused(ANN)


def test_an_edit_claim_and_a_new_job_exclude_each_other(service, tmp_path, sleeper):
    store = service.store
    job = new_job(service, tmp_path, ANN, "a", sleeper)
    with pytest.raises(DatasetInUse) as refused:
        store.begin_edit(ANN, job.dataset_id)
    assert [j.id for j in refused.value.jobs] == [job.id]
    store.update_job(job.id, status="finished")
    assert store.begin_edit(ANN, job.dataset_id).status == "editing"
    with pytest.raises(StoreError, match="not ready"):  # no job is queued on records being rewritten
        store.add_job(ANN, ANN, job.dataset_id, tmp_path / "b", "mobilenetv2-fpn", {})
    with pytest.raises(StoreError, match="editing"):  # nor do two edits interleave
        store.begin_edit(ANN, job.dataset_id)
    store.end_edit(job.dataset_id)
    assert store.dataset(ANN, job.dataset_id).ready
    assert store.add_job(ANN, ANN, job.dataset_id, tmp_path / "b", "mobilenetv2-fpn", {}).status == "queued"


def test_the_trainer_and_the_cli_read_past_a_corrupt_line(tmp_path):
    """Resume, plots and `pipeline status` read events.jsonl too: a corrupt line is skipped there as well."""
    from pipeline.train.events import EventLog, read_events

    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.emit("started", 0)
    with path.open("ab") as stream:
        stream.write(b'{"event": "progr\x00\x00\n')  # a full disk tore this one
        stream.write(b'{"event": "progress", "st{"event": "checkpoint", "step": 5, "time": 1.0}\n')
    log.emit("progress", 10, total_loss=1.0)
    with path.open("ab") as stream:
        stream.write(b'{"event": "eval", "st')  # still being written
    assert [(e["event"], e["step"]) for e in read_events(path)] == [("started", 0), ("checkpoint", 5), ("progress", 10)]
