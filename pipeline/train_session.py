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

from .dataset import write_json
from .errors import TrainingError
from .jobs import JobPaths, JobState

log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 3


class OutOfMemory(Exception):
    """The batch did not fit on the accelerator."""


class Session:
    def __init__(self, params, state: JobState, job: JobPaths):
        import tensorflow as tf
        from official.common import distribute_utils
        from official.modeling import performance

        self.tf, self.base_params, self.job = tf, params, job
        performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
        self.strategy = distribute_utils.get_distribution_strategy(
            distribution_strategy=params.runtime.distribution_strategy,
            all_reduce_alg=params.runtime.all_reduce_alg, num_gpus=params.runtime.num_gpus,
            tpu_address=params.runtime.tpu)
        self.last_good_step = 0
        self.rebuild(state)

    def rebuild(self, state: JobState) -> None:
        """(Re)create task, model and trainer for ``state`` and restore the last good checkpoint."""
        from official.core import task_factory, train_utils

        from .coco_metrics import use_per_class_evaluator

        tf = self.tf
        self.params = scaled_params(self.base_params, state)
        with self.strategy.scope():
            task = task_factory.get_task(self.params.task, logging_dir=str(self.job.root))
            self.trainer = train_utils.create_trainer(self.params, task, train=True, evaluate=True)
        use_per_class_evaluator(task)
        self.task = task
        self.manager = tf.train.CheckpointManager(self.trainer.checkpoint, str(self.job.checkpoints),
                                                  max_to_keep=KEEP_CHECKPOINTS, step_counter=self.trainer.global_step)
        self.best_manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=self.trainer.model),
                                                       str(self.job.best), max_to_keep=1)
        if self.manager.latest_checkpoint:
            self.trainer.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
        else:
            self.trainer.initialize()  # pretrained modules, when the config names a checkpoint
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
        write_json(self.job.best_json, {"step": step, "AP": ap, "AP50": metrics.get("AP50"),
                                        "AP75": metrics.get("AP75"), "per_class_AP": per_class,
                                        "checkpoint": path})
        return True

    def write_confusion(self, names: dict) -> None:
        from .coco_metrics import write_confusion

        write_confusion(self.task.coco_metric, self.params.task.model.num_classes, names, self.job)

    def write_detections(self, workspace: Path, names: dict) -> Path | None:
        from .coco_metrics import write_detections

        return write_detections(self.task.coco_metric, workspace, names, self.job.detections)

    @property
    def best(self) -> dict:
        return json.loads(self.job.best_json.read_text()) if self.job.best_json.exists() else {}

    def _finite(self) -> bool:
        tf = self.tf
        return all(bool(tf.reduce_all(tf.math.is_finite(tf.cast(w, tf.float32)))) for w in self.trainer.model.weights
                   if w.dtype.is_floating)


def scaled_params(params, state: JobState):
    """A copy of ``params`` with the learning rate and batch the job's state asks for."""
    scaled = copy.deepcopy(params)
    batch = int(params.task.train_data.global_batch_size)
    new_batch = max(1, int(batch * state.batch_scale))
    if state.batch_scale < 1 and new_batch == batch:
        raise TrainingError("The model does not fit in GPU memory even with a batch of 1: choose a smaller "
                            "model (`python -m pipeline models`) or a smaller input size.")
    factor = state.lr_scale * new_batch / batch  # linear scaling rule for the batch
    lr = scaled.trainer.optimizer_config.learning_rate
    schedule = getattr(lr, lr.type)
    updates = {name: _scale(value, factor) for name, value in schedule.as_dict().items()
               if "learning_rate" in name or name == "values"}
    scaled.override({"task": {"train_data": {"global_batch_size": new_batch}},
                     "trainer": {"optimizer_config": {"learning_rate": {lr.type: updates}}}}, is_strict=True)
    warmup = scaled.trainer.optimizer_config.warmup
    if warmup.type:
        rate = getattr(warmup, warmup.type).as_dict().get("warmup_learning_rate")
        if rate is not None:
            scaled.override({"trainer": {"optimizer_config": {"warmup": {
                warmup.type: {"warmup_learning_rate": rate * factor}}}}}, is_strict=True)
    return scaled


def _scale(value, factor):
    if isinstance(value, (list, tuple)):
        return [v * factor for v in value]
    return value * factor if isinstance(value, float) else value


def _lr_fields(params) -> list[float]:
    lr = params.trainer.optimizer_config.learning_rate
    values = [v for k, v in getattr(lr, lr.type).as_dict().items() if "learning_rate" in k and isinstance(v, float)]
    return values or [0.0]
