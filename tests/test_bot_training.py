"""What the bot's training service tells a user about a job that failed: the cause, and /resume only when it can work."""

from __future__ import annotations

import asyncio

import pytest

from bot.config import load_settings
from bot.training import TrainingError, TrainingService
from pipeline.train.events import EventLog
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
    (tmp_path / "job").mkdir()
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
    with pytest.raises(TrainingError, match="/train"):
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
