"""What the bot's training service tells a user: why a job failed (the end of its trainer's log when nothing
else says), /resume only when it can work, and a card planned from the dataset's summary."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from bot.cli_runner import run_cli
from bot.config import load_settings
from bot.errors import Refused
from bot.train_words import parse_train_args
from bot.training import TrainingService
from pipeline.train.events import EventLog
from pipeline.train.job_process import process_start
from storage import open_store
from tests.builders import store_with_dataset

USER = 42
SETTINGS = {"TELEGRAM_BOT_TOKEN": "123:abc", "ALLOWED_USER_IDS": str(USER)}


@pytest.fixture
def service(tmp_path):
    store, dataset = store_with_dataset(tmp_path / "detbot.db", USER, tmp_path / "ws")
    svc = TrainingService(store, load_settings(SETTINGS, env_file=None))
    yield svc, dataset
    store.close()


def failed_job(svc, dataset, tmp_path, **failure):
    job = svc.store.add_job(USER, USER, dataset.id, tmp_path / "job", "mobilenetv2-fpn", {"steps": 5})
    job = svc.store.update_job(job.id, status="running", started=0.0)
    (tmp_path / "job").mkdir(parents=True)
    EventLog(tmp_path / "job" / "events.jsonl").emit("failed", failure.pop("step", 0), **failure)
    return job


def test_a_job_that_could_not_start_says_why_and_offers_no_resume(service, tmp_path):
    svc, dataset = service
    job = failed_job(
        svc,
        dataset,
        tmp_path,
        stage="start",
        cause="config",
        resumable=False,
        message="Model Garden could not build this job's model (ValueError: bad dtype).",
    )
    (outgoing,) = [o for o in svc.poll(job) if o.kind == "text"]
    assert "could not start" in outgoing.text and "bad dtype" in outgoing.text
    assert "/resume" not in outgoing.text and "/train" in outgoing.text
    assert svc.store.job_by_id(job.id).status == "failed"
    with pytest.raises(Refused, match="/train"):
        asyncio.run(svc.resume(USER, job.id))
    assert svc.store.job_by_id(job.id).status == "failed"  # not queued again


def test_a_failure_after_a_checkpoint_offers_resume(service, tmp_path):
    svc, dataset = service
    job = failed_job(
        svc,
        dataset,
        tmp_path,
        step=40,
        stage="training",
        cause="internal",
        resumable=True,
        message="Training stopped at step 40 on an unexpected error (OSError: disk full).",
    )
    (outgoing,) = [o for o in svc.poll(job) if o.kind == "text"]
    assert "step 40" in outgoing.text and f"/resume {job.id}" in outgoing.text


def test_an_edit_cut_short_by_a_restart_is_repaired_at_start_up(shapes_workspace, tmp_path):
    """A split that a crash interrupted left the dataset 'editing' and its shards half rewritten."""
    import shutil

    from bot.datasets import DatasetService
    from pipeline.data.tfrecord import iter_records
    from pipeline.data.workspace import Workspace

    workspace = tmp_path / "ws"
    shutil.copytree(shapes_workspace, workspace)
    store, dataset = store_with_dataset(tmp_path / "detbot.db", USER, workspace, ("circle", "square", "triangle"))
    store.begin_edit(USER, dataset.id)
    lost = Workspace(workspace).records("train")
    for shard in lost[: len(lost) // 2]:
        shard.unlink()  # the crash came between removing old shards and writing new ones
    service = DatasetService(store, load_settings(SETTINGS | {"DETBOT_DATA_DIR": str(tmp_path)}, env_file=None))
    try:
        asyncio.run(service.repair_interrupted_edits())
    finally:
        service.close()
        store.close()
    store = open_store(tmp_path / "detbot.db")
    assert store.dataset(USER, dataset.id).status == "ready"
    train = sum(1 for path in Workspace(workspace).records("train") for _ in iter_records(path))
    summary_train = store.dataset(USER, dataset.id).summary["splits"]["train"]["images"]
    assert train == summary_train == 32
    store.close()


def test_a_trainer_that_dies_leaves_its_log_in_the_job_folder_and_its_end_reaches_the_user(service, tmp_path):
    """A real detached trainer that crashes before writing any event: its stderr is kept in JOB/train.log,
    and the notice that it is gone carries the log's last lines, without the host's paths."""
    svc, dataset = service
    svc._run_cli = run_cli  # the bot's real launcher: python -m pipeline train --detach
    job = svc.enqueue(USER, USER, dataset, parse_train_args(["5", "steps"], "mobilenetv2-fpn", 100))
    job.job_dir.mkdir(parents=True)
    (job.job_dir / "job.json").write_text("{not json")  # an existing job folder: the trainer resumes it, and crashes
    (started,) = asyncio.run(svc.start_queued())
    assert started.status == "running", started.error
    deadline = time.monotonic() + 60
    while process_start(started.pid) != "?":
        assert time.monotonic() < deadline, "the trainer never exited"
        time.sleep(0.1)
    log = (job.job_dir / "train.log").read_text()
    assert "JSONDecodeError" in log and 'File "/' in log  # the traceback, as the trainer wrote it
    (notice,) = [o for o in svc.poll(svc.store.job_by_id(job.id)) if o.kind == "text"]
    assert svc.store.job_by_id(job.id).status == "interrupted"
    assert "stopped unexpectedly" in notice.text and "train.log, kept in the job folder" in notice.text
    assert "JSONDecodeError" in notice.text and "Expecting property name" in notice.text
    assert not re.search(r"(^|[\s\"'(])/\w+/", notice.text), notice.text  # no absolute path of the host
    tail = notice.text.split("kept in the job folder):\n", 1)[1]
    assert len(tail.splitlines()) <= 12 and all(len(line) <= 160 for line in tail.splitlines())


def test_an_unexplained_failure_sends_the_end_of_the_log_an_explained_one_does_not(service, tmp_path):
    svc, dataset = service
    token = svc.settings.token
    job = failed_job(
        svc,
        dataset,
        tmp_path,
        step=7,
        stage="training",
        cause="internal",
        resumable=True,
        message=f"Training stopped at step 7 on an unexpected error (OSError: x). The traceback is in "
        f"the trainer's log ({tmp_path / 'job' / 'train.log'} for a background job).",
    )
    (tmp_path / "job" / "train.log").write_text(
        "".join(f"noise {n}\n" for n in range(50))
        + f'  File "{tmp_path}/site-packages/keras/trainer.py", line 9, in fit\n'
        + f"OSError: [Errno 5] Input/output error: '{tmp_path}/job/checkpoints/ckpt-7.index' {token}\n"
    )
    (outgoing,) = [o for o in svc.poll(job) if o.kind == "text"]
    text = outgoing.text
    assert "(train.log for a background job)" in text and 'File "trainer.py", line 9' in text
    assert "Input/output error: 'ckpt-7.index'" in text and "noise 49" in text and "noise 30" not in text
    assert str(tmp_path) not in text and token not in text
    explained = failed_job(
        svc,
        dataset,
        tmp_path / "other",
        stage="start",
        cause="config",
        resumable=False,
        message="Model Garden could not build this job's model (ValueError: bad dtype).",
    )
    (outgoing,) = [o for o in svc.poll(explained) if o.kind == "text"]
    assert "bad dtype" in outgoing.text and "log" not in outgoing.text


def test_the_card_is_planned_from_the_summary_without_reading_a_shard(shapes_workspace, tmp_path):
    """The trainer's own count of the records and the card's agree; the card needs no record at all."""
    import shutil

    from pipeline.data.workspace import Workspace
    from pipeline.train.config import workspace_facts

    workspace = tmp_path / "ws"
    shutil.copytree(shapes_workspace, workspace)
    counted = workspace_facts(Workspace(workspace))
    summary = json.loads(Workspace(workspace).summary.read_text())
    store, dataset = store_with_dataset(tmp_path / "detbot.db", USER, workspace)
    dataset = store.finish_dataset(dataset.id, summary)
    store.set_current_dataset(USER, dataset.id)
    svc = TrainingService(store, load_settings(SETTINGS, env_file=None))
    for shard in Workspace(workspace).data.glob("*.tfrecord"):
        shard.unlink()
    try:
        draft = svc.draft(USER, ["50", "steps"])
    finally:
        store.close()
    card = draft.card
    assert (card["train_images"], card["val_images"]) == (counted.train_images, counted.val_images) == (32, 8)
    assert card["classes"] == ["circle", "square", "triangle"] and card["steps"] == 50
