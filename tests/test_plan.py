"""The training plan for described machines: precision, batch, steps, intervals (pure Python, no TensorFlow)."""

from __future__ import annotations

import math

import pytest

from pipeline.errors import UsageError
from pipeline.train.catalogue import catalog, get_model
from pipeline.train.config import DataFacts, TrainRequest, base_learning_rate, plan_schedule
from pipeline.train.hardware import Hardware, parse_hardware_spec

CPU = Hardware(cpu_cores=2)
MACHINES = {
    "cpu": CPU,
    "1xT4": parse_hardware_spec("gpus=1,memory_gb=16,cc=7.5", cpu_cores=8),
    "1xA100": parse_hardware_spec("gpus=1,memory_gb=80,cc=8.0", cpu_cores=16),
    "1xH200": parse_hardware_spec("gpus=1,memory_gb=141,cc=9.0", cpu_cores=16),
    "4xA100": parse_hardware_spec("gpus=4,memory_gb=80,cc=8.0", cpu_cores=64),
}


def facts(train_images: int) -> DataFacts:
    return DataFacts(
        num_classes=3,
        train_images=train_images,
        val_images=max(1, train_images // 4),
        train_pattern="/ws/data/train-*",
        val_pattern="/ws/data/val-*",
        label_map="/ws/label_map.pbtxt",
    )


def test_precision_follows_compute_capability():
    assert [parse_hardware_spec(f"gpus=1,memory_gb=16,cc={cc}").precision for cc in (6.1, 7.0, 7.5, 8.0, 9.0)] == [
        "float32",
        "float16",
        "float16",
        "bfloat16",
        "bfloat16",
    ]
    assert CPU.precision == "float32" and parse_hardware_spec("gpus=0").gpus == 0


@pytest.mark.parametrize(
    "spec",
    [
        "gpus=2,memory_gb=80",
        "gpus=1,memory_gb=80,cc=x",
        "gpus=2,vram=8,cc=8",
        "gpus=99,memory_gb=80,cc=8.0",
        "gpus=1,memory_gb=0,cc=8.0",
    ],
)
def test_bad_hardware_descriptions_are_refused_with_the_form(spec):
    with pytest.raises(UsageError, match="gpus|memory_gb|cc"):
        parse_hardware_spec(spec)


def test_assumed_hardware_says_so():
    machine = parse_hardware_spec("gpus=2,memory_gb=40,cc=8.0")
    assert (machine.gpus, machine.gpu_memory_mb, machine.compute_capability) == (2, 40 * 1024, 8.0)
    assert machine.assumed and "assumed" in machine.device
    assert Hardware.from_json(machine.to_json()) == machine


@pytest.mark.parametrize("machine", MACHINES, ids=str)
@pytest.mark.parametrize("images", [160, 5000])
@pytest.mark.parametrize("model", [spec.name for spec in catalog()])
def test_default_plans_learn_on_any_machine(machine, images, model):
    hardware = MACHINES[machine]
    plan = plan_schedule(get_model(model), facts(images), hardware, TrainRequest(model))
    replicas = max(1, hardware.gpus)
    assert plan.batch_size % replicas == 0 and plan.batch_size >= replicas
    # An epoch keeps at least ten optimiser steps, unless the batch is already the smallest useful one.
    assert math.ceil(images / plan.batch_size) >= 10 or plan.batch_size <= 8
    assert plan.steps >= 1000  # Model Garden's fine-tuning tutorial: ~1,000 steps
    # Warm-up in proportion (Model Garden's tutorial: 100 of 1,000), capped for long runs.
    assert min(1000, 0.05 * plan.steps) <= plan.warmup_steps <= 0.15 * plan.steps
    # Evaluations and checkpoints may not dominate: at most ~10 evaluations, never every few steps.
    assert plan.steps / plan.eval_interval <= 11 and plan.eval_interval >= 100
    assert 50 <= plan.checkpoint_interval <= plan.eval_interval and plan.checkpoint_interval % plan.steps_per_loop == 0
    assert plan.learning_rate == pytest.approx(base_learning_rate(plan.batch_size))


def test_small_data_on_a_big_gpu_gets_a_small_batch_and_enough_steps():
    # The defect: 160 images on one H200 gave batch 256, 50 steps, and an evaluation every 4 steps.
    plan = plan_schedule(
        get_model("spinenet49-mobile"), facts(160), MACHINES["1xH200"], TrainRequest("spinenet49-mobile")
    )
    assert plan.batch_size <= 16 and plan.steps >= 1000 and plan.eval_interval >= 100
    big = plan_schedule(
        get_model("spinenet49-mobile"), facts(5000), MACHINES["1xH200"], TrainRequest("spinenet49-mobile")
    )
    assert big.batch_size > 8 * plan.batch_size  # with data to fill it, the memory sets the batch


def test_memory_caps_the_batch():
    t4 = plan_schedule(get_model("resnet50-fpn"), facts(5000), MACHINES["1xT4"], TrainRequest("resnet50-fpn"))
    a100 = plan_schedule(get_model("resnet50-fpn"), facts(5000), MACHINES["1xA100"], TrainRequest("resnet50-fpn"))
    assert t4.batch_size < a100.batch_size
    assert t4.batch_size <= get_model("resnet50-fpn").batch_per_16gb


def test_learning_rate_grows_with_the_batch_through_both_anchors():
    rates = [base_learning_rate(batch) for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)]
    assert rates == sorted(rates) and len(set(rates)) == len(rates)
    assert base_learning_rate(8) == pytest.approx(0.08)  # measured on the CPU
    assert base_learning_rate(256) == pytest.approx(0.32)  # RetinaNet's COCO recipe
    assert base_learning_rate(4) == pytest.approx(0.04)
    # Sub-linear between the anchors: doubling the batch never doubles the rate.
    assert all(b / a < 2 for a, b in zip(rates[3:], rates[4:]))


def test_explicit_length_is_kept_and_small_runs_keep_small_intervals():
    spec = get_model("mobilenetv2-fpn")
    plan = plan_schedule(spec, facts(32), CPU, TrainRequest(spec.name, steps=10))
    assert plan.steps == 10 and plan.eval_interval == 10 and plan.checkpoint_interval <= 10
    two_epochs = plan_schedule(spec, facts(32), CPU, TrainRequest(spec.name, epochs=2))
    assert two_epochs.steps == 2 * math.ceil(32 / two_epochs.batch_size)
    with pytest.raises(UsageError, match="either steps or epochs"):
        plan_schedule(spec, facts(32), CPU, TrainRequest(spec.name, steps=5, epochs=1))
