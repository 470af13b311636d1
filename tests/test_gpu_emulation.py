"""GPU plans, proven on the CPU: each trains with its planned numerics and finishes; an export verifies.

Each training runs in its own process, because logical CPU devices can only be made before
TensorFlow starts. Precision, XLA, strategy and sync batch norm are the plan's; only the batch
may be scaled down to fit the CPU. A failure here would be a failure on real GPUs too: change
the plan, never the test.

Each plan trains one loop of 5 steps: an emulated run is mostly its start-up, tracing and (for the
XLA plans) compilation, which a longer run would only add steps to. Only the mirrored plan is
exported: every plan keeps float32 master weights, so the mixed-precision checkpoints of the other
two restore into the float32 export model the same way, and the mirrored one is the one whose
variables were distributed. NaN roll-back is tested in test_train.py, on a float32 plan: a roll-back
rebuilds the model, and under XLA that means compiling it again, minutes of CPU here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.train.events import read_events

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# One loop at a 128-pixel input, with a slimmer decoder and head (one conv of 32 filters on three levels): the
# numerics (precision, loss scaling, XLA, strategy, sync BN) are the plan's; the smaller graph compiles in about
# two thirds of the time (75 -> 57 CPU-seconds for the bfloat16 + XLA plan).
STEPS = 5
SHORT = [
    "--steps",
    str(STEPS),
    f"trainer.steps_per_loop={STEPS}",
    f"trainer.checkpoint_interval={STEPS}",
    f"trainer.validation_interval={STEPS}",
    "task.model.input_size=[128,128,3]",
    "task.model.max_level=5",
    "task.model.decoder.fpn.num_filters=32",
    "task.model.head.num_filters=32",
    "task.model.head.num_convs=1",
]
PLANS = {  # name: --assume-hardware
    "hopper": "gpus=1,memory_gb=80,cc=9.0",
    "turing": "gpus=1,memory_gb=16,cc=7.5",
    "two_ampere": "gpus=2,memory_gb=40,cc=8.0",
}
EXPORTED = ("two_ampere",)


def pipeline(*args: str, timeout: float = 600) -> tuple[int, dict]:
    return finish(start(*args), args[0], timeout)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args, "--json"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen, command: str, timeout: float = 900) -> tuple[int, dict]:
    stdout, stderr = process.communicate(timeout=timeout)
    try:
        return process.returncode, json.loads(stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON from pipeline {command} (exit {process.returncode}): {stderr[-3000:]}") from None


@pytest.fixture(scope="module")
def emulated(shapes_workspace, tmp_path_factory) -> dict[str, tuple[Path, list[dict], dict, dict | None]]:
    """Each plan trained, and those in ``EXPORTED`` exported: plan -> (job, events, params, export report).

    The trainings run side by side: tracing and XLA compilation, most of an emulated run, use one core each."""
    root = tmp_path_factory.mktemp("emulated")
    trainings = {
        name: start(
            "train",
            str(shapes_workspace),
            "--model",
            "mobilenetv2-fpn",
            "--no-pretrained",
            "--assume-hardware",
            spec,
            "--job-dir",
            str(root / name),
            *SHORT,
        )
        for name, spec in PLANS.items()
    }
    trained = {name: finish(process, "train") for name, process in trainings.items()}
    for name, (code, out) in trained.items():
        assert code == 0, (name, out, read_events(root / name / "events.jsonl")[-1:])
    exports = {
        name: start(
            "export", str(root / name), "--out", str(root / name / "model.zip"), "--no-tflite", "--samples", "1"
        )
        for name in EXPORTED
    }
    reports = {}
    for name, process in exports.items():
        code, reports[name] = finish(process, "export")
        assert code == 0, (name, reports[name])
    return {
        name: (
            root / name,
            read_events(root / name / "events.jsonl"),
            yaml.safe_load((root / name / "params.yaml").read_text()),
            reports.get(name),
        )
        for name in PLANS
    }


def check_trained(events: list[dict], report: dict | None) -> dict:
    started = events[0]
    assert started["event"] == "started" and started["emulated"] is True
    assert events[-1]["event"] == "finished" and events[-1]["step"] == STEPS
    losses = [e["total_loss"] for e in events if e["event"] == "progress"]
    assert losses and all(isinstance(v, float) and math.isfinite(v) for v in losses)
    if report is not None:  # the export ran in a fresh process on every validation image and agreed with training
        assert report["export_ap50"] is not None
        assert abs(report["export_ap50"] - report["training_ap50"]) <= report["tolerance"]
    return started


def test_one_hopper_gpu_plan_bfloat16_with_xla(emulated):
    _, events, params, report = emulated["hopper"]
    started = check_trained(events, report)
    runtime = params["runtime"]
    assert runtime["mixed_precision_dtype"] == "bfloat16" and runtime["enable_xla"] is True
    assert runtime["distribution_strategy"] == "one_device" and params["task"]["train_data"]["dtype"] == "bfloat16"
    assert (started["precision"], started["xla"], started["replicas"]) == ("bfloat16", True, 1)


def test_one_turing_gpu_plan_float16_with_dynamic_loss_scaling_and_xla(emulated):
    _, events, params, report = emulated["turing"]
    started = check_trained(events, report)
    assert params["runtime"]["mixed_precision_dtype"] == "float16" and params["runtime"]["loss_scale"] == "dynamic"
    assert (started["precision"], started["xla"], started["replicas"]) == ("float16", True, 1)


def test_two_ampere_gpus_plan_mirrored_with_sync_batch_norm(emulated):
    _, events, params, report = emulated["two_ampere"]
    started = check_trained(events, report)
    assert params["runtime"]["distribution_strategy"] == "mirrored" and params["runtime"]["num_gpus"] == 2
    assert params["task"]["model"]["norm_activation"]["use_sync_bn"] is True
    assert params["runtime"]["enable_xla"] is False
    assert (started["precision"], started["replicas"]) == ("bfloat16", 2)
    assert started["batch_size"] % 2 == 0


def test_show_config_prints_the_described_machines_plan(shapes_workspace):
    code, out = pipeline(
        "train",
        str(shapes_workspace),
        "--model",
        "resnet50-fpn",
        "--show-config",
        "--assume-hardware",
        "gpus=4,memory_gb=80,cc=8.0",
        timeout=120,
    )
    assert code == 0
    runtime = out["config"]["runtime"]
    assert (runtime["num_gpus"], runtime["mixed_precision_dtype"], runtime["distribution_strategy"]) == (
        4,
        "bfloat16",
        "mirrored",
    )
    assert out["config"]["task"]["train_data"]["global_batch_size"] % 4 == 0


def test_a_gpu_plan_without_gpus_fails_at_start_with_the_cause(shapes_workspace, tmp_path):
    """A job planned for real GPUs that TensorFlow cannot see ends in a `failed` event, not in silence."""
    from pipeline.train.config import TrainRequest
    from pipeline.train.hardware import parse_hardware_spec
    from pipeline.train.launch import create_job

    real = parse_hardware_spec("gpus=1,memory_gb=16,cc=7.5")
    real = type(real)(**(real.to_json() | {"assumed": False}))  # as if nvidia-smi had listed it
    job, _ = create_job(
        shapes_workspace,
        TrainRequest("mobilenetv2-fpn", steps=5, pretrained=False),
        tmp_path / "job",
        real,
        tmp_path / "cache",
    )
    code, out = pipeline("train", str(shapes_workspace), "--job-dir", str(job.root), timeout=300)
    assert code == 2
    (failed,) = read_events(job.events)
    assert failed["event"] == "failed" and failed["stage"] == "start" and failed["resumable"] is False
    assert "TensorFlow sees 0" in failed["message"] and "CUDA" in failed["message"]
