"""The Model Garden ``ExperimentConfig`` for one training job, done for the user.

What a person used to edit by hand in ``pipeline.config`` (classes, paths, batch
size, steps, schedule, precision) is derived here from the catalogue entry, the
workspace and the hardware; the user may still override any key, strictly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from pipeline.data.tfrecord import iter_records
from pipeline.data.workspace import Workspace
from pipeline.errors import TrainingError, UsageError
from pipeline.files import write_text
from pipeline.label_map import read_pbtxt
from pipeline.train.catalogue import ModelSpec, StartPoint, start_point
from pipeline.train.hardware import Hardware

DEFAULT_EPOCHS = {"cpu": 30, "gpu": 50}
CPU_BATCH = 8
# A default run has at least this many optimiser steps: Model Garden's fine-tuning tutorial
# trains RetinaNet for 1,000 steps at batch 8 with 100 warm-up steps, and a detector barely
# moves in 50 (measured on shapes: AP50 0.93 only after ~300 steps at batch 8).
MIN_DEFAULT_STEPS = 1000
# The batch may not be so large that an epoch has fewer optimiser steps than this.
MIN_STEPS_PER_EPOCH = 10
WARMUP_FRACTION, MAX_WARMUP_STEPS = 0.1, 1000
# The learning rate follows two anchors on a power law: 0.08 at batch 8 (measured: from
# scratch on shapes 0.01 barely moves in 300 steps while 0.08 reaches AP50 0.96 by step 360)
# and RetinaNet's COCO recipe, 0.32 at batch 256; linear below batch 8.
LR_ANCHOR_BATCH, LR_ANCHOR, LR_RECIPE_BATCH, LR_RECIPE = 8, 0.08, 256, 0.32
# Short runs need batch-norm statistics that follow the weights quickly.
LONG_RUN_STEPS = 10_000
EVALS_PER_RUN = 10
# Evaluating or checkpointing more often than this many steps costs more than it tells.
MIN_EVAL_INTERVAL, MIN_CHECKPOINT_INTERVAL = 100, 50


@dataclass(frozen=True)
class TrainRequest:
    model: str
    steps: int | None = None
    epochs: float | None = None
    batch_size: int | None = None
    overrides: tuple[str, ...] = ()
    pretrained: bool = True
    pretrained_url: str | None = None  # instead of the catalogue's checkpoint (a mirror, a file)
    early_stop_evals: int = 0  # stop after this many evaluations without a better AP (0: never)
    max_recoveries: int = 3  # NaN roll-backs before giving up
    recovery_lr_factor: float = 0.5  # learning-rate multiplier at each roll-back
    url_policy: str = "any"  # addresses an http(s) pretrained URL may reach (pipeline.fetch.POLICIES)
    keep_classifier: bool = False  # keep the checkpoint's class-logits layer too (only when the class counts match)


@dataclass(frozen=True)
class DataFacts:
    num_classes: int  # highest label id + 1 (id 0 is the background)
    train_images: int
    val_images: int
    train_pattern: str
    val_pattern: str
    label_map: str


@dataclass(frozen=True)
class Schedule:
    batch_size: int
    steps: int
    steps_per_loop: int
    checkpoint_interval: int
    eval_interval: int
    eval_batch_size: int
    validation_steps: int
    learning_rate: float
    warmup_steps: int
    extra: dict = field(default_factory=dict)


def workspace_facts(ws: Workspace) -> DataFacts:
    """The facts a trainer needs, with every record of the shards counted: what it will train on."""
    train, val = ws.records("train"), ws.records("val")
    if not train or not val:
        raise TrainingError(
            f"The workspace {ws.root} has no train/val records yet: run "
            "`python -m pipeline prepare DATASET.zip --out WORKSPACE` first.",
            kind="no_records",
        )
    counts = {
        split: sum(1 for path in paths for _ in iter_records(path)) for split, paths in (("train", train), ("val", val))
    }
    return _facts(ws, counts, max(item.id for item in read_pbtxt(ws.label_map).items) + 1)


def summary_facts(ws: Workspace, summary: dict) -> DataFacts:
    """The same facts from the dataset's summary (``steps.build_summary``), without opening a shard.

    For planning (a chat's confirmation card); a trainer counts the records (``workspace_facts``).
    """
    counts = {split: summary["splits"].get(split, {}).get("images", 0) for split in ("train", "val")}
    return _facts(ws, counts, max(item["id"] for item in summary["label_map"]) + 1)


def _facts(ws: Workspace, counts: dict[str, int], num_classes: int) -> DataFacts:
    if counts["val"] == 0 or counts["train"] == 0:
        raise TrainingError(
            f"The workspace {ws.root} has {counts['train']} training and {counts['val']} "
            "validation images; training needs both. Add images, or split again.",
            kind="empty_split",
            details={"train": counts["train"], "val": counts["val"]},
        )
    return DataFacts(
        num_classes=num_classes,
        train_images=counts["train"],
        val_images=counts["val"],
        train_pattern=str(ws.data.absolute() / "train-*-of-*.tfrecord"),
        val_pattern=str(ws.data.absolute() / "val-*-of-*.tfrecord"),
        label_map=str(ws.label_map),
    )


def plan_schedule(spec: ModelSpec, facts: DataFacts, hardware: Hardware, request: TrainRequest) -> Schedule:
    """Steps, batch and intervals sized by the data first, then by the machine."""
    if request.steps is not None and request.epochs is not None:
        raise UsageError("Give either steps or epochs, not both.", kind="steps_and_epochs")
    batch = request.batch_size or default_batch(spec, facts, hardware)
    steps_per_epoch = math.ceil(facts.train_images / batch)
    if request.steps is not None:
        steps = request.steps
    elif request.epochs is not None:
        steps = max(1, math.ceil(request.epochs * steps_per_epoch))
    else:
        epochs = DEFAULT_EPOCHS["gpu" if hardware.gpus else "cpu"]
        steps = max(MIN_DEFAULT_STEPS, math.ceil(epochs * steps_per_epoch))
    loop = max(1, min(100, steps // 20))
    eval_interval = _multiple(max(steps / EVALS_PER_RUN, min(MIN_EVAL_INTERVAL, steps)), loop)
    checkpoint_interval = min(eval_interval, _multiple(max(loop * 5, min(MIN_CHECKPOINT_INTERVAL, steps)), loop))
    eval_batch = max(1, min(8, facts.val_images))
    return Schedule(
        batch_size=batch,
        steps=steps,
        steps_per_loop=loop,
        checkpoint_interval=checkpoint_interval,
        eval_interval=eval_interval,
        eval_batch_size=eval_batch,
        validation_steps=math.ceil(facts.val_images / eval_batch),
        learning_rate=base_learning_rate(batch),
        warmup_steps=min(MAX_WARMUP_STEPS, max(1, round(steps * WARMUP_FRACTION))),
    )


def _multiple(value: float, unit: int) -> int:
    """``value`` rounded to a whole number of training loops (at least one)."""
    return max(unit, round(value / unit) * unit)


def base_learning_rate(batch: int) -> float:
    if batch <= LR_ANCHOR_BATCH:
        return LR_ANCHOR * batch / LR_ANCHOR_BATCH
    exponent = math.log(LR_RECIPE / LR_ANCHOR) / math.log(LR_RECIPE_BATCH / LR_ANCHOR_BATCH)
    return LR_ANCHOR * (batch / LR_ANCHOR_BATCH) ** exponent


def default_batch(spec: ModelSpec, facts: DataFacts, hardware: Hardware) -> int:
    """The largest batch that fits the memory and still leaves an epoch enough optimiser steps."""
    replicas = max(1, hardware.gpus)
    if hardware.gpus:
        memory = _pow2_floor(spec.batch_per_16gb * hardware.gpu_memory_mb / 16384) * replicas
    else:
        memory = CPU_BATCH
    data = max(CPU_BATCH, _pow2_floor(facts.train_images / MIN_STEPS_PER_EPOCH))
    return max(replicas, min(memory, data) // replicas * replicas)


def _pow2_floor(value: float) -> int:
    return 2 ** int(math.log2(max(1.0, value)))


def config_overrides(
    spec: ModelSpec,
    facts: DataFacts,
    hardware: Hardware,
    plan: Schedule,
    start: StartPoint,
    init_checkpoint: str | None,
) -> dict:
    """Everything detbot sets, as one nested dict over the experiment's defaults."""
    precision = hardware.precision
    long_run = plan.steps >= LONG_RUN_STEPS
    settings = {
        # One device for one GPU: XLA cannot compile the mirrored strategy's gradient all-reduce
        # (merge_call) into the step, even over a single replica.
        "runtime.distribution_strategy": "mirrored" if hardware.gpus > 1 else "one_device",
        "runtime.num_gpus": hardware.gpus,
        "runtime.mixed_precision_dtype": precision,
        # Model Garden wraps its optimiser in a dynamic LossScaleOptimizer only for float16.
        "runtime.loss_scale": "dynamic" if precision == "float16" else None,
        # One GPU: XLA. Several: a sync-BN all-reduce cannot run inside an XLA-compiled step
        # (merge_call while defining a graph), and Model Garden's multi-GPU RetinaNet runs without it.
        "runtime.enable_xla": hardware.gpus == 1,
        "task.model.num_classes": facts.num_classes,
        "task.model.input_size": [spec.input_size, spec.input_size, 3],
        "task.model.norm_activation.norm_momentum": 0.99 if long_run else 0.9,
        "task.model.norm_activation.use_sync_bn": hardware.gpus > 1,
        "task.annotation_file": None,
        "task.per_category_metrics": True,
        "task.init_checkpoint": init_checkpoint,
        "task.init_checkpoint_modules": list(start.modules) if isinstance(start.modules, tuple) else start.modules,
        "task.export_config.output_normalized_coordinates": True,
        "task.train_data": {
            "input_path": facts.train_pattern,
            "global_batch_size": plan.batch_size,
            "dtype": precision,
            "parser": {
                "aug_rand_hflip": True,
                "aug_scale_min": 0.5 if long_run else 0.8,
                "aug_scale_max": 2.0 if long_run else 1.25,
            },
        },
        "task.validation_data": {
            "input_path": facts.val_pattern,
            "global_batch_size": plan.eval_batch_size,
            "dtype": precision,
            "drop_remainder": False,
        },
        "trainer": _trainer_settings(plan),
    }
    # A pretrained start keeps the architecture its checkpoint was trained with, CPU savings or not.
    for extra in (spec.config, {} if hardware.gpus else spec.cpu_config, start.recipe):
        settings |= extra
    return nest(settings)


def _trainer_settings(plan: Schedule) -> dict:
    return {
        "train_steps": plan.steps,
        "steps_per_loop": plan.steps_per_loop,
        "summary_interval": plan.steps_per_loop,
        "checkpoint_interval": plan.checkpoint_interval,
        "validation_interval": plan.eval_interval,
        "validation_steps": plan.validation_steps,
        "best_checkpoint_eval_metric": "AP",
        "best_checkpoint_metric_comp": "higher",
        "optimizer_config": {
            "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9}},
            "learning_rate": {
                "type": "cosine",
                "cosine": {"initial_learning_rate": plan.learning_rate, "decay_steps": plan.steps},
            },
            "warmup": {
                "type": "linear",
                "linear": {"warmup_steps": plan.warmup_steps, "warmup_learning_rate": plan.learning_rate / 10},
            },
        },
    }


def nest(flat: dict) -> dict:
    """{"a.b": 1, "a.c": {"d": 2}} -> {"a": {"b": 1, "c": {"d": 2}}}, merging shared prefixes."""
    nested: dict = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = _merge(node[leaf], value)
        else:
            node[leaf] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict:
    """``key=value`` strings (values in YAML: 0.01, true, [1, 2]) as a flat dict."""
    flat = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"'{pair}' is not a key=value override; write e.g. "
                "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.01",
                kind="override_rejected",
            )
        try:
            flat[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UsageError(
                f"The value of override '{key}' is not valid YAML ({exc}).", kind="override_rejected"
            ) from None
    return flat


def build_params(
    spec: ModelSpec,
    facts: DataFacts,
    hardware: Hardware,
    request: TrainRequest,
    init_checkpoint: str | None = None,
    recipe: dict | None = None,
):
    """The locked ExperimentConfig: experiment defaults < detbot's choices < user overrides.

    ``init_checkpoint``: the fetched pretrained prefix (or its address, to show); ``recipe``: the keys a
    checkpoint of the user's was trained with (its params.yaml), checked like the catalogue's recipe.
    """
    import official.vision.registry_imports  # noqa: F401  (registers the experiments)
    from official.core import exp_factory

    start = start_point(spec, request.pretrained, request.pretrained_url)
    start = replace(start, recipe=start.recipe | (recipe or {}))
    params = exp_factory.get_exp_config(spec.experiment)
    plan = plan_schedule(spec, facts, hardware, request)
    checkpoint = init_checkpoint or start.url
    params.override(config_overrides(spec, facts, hardware, plan, start, checkpoint), is_strict=True)
    apply_user_overrides(params, request.overrides)
    check_recipe(params, start.recipe)
    params.validate()
    return params


def check_recipe(params, recipe: dict) -> None:
    """A pretrained start must keep what its weights were trained with: an activation, norm or architecture
    key that an override changed would load every weight and still not compute the features they learnt."""
    changed = [(key, _current(params, key), value) for key, value in recipe.items() if _current(params, key) != value]
    if changed:
        said = "; ".join(f"{key} is {ours!r}, the checkpoint's {theirs!r}" for key, ours, theirs in changed)
        raise UsageError(
            f"These settings do not match the pretrained checkpoint: {said}. Remove the override, or train "
            "from scratch (--no-pretrained).",
            kind="recipe_conflict",
        )


# Several hosts would each write the same checkpoints, best model and event stream.
UNSUPPORTED_STRATEGIES = ("multi_worker_mirrored", "parameter_server", "tpu")


def apply_user_overrides(params, overrides) -> None:
    flat = parse_overrides(overrides)
    if str(flat.get("runtime.distribution_strategy", "")).lower() in UNSUPPORTED_STRATEGIES:
        raise UsageError(
            f"runtime.distribution_strategy={flat['runtime.distribution_strategy']} is not supported: "
            "detbot trains one job on one host, on all the GPUs it is given (mirrored). Leave the "
            "strategy to detbot.",
            kind="override_rejected",
        )
    for key, value in flat.items():
        # YAML reads "1000" as an int and "1e9" as a string; given to a float field, either
        # breaks TensorFlow's schedules much later, far from the override that caused it.
        if isinstance(_current(params, key), float) and not isinstance(value, (bool, float)):
            try:
                flat[key] = float(value)
            except (TypeError, ValueError):
                raise UsageError(f"Override {key} needs a number, not '{value}'.", kind="override_rejected") from None
    try:
        params.override(nest(flat), is_strict=True)
    except (KeyError, AttributeError, ValueError, TypeError) as exc:
        raise UsageError(
            f"Override rejected: {_override_reason(exc)}. Keys follow Model Garden's config "
            "(`python -m pipeline train --show-config` prints them).",
            kind="override_rejected",
        ) from None


def _current(params, key: str):
    node = params
    for part in key.split("."):
        node = getattr(node, part, None)
    return node


def _override_reason(exc: Exception) -> str:
    text = str(exc).strip("'\" .")
    return text if len(text) < 300 else text[:297] + "..."


def save_params(params, path: Path) -> None:
    write_text(path, yaml.safe_dump(json.loads(json.dumps(params.as_dict())), sort_keys=True))


def load_params(experiment: str, path: Path):
    import official.vision.registry_imports  # noqa: F401
    from official.core import exp_factory

    params = exp_factory.get_exp_config(experiment)
    params.override(yaml.safe_load(path.read_text(encoding="utf-8")), is_strict=True)
    params.validate()
    return params
