"""Real, short TensorFlow trainings on CPU: events, NaN roll-back, resume after kill -9 and after stop, a NaN
that persists, early stopping, pretrained weights over HTTP. No mocked TensorFlow.

The finished run's files are checked on the shared ``trained_job`` (conftest). The trainings here use a
128-pixel input and a slim decoder and head: what they check is the supervisor's bookkeeping, which depends on
neither the pixels nor the network's width.
"""

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
import yaml
from PIL import Image

from pipeline.cli.main import main
from pipeline.train.events import read_events
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import running_pid
from tests.builders import copy_job

pytestmark = pytest.mark.slow
FAST = [
    "trainer.steps_per_loop=5",
    "trainer.checkpoint_interval=5",
    "task.model.input_size=[128,128,3]",
    # test_gpu_emulation.py's slimmer decoder and head (one conv of 32 filters on three levels): a third less to
    # trace, and a NaN roll-back traces the model again.
    "task.model.max_level=5",
    "task.model.decoder.fpn.num_filters=32",
    "task.model.head.num_filters=32",
    "task.model.head.num_convs=1",
]


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


def kinds(events: list[dict]) -> list[str]:
    return [event["event"] for event in events]


def kinds_after_last_start(events: list[dict]) -> list[str]:
    names = kinds(events)
    return names[len(names) - names[::-1].index("started") :] if "started" in names else []


def checkpoints_after(events: list[dict], kind: str) -> int:
    names = kinds(events)
    return names[names.index(kind) :].count("checkpoint") if kind in names else 0


def wait_for(job: Path, predicate, timeout: float = 240.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = read_events(job / "events.jsonl")
        if predicate(events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"timed out; events so far: {[e['event'] for e in read_events(job / 'events.jsonl')]}")


def test_nan_roll_back_kill_9_stop_and_resume_in_one_job(workspace, tmp_path, capsys):
    """One job through the ways a run is interrupted: a NaN rolled back (learning rate lowered), kill -9, a
    resume in the background, stop, a resume to the end. No resume repeats a checkpointed step, and the
    lowered learning rate survives both resumes."""
    import tensorflow as tf

    job = tmp_path / "job"
    code, out = train(
        capsys,
        workspace,
        job,
        *("--steps", "100", "--detach", "--recovery-lr-factor", "0.0001"),
        *FAST,
        "trainer.validation_interval=100",
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=1000",
    )
    assert code == 0 and out["detached"] is True
    events = wait_for(job, lambda ev: "recovered" in kinds(ev) and checkpoints_after(ev, "recovered") >= 2)
    os.kill(out["pid"], signal.SIGKILL)
    _wait_gone(out["pid"])
    killed_at = max(e["step"] for e in read_events(job / "events.jsonl") if e["event"] == "checkpoint")
    assert running_pid(JobPaths(job)) is None
    names = kinds(events)
    nan, recovered = events[names.index("nan")], events[names.index("recovered")]
    assert names[names.index("nan") + 1] == "recovered"
    assert "rolling back" in nan["message"] and "learning rate" in nan["message"]
    assert recovered["learning_rate"] == pytest.approx(0.1, rel=1e-3)  # 1000 x 0.0001

    code, out = train(capsys, workspace, job, "--detach")
    assert code == 0 and out["created"] is False
    wait_for(job, lambda ev: kinds(ev).count("started") == 2 and kinds_after_last_start(ev).count("progress") >= 1)
    assert main(["stop", str(job), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["was_running"] is True
    _wait_gone(out["pid"], timeout=60)
    events = read_events(job / "events.jsonl")
    stopped = events[-1]
    assert stopped["event"] == "stopped" and stopped["checkpoint"] is True and stopped["step"] < 100
    assert list((job / "checkpoints").glob(f"ckpt-{stopped['step']}.index"))

    code, _ = train(capsys, workspace, job)
    assert code == 0
    events = read_events(job / "events.jsonl")
    starts = [i for i, e in enumerate(events) if e["event"] == "started"]
    assert len(starts) == 3 and [events[i]["resumed"] for i in starts] == [False, True, True]
    assert events[starts[1]]["step"] >= killed_at and events[starts[2]]["step"] == stopped["step"]
    for begin, end in zip(starts, [*starts[1:], len(events)]):
        after = [e["step"] for e in events[begin:end] if e["event"] == "progress"]
        assert after and min(after) > events[begin]["step"] and after == sorted(after)
    resumed = [e for e in events[starts[1] :] if e["event"] == "progress"]
    assert max(e["learning_rate"] for e in resumed) <= 0.1 * 1.001  # never back to 1000
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 100
    assert json.loads((job / "state.json").read_text())["recoveries"] == 1
    for index in (job / "checkpoints").glob("ckpt-*.index"):  # only finite weights are ever saved
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
        "10",
        "--max-recoveries",
        "1",
        *FAST,
        "trainer.validation_interval=10",
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=1e9",
    )
    assert code == 2
    assert kinds(read_events(job / "events.jsonl")) == ["started", "nan", "recovered", "failed"]
    failed = read_events(job / "events.jsonl")[-1]
    assert "lower the learning rate" in failed["message"]
    assert not list((job / "checkpoints").glob("ckpt-*.index"))


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


# The last two tests use the shared trained job, which the other worker may still be training while the runs
# above go.
def test_pretrained_weights_come_over_http_and_initialise_the_backbone(trained_job, workspace, tmp_path):
    import tensorflow as tf

    from pipeline.train.config import TrainRequest, load_params
    from pipeline.train.hardware import detect_hardware
    from pipeline.train.job_folder import JobState, load_job
    from pipeline.train.launch import create_job
    from pipeline.train.session import Session

    source, meta = load_job(copy_job(trained_job, tmp_path / "source"))  # a session may write into its job
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


def test_a_run_writes_events_checkpoints_metrics_and_plots(trained_job, workspace, capsys):
    trainer = yaml.safe_load((trained_job / "params.yaml").read_text())["trainer"]
    steps, loop, every = trainer["train_steps"], trainer["steps_per_loop"], trainer["checkpoint_interval"]
    assert steps > loop and steps % every == 0 < steps - every  # the job's plan gives several of each below
    events = read_events(trained_job / "events.jsonl")
    assert events[0]["event"] == "started" and events[0]["resumed"] is False
    assert events[-1]["event"] == "finished" and events[-1]["step"] == steps
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["step"] for e in progress] == list(range(loop, steps + 1, loop))
    for field in ("total_loss", "cls_loss", "box_loss", "learning_rate", "images_per_sec", "eta_s", "time"):
        assert field in progress[-1]
    (evaluation,) = [e for e in events if e["event"] == "eval"]
    assert {"AP", "AP50", "AP75"} <= set(evaluation)
    assert set(evaluation["per_class_AP"]) == {"circle", "square", "triangle"}
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == list(range(every, steps + 1, every))
    for plot in ("loss.png", "ap.png"):
        assert (trained_job / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(trained_job / "detections.jpg") as sheet:  # validation images with the model's boxes
        assert sheet.format == "JPEG" and sheet.size[1] == 320 and sheet.size[0] in (320, 640, 960, 1280)
    best = json.loads((trained_job / "best.json").read_text())
    assert best["step"] == steps and Path(best["checkpoint"]).is_absolute()
    confusion = json.loads((trained_job / "confusion.json").read_text())
    assert confusion["rows"] == ["circle", "square", "triangle", "background"]
    val_boxes = json.loads((workspace / "summary.json").read_text())["splits"]["val"]["boxes"]
    assert sum(map(sum, confusion["counts"][:3])) == val_boxes  # every true box: matched or missed
    assert main(["status", str(trained_job), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "finished" and status["running"] is False
