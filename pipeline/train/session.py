"""The TensorFlow side of a training job: Model Garden's task and trainer, built,
restored, saved and rebuilt with a lower learning rate or batch when needed.

Only this module (and export) import TensorFlow, lazily, in the training process.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from pathlib import Path

from pipeline.errors import PipelineError, TrainingError
from pipeline.files import write_json
from pipeline.train.config import CPU_BATCH, base_learning_rate
from pipeline.train.hardware import Hardware
from pipeline.train.job_folder import JobPaths, JobState
from pipeline.train.restore import RestoreReport, build_variables, restore_pretrained

log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 3
# What one logical CPU device trains per step when it stands in for a GPU of the plan.
EMULATED_BATCH_PER_REPLICA = 4


class OutOfMemory(Exception):
    """The batch did not fit on the accelerator."""


class Session:
    def __init__(
        self,
        params,
        state: JobState,
        job: JobPaths,
        hardware: Hardware | None = None,
        keep_classifier: bool = False,
    ):
        import tensorflow as tf
        from official.modeling import performance

        from pipeline.train.devices import configure_tensorflow

        self.tf, self.base_params, self.job = tf, params, job
        self.keep_classifier = keep_classifier
        self.start: RestoreReport | None = None  # what a fresh start took from the pretrained checkpoint
        configure_tensorflow(tf)
        planned = int(params.runtime.num_gpus or 0)
        self.emulated = emulated_replicas(tf, planned, hardware)
        performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
        self.strategy = build_strategy(tf, params, self.emulated)
        # A CPU standing in for GPUs trains the plan's numerics on a batch it can hold.
        self.batch_fit = emulated_batch_scale(params, self.emulated)
        self.last_good_step = 0
        self.rebuild(state)

    def rebuild(self, state: JobState) -> None:
        """(Re)create task, model and trainer for ``state`` and restore the last good checkpoint."""
        from official.core import task_factory, train_utils

        from pipeline.train.coco_evaluator import use_per_class_evaluator

        tf = self.tf
        self.params = scaled_params(self.base_params, state, self.batch_fit)
        with self.strategy.scope():
            task = task_factory.get_task(self.params.task, logging_dir=str(self.job.root))
            self.trainer = train_utils.create_trainer(self.params, task, train=True, evaluate=True)
        use_per_class_evaluator(task)
        self.task = task
        self.manager = tf.train.CheckpointManager(
            self.trainer.checkpoint,
            str(self.job.checkpoints),
            max_to_keep=KEEP_CHECKPOINTS,
            step_counter=self.trainer.global_step,
        )
        self.best_manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=self.trainer.model), str(self.job.best), max_to_keep=1
        )
        if self.manager.latest_checkpoint:
            self.trainer.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
        elif self.params.task.init_checkpoint:
            config = self.params.task
            with self.strategy.scope():
                build_variables(self.trainer.model, config.model.input_size)
            self.start = restore_pretrained(
                self.trainer.model, config.init_checkpoint, config.init_checkpoint_modules, self.keep_classifier
            )
        self.last_good_step = self.step

    @property
    def step(self) -> int:
        return int(self.trainer.global_step.numpy())

    @property
    def batch_size(self) -> int:
        return int(self.params.task.train_data.global_batch_size)

    @property
    def learning_rate(self) -> float:
        return float(_lr_fields(self.params)[0])

    def train(self, steps: int) -> dict:
        try:
            logs = self.trainer.train(self.tf.constant(steps, dtype=self.tf.int32))
        except self.tf.errors.ResourceExhaustedError as exc:
            raise OutOfMemory(str(exc)[:200]) from None
        return {key: float(value) for key, value in logs.items() if getattr(value, "shape", ()) == ()}

    def save_checkpoint(self) -> bool:
        """Save only finite weights: a NaN checkpoint would be what a roll-back returns to."""
        if not self._finite():
            log.warning("weights are not finite at step %d; not saving", self.step)
            return False
        self.manager.save(checkpoint_number=self.step)
        self.last_good_step = self.step
        return True

    def has_checkpoint_at(self, step: int) -> bool:
        latest = self.manager.latest_checkpoint
        return bool(latest) and latest.endswith(f"-{step}")

    def evaluate(self) -> dict:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
            logs = self.trainer.evaluate(self.tf.constant(-1, dtype=self.tf.int32))
        return {key: float(value) for key, value in logs.items() if getattr(value, "shape", ()) == ()}

    def keep_if_best(self, step: int, ap: float, metrics: dict, per_class: dict) -> bool:
        if self.best and ap <= self.best["AP"]:
            return False
        if not self._finite():
            return False
        path = str(Path(self.best_manager.save(checkpoint_number=step)).absolute())
        write_json(
            self.job.best_json,
            {
                "step": step,
                "AP": ap,
                "AP50": metrics.get("AP50"),
                "AP75": metrics.get("AP75"),
                "per_class_AP": per_class,
                "checkpoint": path,
            },
        )
        return True

    def write_confusion(self, names: dict) -> None:
        from pipeline.train.coco_evaluator import write_confusion

        write_confusion(self.task.coco_metric, self.params.task.model.num_classes, names, self.job)

    def write_detections(self, workspace: Path, names: dict) -> Path | None:
        from pipeline.train.coco_evaluator import write_detections

        return write_detections(self.task.coco_metric, workspace, names, self.job.detections)

    @property
    def best(self) -> dict:
        return json.loads(self.job.best_json.read_text()) if self.job.best_json.exists() else {}

    def _finite(self) -> bool:
        tf = self.tf
        return all(
            bool(tf.reduce_all(tf.math.is_finite(tf.cast(w, tf.float32))))
            for w in self.trainer.model.weights
            if w.dtype.is_floating
        )


def scaled_params(params, state: JobState, batch_fit: float = 1.0):
    """A copy of ``params`` with the learning rate and batch the job's state asks for."""
    scaled = copy.deepcopy(params)
    batch = int(params.task.train_data.global_batch_size)
    replicas = max(1, int(params.runtime.num_gpus or 0))
    fitted = lambda scale: max(replicas, int(batch * scale * batch_fit) // replicas * replicas)  # noqa: E731
    new_batch = fitted(state.batch_scale)
    if state.batch_scale < 1 and new_batch == fitted(state.batch_scale * 2):  # halving no longer shrinks it
        raise TrainingError(
            f"The model does not fit in GPU memory even with a batch of {new_batch}: choose a "
            "smaller model (`python -m pipeline models`) or a smaller input size.",
            kind="out_of_memory",
            details={"batch": new_batch},
        )
    # The learning rate follows the planner's batch rule, so a halved batch trains as planned for it.
    factor = state.lr_scale * base_learning_rate(new_batch) / base_learning_rate(batch)
    lr = scaled.trainer.optimizer_config.learning_rate
    schedule = getattr(lr, lr.type)
    updates = {
        name: _scale(value, factor)
        for name, value in schedule.as_dict().items()
        if "learning_rate" in name or name == "values"
    }
    scaled.override(
        {
            "task": {"train_data": {"global_batch_size": new_batch}},
            "trainer": {"optimizer_config": {"learning_rate": {lr.type: updates}}},
        },
        is_strict=True,
    )
    warmup = scaled.trainer.optimizer_config.warmup
    if warmup.type:
        rate = getattr(warmup, warmup.type).as_dict().get("warmup_learning_rate")
        if rate is not None:
            scaled.override(
                {"trainer": {"optimizer_config": {"warmup": {warmup.type: {"warmup_learning_rate": rate * factor}}}}},
                is_strict=True,
            )
    return scaled


def describe_failure(error: Exception, job: JobPaths, step: int | None = None) -> tuple[str, str, dict]:
    """(cause, message, details) for an unexpected error, before the first step (``step`` None) or at ``step``."""
    if isinstance(error, PipelineError):
        return error.kind, str(error), error.details
    name = type(error).__name__
    detail = " ".join(str(error).split())[:300]
    when = "before the first step" if step is None else f"at step {step}"
    details = {"error": name, "step": step}
    if name == "ResourceExhaustedError":
        message = (
            f"The GPU ran out of memory {when}, while the model was being built. Another process may hold its "
            "memory (nvidia-smi lists them): wait for it, give this job its own GPU (DETBOT_GPUS_PER_JOB), or "
            "choose a smaller model or batch size."
        )
        return "out_of_memory", message, details
    if step is None and isinstance(error, (ValueError, TypeError, KeyError, AttributeError)):
        message = (
            f"Model Garden could not build this job's model or trainer ({name}: {detail}). The job's "
            f"config is {job.params}; start a new job without the overrides that changed it."
        )
        return "config", message, details
    message = (
        f"Training stopped {when} on an unexpected error ({name}: {detail}). The traceback is in "
        f"the trainer's log ({job.log} for a background job)."
    )
    return "internal", message, details


def emulated_replicas(tf, planned_gpus: int, hardware: Hardware | None) -> int:
    """How many logical CPU devices stand in for the plan's GPUs (0: the plan runs as it is)."""
    if not planned_gpus:
        return 0
    visible = len(tf.config.list_physical_devices("GPU"))
    if visible >= planned_gpus:
        return 0
    if hardware is None or not hardware.assumed:
        raise TrainingError(
            f"This job was planned for {planned_gpus} GPU(s), but TensorFlow sees {visible}. Check "
            'the CUDA set-up (README, "Training on a GPU host": python -c "import tensorflow as '
            "tf; print(tf.config.list_physical_devices('GPU'))\"), or start a new job, which plans "
            "for the GPUs that are there.",
            kind="gpus_missing",
            details={"planned": planned_gpus, "visible": visible},
        )
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * planned_gpus)
    log.info("no %d GPU(s) here: emulating the plan over %d logical CPU devices", planned_gpus, planned_gpus)
    return planned_gpus


def build_strategy(tf, params, emulated: int):
    """The plan's strategy; emulated, the same kind over logical CPU devices."""
    if emulated:
        devices = [device.name for device in tf.config.list_logical_devices("CPU")][:emulated]
        if params.runtime.distribution_strategy == "one_device":
            return tf.distribute.OneDeviceStrategy(devices[0])
        return tf.distribute.MirroredStrategy(devices=devices)
    from official.common import distribute_utils

    return distribute_utils.get_distribution_strategy(
        distribution_strategy=params.runtime.distribution_strategy,
        all_reduce_alg=params.runtime.all_reduce_alg,
        num_gpus=params.runtime.num_gpus,
        tpu_address=params.runtime.tpu,
    )


def emulated_batch_scale(params, emulated: int) -> float:
    """The share of the planned batch a CPU emulation trains with (1.0 when it fits)."""
    batch = int(params.task.train_data.global_batch_size)
    fits = max(CPU_BATCH, EMULATED_BATCH_PER_REPLICA * emulated)
    return 1.0 if not emulated or batch <= fits else fits / batch


def _scale(value, factor):
    if isinstance(value, (list, tuple)):
        return [v * factor for v in value]
    return value * factor if isinstance(value, float) else value


def _lr_fields(params) -> list[float]:
    lr = params.trainer.optimizer_config.learning_rate
    values = [v for k, v in getattr(lr, lr.type).as_dict().items() if "learning_rate" in k and isinstance(v, float)]
    return values or [0.0]
