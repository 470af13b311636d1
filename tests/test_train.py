"""Real, short TensorFlow trainings on CPU: events, resume after kill -9, NaN roll-back, stop,
early stopping, pretrained weights over HTTP. No mocked TensorFlow."""

from __future__ import annotations

import json
import os
import signal
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.train.events import read_events
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import running_pid

tf = pytest.importorskip("tensorflow")
ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.steps_per_loop=5", "trainer.checkpoint_interval=5"]


@pytest.fixture(scope="module")
def workspace(shapes_workspace) -> Path:
    return shapes_workspace  # jobs go to their own --job-dir: the shared workspace is only read


def train(capsys, workspace: Path, job: Path, *args) -> tuple[int, dict]:
    code = main(
        [
            "train",
            str(workspace),
            "--model",
            "mobilenetv2-fpn",
            "--no-pretrained",
            "--job-dir",
            str(job),
            "--json",
            *map(str, args),
        ]
    )
    return code, json.loads(capsys.readouterr().out)


def kinds(job: Path) -> list[str]:
    return [event["event"] for event in read_events(job / "events.jsonl")]


def wait_for(job: Path, predicate, timeout: float = 240.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = read_events(job / "events.jsonl")
        if predicate(events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"timed out; events so far: {[e['event'] for e in read_events(job / 'events.jsonl')]}")


@pytest.fixture(scope="module")
def trained_job(workspace, tmp_path_factory) -> Path:
    job = tmp_path_factory.mktemp("jobs") / "short"
    code = main(
        [
            "train",
            str(workspace),
            "--model",
            "mobilenetv2-fpn",
            "--no-pretrained",
            "--steps",
            "10",
            "--job-dir",
            str(job),
            *FAST,
            "trainer.validation_interval=10",
        ]
    )
    assert code == 0
    return job


def test_short_run_writes_events_checkpoints_metrics_and_plots(trained_job, workspace, capsys):
    events = read_events(trained_job / "events.jsonl")
    assert events[0]["event"] == "started" and events[0]["resumed"] is False
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 10
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["step"] for e in progress] == [5, 10]
    for field in ("total_loss", "cls_loss", "box_loss", "learning_rate", "images_per_sec", "eta_s", "time"):
        assert field in progress[-1]
    (evaluation,) = [e for e in events if e["event"] == "eval"]
    assert {"AP", "AP50", "AP75"} <= set(evaluation)
    assert set(evaluation["per_class_AP"]) == {"circle", "square", "triangle"}
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [5, 10]
    for plot in ("loss.png", "ap.png"):
        assert (trained_job / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(trained_job / "detections.jpg") as sheet:  # validation images with the model's boxes
        assert sheet.format == "JPEG" and sheet.size[1] == 320 and sheet.size[0] in (320, 640, 960, 1280)
    assert "train_steps: 10" in (trained_job / "params.yaml").read_text()
    best = json.loads((trained_job / "best.json").read_text())
    assert best["step"] == 10 and Path(best["checkpoint"]).is_absolute()
    confusion = json.loads((trained_job / "confusion.json").read_text())
    assert confusion["rows"] == ["circle", "square", "triangle", "background"]
    val_boxes = json.loads((workspace / "summary.json").read_text())["splits"]["val"]["boxes"]
    assert sum(map(sum, confusion["counts"][:3])) == val_boxes  # every true box: matched or missed
    assert main(["status", str(trained_job), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "finished" and status["running"] is False


def test_resume_after_kill_9_repeats_no_checkpointed_step(workspace, tmp_path, capsys):
    job = tmp_path / "job"
    code, out = train(capsys, workspace, job, "--steps", "40", "--detach", *FAST, "trainer.validation_interval=40")
    assert code == 0 and out["detached"] is True
    events = wait_for(job, lambda ev: any(e["event"] == "checkpoint" and e["step"] >= 10 for e in ev))
    os.kill(out["pid"], signal.SIGKILL)
    _wait_gone(out["pid"])
    killed_at = max(e["step"] for e in events if e["event"] == "checkpoint")
    assert running_pid(JobPaths(job)) is None
    code, _ = train(capsys, workspace, job)
    assert code == 0
    events = read_events(job / "events.jsonl")
    restarts = [i for i, e in enumerate(events) if e["event"] == "started"]
    assert len(restarts) == 2
    resumed = events[restarts[1]]
    assert resumed["resumed"] is True and resumed["step"] >= killed_at
    after = [e["step"] for e in events[restarts[1] :] if e["event"] == "progress"]
    assert after and min(after) > resumed["step"]
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 40


def test_nan_rolls_back_lowers_the_learning_rate_and_finishes(workspace, tmp_path, capsys):
    job = tmp_path / "job"
    code, _ = train(
        capsys,
        workspace,
        job,
        "--steps",
        "20",
        "--recovery-lr-factor",
        "0.0001",
        *FAST,
        "trainer.validation_interval=20",
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=1000",
    )
    assert code == 0
    events = read_events(job / "events.jsonl")
    names = [e["event"] for e in events]
    assert "nan" in names and names[names.index("nan") + 1] == "recovered" and names[-1] == "finished"
    nan = events[names.index("nan")]
    assert "rolling back" in nan["message"] and "learning rate" in nan["message"]
    assert events[names.index("recovered")]["learning_rate"] == pytest.approx(0.1, rel=1e-3)
    assert json.loads((job / "state.json").read_text())["recoveries"] == 1
    for index in (job / "checkpoints").glob("ckpt-*.index"):
        reader = tf.train.load_checkpoint(str(index.with_suffix("")))
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype.is_floating:
                assert tf.reduce_all(tf.math.is_finite(tf.cast(reader.get_tensor(name), tf.float32))), name


def test_nan_that_persists_fails_with_advice(workspace, tmp_path, capsys):
    job = tmp_path / "job"
    code, _ = train(
        capsys,
        workspace,
        job,
        "--steps",
        "20",
        "--max-recoveries",
        "1",
        *FAST,
        "trainer.validation_interval=20",
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=1e9",
    )
    assert code == 2
    assert kinds(job) == ["started", "nan", "recovered", "failed"]
    failed = read_events(job / "events.jsonl")[-1]
    assert "lower the learning rate" in failed["message"]
    assert not list((job / "checkpoints").glob("ckpt-*.index"))


def test_stop_checkpoints_and_exits(workspace, tmp_path, capsys):
    job = tmp_path / "job"
    code, out = train(
        capsys,
        workspace,
        job,
        "--steps",
        "5000",
        "--detach",
        "trainer.steps_per_loop=5",
        "trainer.checkpoint_interval=1000",
        "trainer.validation_interval=5000",
    )
    wait_for(job, lambda ev: any(e["event"] == "progress" for e in ev))
    assert main(["stop", str(job), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["was_running"] is True
    _wait_gone(out["pid"], timeout=60)
    events = read_events(job / "events.jsonl")
    assert events[-1]["event"] == "stopped" and events[-1]["checkpoint"] is True
    assert list((job / "checkpoints").glob(f"ckpt-{events[-1]['step']}.index"))


def test_early_stop_when_ap_stops_improving(workspace, tmp_path, capsys):
    job = tmp_path / "job"
    code, _ = train(
        capsys,
        workspace,
        job,
        "--steps",
        "30",
        "--early-stop",
        "1",
        *FAST,
        "trainer.validation_interval=5",
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.0",
        "trainer.optimizer_config.warmup.linear.warmup_learning_rate=0.0",
    )
    assert code == 0
    events = read_events(job / "events.jsonl")
    assert [e["step"] for e in events if e["event"] == "eval"] == [5, 10]
    assert events[-1]["event"] == "finished" and "early stop" in events[-1]["reason"]


def test_pretrained_weights_come_over_http_and_initialise_the_backbone(trained_job, workspace, tmp_path, capsys):
    from pipeline.train.config import TrainRequest, load_params
    from pipeline.train.hardware import detect_hardware
    from pipeline.train.job_folder import JobState, load_job
    from pipeline.train.launch import create_job
    from pipeline.train.session import Session

    source, meta = load_job(trained_job)
    trained = Session(load_params(meta["experiment"], source.params), JobState(), source)
    model = trained.trainer.model
    release = tmp_path / "release"
    tf.train.Checkpoint(backbone=model.backbone, decoder=model.decoder).save(str(release / "ckpt"))
    (tmp_path / "serve").mkdir()
    with tarfile.open(tmp_path / "serve" / "weights.tar.gz", "w:gz") as archive:
        archive.add(release, arcname="release")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "serve")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/weights.tar.gz"
        new, _ = create_job(
            workspace,
            TrainRequest("mobilenetv2-fpn", steps=10, pretrained_url=url),
            tmp_path / "job",
            detect_hardware(),
            tmp_path / "cache",
        )
    finally:
        server.shutdown()
    assert json.loads(new.job.read_text())["init_checkpoint"].startswith(str(tmp_path / "cache"))
    started = Session(load_params("retinanet_resnetfpn_coco", new.params), JobState(), new)
    for mine, theirs in zip(started.trainer.model.backbone.weights, model.backbone.weights):
        assert tf.reduce_all(mine == theirs), mine.name
    assert started.step == 0


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # the detached trainer is this process's child: reap it
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    raise AssertionError(f"process {pid} still alive")
