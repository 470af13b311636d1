"""The generated Model Garden config: presets, hardware, schedule, strict overrides (no training)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from pipeline.cli.main import main
from pipeline.data.workspace import Workspace
from pipeline.errors import UsageError
from pipeline.train.catalogue import catalog, get_model, recipe_of, recommend
from pipeline.train.config import TrainRequest, build_params, load_params, plan_schedule, save_params, workspace_facts
from pipeline.train.hardware import Hardware
from pipeline.train.job_folder import JobState

CPU = Hardware(cpu_cores=2)
TWO_A100 = Hardware(gpus=2, gpu_memory_mb=40960, compute_capability=8.0, cpu_cores=16)
ONE_T4 = Hardware(gpus=1, gpu_memory_mb=15360, compute_capability=7.5, cpu_cores=8)


@pytest.fixture(scope="module")
def facts(shapes_workspace):
    return workspace_facts(Workspace(shapes_workspace))


def test_facts_count_records_and_classes(facts):
    assert (facts.train_images, facts.val_images, facts.num_classes) == (32, 8, 4)


@pytest.mark.slow
@pytest.mark.parametrize("spec", catalog(), ids=lambda s: s.name)
def test_every_catalogue_model_builds_a_valid_config(spec, facts, tmp_path):
    params = build_params(spec, facts, CPU, TrainRequest(spec.name, steps=100))
    assert params.task.model.num_classes == 4
    assert params.task.model.input_size == [spec.input_size, spec.input_size, 3]
    assert params.task.train_data.input_path == facts.train_pattern
    save_params(params, tmp_path / "params.yaml")
    assert load_params(spec.experiment, tmp_path / "params.yaml").as_dict() == params.as_dict()


@pytest.mark.slow
def test_cpu_preset(facts):
    request = TrainRequest("mobilenetv2-fpn", epochs=2, pretrained=False)
    params = build_params(get_model("mobilenetv2-fpn"), facts, CPU, request)
    assert params.runtime.distribution_strategy == "one_device" and params.runtime.mixed_precision_dtype == "float32"
    assert params.task.train_data.global_batch_size == 8
    assert params.trainer.train_steps == 8  # 2 epochs of 32 images at batch 8
    assert params.task.model.backbone.mobilenet.filter_size_scale == 0.5
    assert params.task.model.norm_activation.norm_momentum == 0.9
    assert params.task.export_config.output_normalized_coordinates is True


@pytest.mark.slow
def test_a_pretrained_start_keeps_its_checkpoints_recipe(facts, tmp_path):
    cpu_scratch, cpu_imagenet = (
        build_params(get_model("mobilenetv2-fpn"), facts, CPU, TrainRequest("mobilenetv2-fpn", pretrained=pretrained))
        for pretrained in (False, True)
    )
    # The CPU preset halves MobileNetV2's filters, which the ImageNet checkpoint (width 1.0) would not fit.
    assert (
        cpu_scratch.task.model.backbone.mobilenet.filter_size_scale == 0.5 and cpu_scratch.task.init_checkpoint is None
    )
    assert cpu_imagenet.task.model.backbone.mobilenet.filter_size_scale == 1.0
    assert cpu_imagenet.task.init_checkpoint_modules == ["backbone"]
    # Model Garden's published SpineNet-49 Mobile recipe (coco_spinenet49_mobile_tpu.yaml) is hard_swish, and
    # the COCO detector's head comes with its backbone.
    mobile = build_params(get_model("spinenet49-mobile"), facts, ONE_T4, TrainRequest("spinenet49-mobile"))
    assert mobile.task.model.norm_activation.activation == "hard_swish"
    assert mobile.task.init_checkpoint_modules == ["backbone", "decoder", "head"]
    with pytest.raises(UsageError, match=r"norm_activation.activation is 'swish', the checkpoint's 'hard_swish'"):
        build_params(
            get_model("spinenet49-mobile"),
            facts,
            ONE_T4,
            TrainRequest("spinenet49-mobile", overrides=("task.model.norm_activation.activation=swish",)),
        )
    # A checkpoint of the user's brings its recipe in its params.yaml: the same check holds.
    save_params(cpu_scratch, tmp_path / "params.yaml")
    recipe = recipe_of(yaml.safe_load((tmp_path / "params.yaml").read_text()))
    assert recipe["task.model.backbone.mobilenet.filter_size_scale"] == 0.5
    assert recipe["task.model.norm_activation.activation"] == "relu" and recipe["task.model.head.num_convs"] == 2
    own = TrainRequest("mobilenetv2-fpn", pretrained_url="https://example.org/mine.tar.gz")
    assert (
        build_params(get_model("mobilenetv2-fpn"), facts, CPU, own, recipe=recipe).task.init_checkpoint_modules == "all"
    )
    # On a GPU, whose preset is the full width, the start adopts the checkpoint's; an override may not undo it.
    gpu = build_params(get_model("mobilenetv2-fpn"), facts, ONE_T4, own, recipe=recipe)
    assert gpu.task.model.backbone.mobilenet.filter_size_scale == 0.5
    wide = replace(own, overrides=("task.model.backbone.mobilenet.filter_size_scale=1.0",))
    with pytest.raises(UsageError, match=r"filter_size_scale is 1.0, the checkpoint's 0.5"):
        build_params(get_model("mobilenetv2-fpn"), facts, ONE_T4, wide, recipe=recipe)


@pytest.mark.slow
def test_gpu_preset_uses_every_gpu_mixed_precision_and_sync_bn(facts):
    params = build_params(get_model("resnet50-fpn"), facts, TWO_A100, TrainRequest("resnet50-fpn", steps=20000))
    assert params.runtime.distribution_strategy == "mirrored" and params.runtime.num_gpus == 2
    assert params.runtime.mixed_precision_dtype == "bfloat16" and params.task.train_data.dtype == "bfloat16"
    assert params.runtime.loss_scale is None
    # Several GPUs: sync batch norm, and no XLA (its compiled step cannot hold the sync-BN all-reduce).
    assert params.runtime.enable_xla is False and params.task.model.norm_activation.use_sync_bn is True
    assert params.task.train_data.global_batch_size % 2 == 0
    assert params.task.model.norm_activation.norm_momentum == 0.99
    t4 = build_params(get_model("spinenet49-mobile"), facts, ONE_T4, TrainRequest("spinenet49-mobile", steps=50))
    assert t4.runtime.mixed_precision_dtype == "float16" and t4.task.validation_data.dtype == "float16"
    assert t4.runtime.loss_scale == "dynamic" and t4.runtime.enable_xla is True


@pytest.mark.slow
@pytest.mark.parametrize(
    "hardware, policy, loss_scaled",
    [(TWO_A100, "mixed_bfloat16", False), (ONE_T4, "mixed_float16", True), (CPU, "float32", False)],
    ids=["bfloat16", "float16", "float32"],
)
def test_model_garden_accepts_the_planned_precision(facts, hardware, policy, loss_scaled):
    """The defect: `mixed_bfloat16` made Model Garden raise before the first step on every modern GPU."""
    import tf_keras
    from official.core import task_factory
    from official.modeling import performance

    params = build_params(get_model("mobilenetv2-fpn"), facts, hardware, TrainRequest("mobilenetv2-fpn", steps=20))
    try:
        performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
        assert tf_keras.mixed_precision.global_policy().name == policy
        task = task_factory.get_task(params.task)
        optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime)
        assert isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer) is loss_scaled
        if loss_scaled:
            assert optimizer.dynamic
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_multi_host_strategies_are_refused(facts):
    spec = get_model("mobilenetv2-fpn")
    with pytest.raises(UsageError, match="one host"):
        build_params(
            spec,
            facts,
            CPU,
            TrainRequest(spec.name, steps=5, overrides=("runtime.distribution_strategy=multi_worker_mirrored",)),
        )


def test_learning_rate_scales_with_batch_and_run_length(facts):
    spec = get_model("mobilenetv2-fpn")
    small = plan_schedule(spec, facts, CPU, TrainRequest(spec.name, steps=1000, batch_size=4))
    big = plan_schedule(spec, facts, CPU, TrainRequest(spec.name, steps=1000, batch_size=256))
    assert small.learning_rate == pytest.approx(0.04) and big.learning_rate == pytest.approx(0.32)
    assert small.warmup_steps == 100 and small.eval_interval == 100 and small.steps_per_loop == 50


@pytest.mark.slow
def test_overrides_are_strict_and_typed(facts):
    spec = get_model("mobilenetv2-fpn")
    with pytest.raises(UsageError, match="bogus"):
        build_params(spec, facts, CPU, TrainRequest(spec.name, steps=5, overrides=("task.model.bogus=1",)))
    with pytest.raises(UsageError, match="key=value"):
        build_params(spec, facts, CPU, TrainRequest(spec.name, steps=5, overrides=("oops",)))
    params = build_params(
        spec,
        facts,
        CPU,
        TrainRequest(
            spec.name,
            steps=5,
            overrides=(
                "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=1",
                "trainer.optimizer_config.warmup.linear.warmup_learning_rate=1e-4",
                "task.model.head.num_convs=3",
            ),
        ),
    )
    assert params.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate == 1.0
    assert isinstance(params.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate, float)
    assert params.trainer.optimizer_config.warmup.linear.warmup_learning_rate == pytest.approx(1e-4)
    assert params.task.model.head.num_convs == 3


@pytest.mark.slow
def test_roll_back_state_scales_learning_rate_and_batch(facts):
    from pipeline.train.session import scaled_params

    params = build_params(get_model("mobilenetv2-fpn"), facts, CPU, TrainRequest("mobilenetv2-fpn", steps=50))
    scaled = scaled_params(params, JobState(lr_scale=0.5, batch_scale=0.5))
    lr = lambda p: p.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate  # noqa: E731
    assert scaled.task.train_data.global_batch_size == 4
    # Half the batch below 8 halves the rate (linear there), and the roll-back halves it again.
    assert lr(scaled) == pytest.approx(lr(params) * 0.25)
    assert scaled.trainer.optimizer_config.warmup.linear.warmup_learning_rate == pytest.approx(
        params.trainer.optimizer_config.warmup.linear.warmup_learning_rate * 0.25
    )


def test_recommendation_follows_data_and_hardware():
    assert recommend(5000, CPU).name == "mobilenetv2-fpn"
    assert recommend(100, TWO_A100).name == "spinenet49-mobile"
    assert recommend(5000, Hardware(gpus=1, gpu_memory_mb=6144, compute_capability=7.5)).name == "spinenet49-mobile"
    choice = recommend(5000, TWO_A100)
    assert choice.name == "resnet50-fpn" and "5000 labelled images" in choice.reason


def test_models_command_lists_the_catalogue(capsys):
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in out["models"]]
    assert {"mobilenetv2-fpn", "spinenet49-mobile", "resnet50-fpn", "spinenet49"} <= set(names)
    assert out["recommended"] == "mobilenetv2-fpn" and "CPU" in out["reason"]
    assert all(m["coco_ap"] > 0 and m["when"] for m in out["models"])


def test_unknown_model_lists_the_choices():
    with pytest.raises(UsageError, match="mobilenetv2-fpn"):
        get_model("yolo")


@pytest.mark.slow
def test_show_config_prints_yaml(shapes_workspace, capsys):
    assert main(["train", str(shapes_workspace), "--steps", "7", "--show-config", "task.model.head.num_convs=1"]) == 0
    text = capsys.readouterr().out
    assert "train_steps: 7" in text and "num_convs: 1" in text
    assert not (shapes_workspace / "jobs").exists()
