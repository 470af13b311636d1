"""The bot training on a real Ray cluster on 127.0.0.1 (``DETBOT_EXECUTOR=ray``): a head and a worker node with
one "GPU" (the custom resource ``fake_gpu``), through Ray Jobs, against the fake Bot API.

One scenario carries the cluster's whole life of a job, three trainer starts in all: progress mirrored and the
status message edited; a second job waiting in Ray's queue behind the one GPU, shown as queued; a bot restart
that re-attaches through the stored Ray job id; a killed trainer that leaves its job interrupted and lets the
queued job run; a graceful stop; a /resume that resubmits from the checkpoint. Then a photo is predicted by a
one-off Ray job; and a node that does not share the data folder stops the bot's start-up with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.train.events import read_events
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import running_pid
from tests.ray_cluster import GPU, RayCluster
from tests.test_bot_e2e import (
    ANN,
    BOB,
    FAST,
    PNG,
    BotProcess,
    _is_status,
    _step,
    job_id,
    kill_trainers,
    say,
    seed_finished_job,
    start_training,
    text_of,
    upload,
)
from tests.test_bot_predict_e2e import send_photo, shapes_photo

pytestmark = pytest.mark.slow
QUEUED = "waiting in the cluster's queue"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = RayCluster(tmp_path_factory.mktemp("ray-logs")).start(workers=1)
    try:
        yield started
    finally:
        started.stop()


def ray_client(cluster: RayCluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.address)


def cluster_bot(tg, data: Path, cluster: RayCluster, **settings) -> BotProcess:
    data.mkdir(exist_ok=True)
    process = BotProcess(
        tg,
        data,
        DETBOT_EXECUTOR="ray",
        RAY_ADDRESS=cluster.address,
        DETBOT_RAY_GPU_RESOURCE=GPU,
        DETBOT_TRAINING_SLOTS=2,  # both go to Ray, which queues the second behind the one GPU
        DETBOT_STOP_GRACE_S=60,
        **settings,
    )
    tg.wait_until_polling(timeout=180)  # after start-up's probe of every node
    return process


def stored_job(data: Path, user: int, wanted: str):
    from storage import open_store

    with open_store(data / "detbot.db") as store:
        return store.job(user, wanted)


def ray_status(client, run_id: str) -> str:
    return str(client.get_job_status(run_id))


def wait_ray(client, run_id: str, wanted: set[str], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while (status := ray_status(client, run_id)) not in wanted:
        assert time.monotonic() < deadline, f"Ray run {run_id} is {status}, not {wanted}, after {timeout} s"
        time.sleep(0.5)
    return status


def shown(tg, message: dict) -> str:
    return text_of(next(m for m in tg.messages(message["chat_id"]) if m["message_id"] == message["message_id"]))


def test_a_jobs_life_on_the_cluster(tg, tmp_path, cluster):
    data, client = tmp_path / "data", ray_client(cluster)
    bot = cluster_bot(tg, data, cluster)
    again = None
    ann, bob = tg.user(ANN, "Ann"), tg.user(BOB, "Bob")
    try:
        upload(tg, ann, tmp_path)
        upload(tg, bob, tmp_path)
        mark = tg.mark()
        status = start_training(tg, ann, f"500 steps {FAST} eval_every=1000")
        job = job_id(status)
        stored = stored_job(data, ANN, job)
        assert stored.run_id == f"detbot-{job}-1"
        # Mirrored from events.jsonl that the trainer on the worker node wrote into the shared folder.
        tg.wait_for(lambda m: _is_status(m, status) and _step(m) > 0, chat_id=ANN, since=mark, timeout=240)
        assert ray_status(client, stored.run_id) == "RUNNING"
        entrypoint = client.get_job_info(stored.run_id).entrypoint
        assert " -m pipeline train " in entrypoint and "--detach" not in entrypoint  # the trainer, in the foreground

        bob_status = start_training(tg, bob, f"500 steps {FAST}")
        bob_job = stored_job(data, BOB, job_id(bob_status))
        assert wait_ray(client, bob_job.run_id, {"PENDING"}) == "PENDING"  # Ray queues it behind the one GPU
        tg.wait_for(lambda m: _is_status(m, bob_status) and QUEUED in text_of(m), chat_id=BOB, timeout=30)

        bot.kill()  # the runs go on in the cluster; a new bot re-attaches to them by their stored ids
        before = _step({"text": shown(tg, status)})
        mark = tg.mark()
        again = cluster_bot(tg, data, cluster)
        tg.wait_for(lambda m: _is_status(m, status) and _step(m) > before, chat_id=ANN, since=mark, timeout=120)

        os.kill(running_pid(JobPaths(stored.job_dir)), signal.SIGKILL)  # the trainer dies on its node
        notice = tg.wait_for(lambda m: "stopped unexpectedly" in text_of(m), chat_id=ANN, since=mark, timeout=120)
        assert f"/resume {job}" in text_of(notice)
        assert ray_status(client, stored.run_id) == "FAILED"
        # The GPU is free: Bob's queued run starts, and his status message says so.
        tg.wait_for(lambda m: _is_status(m, bob_status) and "running" in text_of(m), chat_id=BOB, timeout=240)
        tg.wait_for(lambda m: _is_status(m, bob_status) and _step(m) > 0, chat_id=BOB, timeout=240)
        _stops_gracefully(tg, bob, bob_job, client)

        mark = tg.mark()
        ann.send_text(f"/resume {job}")
        tg.wait_for(lambda m: text_of(m).startswith(f"Job {job} ("), chat_id=ANN, since=mark)
        assert stored_job(data, ANN, job).run_id == f"detbot-{job}-2"  # a new run; the first is never reused
        _resumes_from_its_checkpoint(JobPaths(stored.job_dir))
        _stops_gracefully(tg, ann, stored_job(data, ANN, job), client)
    finally:
        for process in (bot, again):
            if process:
                process.stop()
        kill_trainers(data)


def _stops_gracefully(tg, user, job, client) -> None:
    """/stop writes the STOP file: the trainer saves a checkpoint and says so; Ray sees its entrypoint succeed."""
    confirm = say(tg, user, f"/stop {job.id}", "Stop job")
    mark = tg.mark()
    user.press(confirm, f"stop:{job.id}")
    tg.wait_for(
        lambda m: "stopped at step" in text_of(m) and job.id in text_of(m),
        chat_id=user.chat_id,
        since=mark,
        timeout=180,
    )
    assert wait_ray(client, job.run_id, {"SUCCEEDED", "STOPPED", "FAILED"}) == "SUCCEEDED"


def _resumes_from_its_checkpoint(paths: JobPaths) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        events = read_events(paths.events)
        starts = [e for e in events if e["event"] == "started"]
        if len(starts) == 2 and events[-1]["event"] in ("progress", "checkpoint"):
            break
        time.sleep(0.5)
    assert [e["resumed"] for e in starts] == [False, True] and starts[1]["step"] > 0


def test_a_photo_is_predicted_by_a_one_off_cluster_job(
    tg, tmp_path, cluster, trained_job, exported_archive, shapes_workspace
):
    """No model is loaded on the bot host: each photo is a Ray job running the CLI's predict, answered through the
    shared folder. (An export goes the same way, ``TrainingService.export`` through ``Cluster.run_cli``; it is not
    run here for the suite's time: the shared archive stands in for it.)"""
    data = tmp_path / "data"
    data.mkdir()
    seed_finished_job(data, trained_job, exported_archive, shapes_workspace)
    bot = cluster_bot(tg, data, cluster)
    ann = tg.user(ANN, "Ann")
    try:
        sent = tg.wait_for(lambda m: m["kind"] == "document", chat_id=ANN, timeout=120)  # the finished job's archive
        assert sent["filename"].endswith(".zip")
        reply, _ = send_photo(tg, ann, shapes_photo(3), timeout=300)
        assert reply["kind"] == "photo" and reply["bytes"][:8] == PNG
        runs = [info for info in ray_client(cluster).list_jobs() if (info.metadata or {}).get("detbot") == "predict"]
        assert [str(info.status) for info in runs] == ["SUCCEEDED"]
        assert " -m pipeline predict " in runs[0].entrypoint
        assert not list((data / ".detbot-answers").iterdir())  # the answer was read and removed
    finally:
        bot.stop()


def test_a_node_without_the_shared_folder_stops_start_up_with_one_line(tg, tmp_path, cluster):
    """The bot's start-up in test_a_jobs_life_on_the_cluster passed this check; here one node fails it."""
    data = tmp_path / "data"
    data.mkdir()
    node = cluster.add_worker({}, hidden=data)  # this node sees an empty folder of its own there
    try:
        bot = BotProcess(tg, data, DETBOT_EXECUTOR="ray", RAY_ADDRESS=cluster.address, DETBOT_RAY_GPU_RESOURCE=GPU)
        assert bot.process.wait(300) == 2
        bot.log.close()
        said = [line for line in (tmp_path / "bot.log").read_text().splitlines() if "detbot cannot start" in line]
        assert len(said) == 1 and f"{data} is not shared with the Ray node" in said[0]
        assert "Mount the same folder at the same path on every node" in said[0]
        command = [sys.executable, "-m", "pipeline", "cluster-check", "--ray-address", cluster.address]
        command += ["--shared-dir", str(data), "--ray-gpu-resource", GPU, "--json"]
        failed = subprocess.run(command, capture_output=True, text=True, timeout=300)  # the CLI twin says the same
        assert failed.returncode == 1 and json.loads(failed.stdout)["error"]["kind"] == "storage_not_shared"
    finally:
        cluster.stop_node(node)
