"""What the bot's training service tells a user about a job that failed: the cause, and /resume only when it can work."""
from __future__ import annotations

import asyncio

import pytest

from bot.config import load_settings
from bot.training import TrainingError, TrainingService
from pipeline.events import EventLog
from storage import open_store

USER = 42
SETTINGS = {"TELEGRAM_BOT_TOKEN": "123:abc", "ALLOWED_USER_IDS": str(USER)}


@pytest.fixture
def service(tmp_path):
    store = open_store(tmp_path / "detbot.db")
    store.ensure_user(USER, "ann")
    dataset = store.add_dataset(USER, "shapes.zip", str(tmp_path / "ws"), 1000)
    store.finish_dataset(dataset.id, {"images": 40, "classes": ["circle"]})
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
    job = failed_job(svc, dataset, tmp_path, stage="start", cause="config", resumable=False,
                     message="Model Garden could not build this job's model (ValueError: bad dtype).")
    (outgoing,) = [o for o in svc.poll(job) if o.kind == "text"]
    assert "could not start" in outgoing.text and "bad dtype" in outgoing.text
    assert "/resume" not in outgoing.text and "/train" in outgoing.text
    assert svc.store.job_by_id(job.id).status == "failed"
    with pytest.raises(TrainingError, match="/train"):
        asyncio.run(svc.resume(USER, job.id))
    assert svc.store.job_by_id(job.id).status == "failed"  # not queued again


def test_a_failure_after_a_checkpoint_offers_resume(service, tmp_path):
    svc, dataset = service
    job = failed_job(svc, dataset, tmp_path, step=40, stage="training", cause="internal", resumable=True,
                     message="Training stopped at step 40 on an unexpected error (OSError: disk full).")
    (outgoing,) = [o for o in svc.poll(job) if o.kind == "text"]
    assert "step 40" in outgoing.text and f"/resume {job.id}" in outgoing.text
