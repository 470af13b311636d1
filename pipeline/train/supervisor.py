"""Supervised training: Model Garden's trainer, driven loop by loop by detbot.

Between loops the supervisor reports progress, checkpoints only finite weights,
evaluates with the COCO evaluator, keeps the best checkpoint, and on a NaN/Inf or
exploding loss rolls back to the last good checkpoint with half the learning
rate. Everything it does is an event in ``events.jsonl``.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import statistics
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from pipeline.errors import TrainingError
from pipeline.label_map import read_pbtxt
from pipeline.train.config import load_params
from pipeline.train.events import EventLog, read_events
from pipeline.train.hardware import Hardware
from pipeline.train.job_folder import JobPaths, JobState
from pipeline.train.plots import PLOT_INTERVAL_S, write_plots
from pipeline.train.session import OutOfMemory, Session, describe_failure

log = logging.getLogger(__name__)
# A loss this many times the recent median is a divergence even before it is NaN.
EXPLOSION_FACTOR = 25.0
_PER_CLASS = re.compile(r"^Precision mAP ByCategory(@50IoU)?/(\d+)$")


class Supervisor:
    def __init__(self, job: JobPaths, meta: dict):
        self.job, self.meta = job, meta
        self.events = EventLog(job.events)
        self.state = JobState.load(job)
        self.recent: deque[float] = deque(maxlen=10)
        self.stop_requested = False
        self.last_plot = 0.0
        self.evals_without_gain = 0
        self.request = meta["request"]
        self.session: Session | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        try:
            self._start()
        except Exception as error:  # nothing trained yet: say why, never leave the job silent
            log.exception("job %s could not start", self.job.root)
            cause, message, details = describe_failure(error, self.job)
            self.events.emit(
                "failed",
                self._last_step(),
                stage="start",
                cause=cause,
                details=details,
                resumable=False,
                message=message,
            )
            return 2
        try:
            return self._loop()
        except TrainingError as error:
            self.events.emit(
                "failed",
                self.session.step,
                stage="training",
                cause=error.kind,
                details=error.details,
                resumable=False,
                message=str(error),
            )
            return 2
        except Exception as error:  # the user hears why; the trainer's log keeps the traceback
            log.exception("job %s failed at step %d", self.job.root, self.session.step)
            cause, message, details = describe_failure(error, self.job, self.session.step)
            self.events.emit(
                "failed",
                self.session.step,
                stage="training",
                cause=cause,
                details=details,
                resumable=self.session.last_good_step > 0,
                message=message,
            )
            return 2
        finally:
            self._plots(force=True)

    def _start(self) -> None:
        self.params = load_params(self.meta["experiment"], self.job.params)
        self.total = self.params.trainer.train_steps
        self.names = read_pbtxt(Path(self.meta["label_map"])).names()
        hardware = Hardware.from_json(self.meta["hardware"]) if "hardware" in self.meta else None
        keep = bool(self.request.get("keep_classifier"))
        self.session = Session(self.params, self.state, self.job, hardware, keep_classifier=keep)
        runtime = self.params.runtime
        step = self.session.step
        self.events.emit(
            "started",
            step,
            total_steps=self.total,
            resumed=step > 0,
            model=self.meta["model"],
            device=self.meta["device"],
            batch_size=self.session.batch_size,
            learning_rate=self.session.learning_rate,
            planned_batch_size=int(self.params.task.train_data.global_batch_size),
            precision=runtime.mixed_precision_dtype or "float32",
            xla=bool(runtime.enable_xla),
            replicas=self.session.strategy.num_replicas_in_sync,
            emulated=bool(self.session.emulated),
            train_images=self.meta["train_images"],
            val_images=self.meta["val_images"],
            **self._start_point(step),
        )

    def _start_point(self, step: int) -> dict:
        """What this job started from: on a fresh start, what the pretrained checkpoint gave (counts of
        restored, re-initialised and unmatched variables); a resumed job continues its own checkpoint."""
        if step > 0:
            return {}
        start = self.session.start
        return start.counts() if start is not None else {"start": "scratch"}

    def _last_step(self) -> int:
        progress = [event["step"] for event in read_events(self.job.events)]
        return max(progress, default=0)

    def _loop(self) -> int:
        while self.session.step < self.total:
            if self.stop_requested or self.job.stop_flag.exists():
                return self._stop()
            before = self.session.step
            step, loss = self._train_loop()
            if loss is None:
                continue  # rolled back; the session restarted from the last good checkpoint
            self._maybe_checkpoint(before, step)
            if self._crossed(before, step, self.params.trainer.validation_interval) and self._evaluate(step):
                return self._finish(step, reason="early stop: AP stopped improving")
            self._plots()
        return self._finish(self.session.step, reason="all steps done")

    def _train_loop(self) -> tuple[int, float | None]:
        before, start = self.session.step, time.monotonic()
        count = min(self.params.trainer.steps_per_loop, self.total - before)
        try:
            logs = self.session.train(count)
        except OutOfMemory:
            self.state = replace(self.state, batch_scale=self.state.batch_scale / 2)
            self.state.save(self.job)
            self.session.rebuild(self.state)
            self._recovered(
                f"out of GPU memory: batch halved to {self.session.batch_size}, resumed from step {self.session.step}"
            )
            return before, None
        elapsed = time.monotonic() - start
        step, loss = self.session.step, float(logs["total_loss"])
        if self._diverged(loss, step):
            self._roll_back(step, loss)
            return step, None
        self.recent.append(loss)
        rate = count / elapsed if elapsed > 0 else 0.0
        self.events.emit(
            "progress",
            step,
            total_steps=self.total,
            total_loss=loss,
            cls_loss=_scalar(logs, "cls_loss"),
            box_loss=_scalar(logs, "box_loss"),
            learning_rate=_scalar(logs, "learning_rate"),
            steps_per_sec=round(rate, 3),
            images_per_sec=round(rate * self.session.batch_size, 2),
            eta_s=round((self.total - step) / rate) if rate else None,
        )
        return step, loss

    def _diverged(self, loss: float, step: int) -> bool:
        if not math.isfinite(loss):
            return True
        if (
            len(self.recent) < self.recent.maxlen
            or step <= self.params.trainer.optimizer_config.warmup.linear.warmup_steps
        ):
            return False
        return loss > EXPLOSION_FACTOR * statistics.median(self.recent)

    def _roll_back(self, step: int, loss: float) -> None:
        kind = "NaN/Inf" if not math.isfinite(loss) else f"exploding ({loss:.3g})"
        if self.state.recoveries >= self.request["max_recoveries"]:
            raise TrainingError(
                f"The loss became {kind} at step {step} again after {self.state.recoveries} roll-backs, each "
                f"lowering the learning rate (now x{self.state.lr_scale:g}). Check the data report for bad "
                "boxes, or lower the learning rate further with an override such as "
                "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.001.",
                kind="loss_diverged",
                details={"step": step, "recoveries": self.state.recoveries, "lr_scale": self.state.lr_scale},
            )
        self.state = replace(
            self.state,
            lr_scale=self.state.lr_scale * self.request["recovery_lr_factor"],
            recoveries=self.state.recoveries + 1,
        )
        self.state.save(self.job)
        good = self.session.last_good_step
        self.events.emit(
            "nan",
            step,
            total_loss=loss,
            recoveries=self.state.recoveries,
            exploded=math.isfinite(loss),
            rolled_back_to=good,
            lr_scale=self.state.lr_scale,
            message=f"loss is {kind} at step {step}: rolling back to step {good} and lowering the "
            f"learning rate to x{self.state.lr_scale:g}",
        )
        self.session.rebuild(self.state)
        self.recent.clear()
        self._recovered(f"resumed from step {self.session.step} with learning rate x{self.state.lr_scale:g}")

    def _recovered(self, message: str) -> None:
        self.events.emit(
            "recovered",
            self.session.step,
            learning_rate=self.session.learning_rate,
            batch_size=self.session.batch_size,
            message=message,
        )

    def _maybe_checkpoint(self, before: int, step: int) -> None:
        if self._crossed(before, step, self.params.trainer.checkpoint_interval) and self.session.save_checkpoint():
            self.events.emit("checkpoint", step, path=str(self.job.checkpoints))

    def _crossed(self, before: int, step: int, interval: int) -> bool:
        """Due when this loop passed a multiple of ``interval`` (loops need not line up with it), or at the end."""
        return step >= self.total or step // max(1, interval) > before // max(1, interval)

    def _evaluate(self, step: int) -> bool:
        """Evaluate, keep the best; True when early stopping says to stop."""
        metrics = self.session.evaluate()
        per_class = {
            self.names.get(int(m.group(2)), m.group(2)): round(float(v), 4)
            for k, v in metrics.items()
            if (m := _PER_CLASS.match(k)) and not m.group(1)
        }
        per_class50 = {
            self.names.get(int(m.group(2)), m.group(2)): round(float(v), 4)
            for k, v in metrics.items()
            if (m := _PER_CLASS.match(k)) and m.group(1)
        }
        ap = float(metrics["AP"])
        best = self.session.keep_if_best(step, ap, metrics, per_class)
        if best:
            self.session.write_confusion(self.names)
        self.session.write_detections(Path(self.meta["workspace"]), self.names)
        self.evals_without_gain = 0 if best else self.evals_without_gain + 1
        self.events.emit(
            "eval",
            step,
            AP=round(ap, 4),
            AP50=round(float(metrics["AP50"]), 4),
            AP75=round(float(metrics["AP75"]), 4),
            per_class_AP=per_class,
            per_class_AP50=per_class50,
            best=best,
            validation_loss=_scalar(metrics, "validation_loss"),
        )
        self._plots(force=True)
        patience = self.request["early_stop_evals"]
        return bool(patience) and self.evals_without_gain >= patience

    def _finish(self, step: int, reason: str) -> int:
        if not self.session.has_checkpoint_at(step):
            self.session.save_checkpoint()
        best = self.session.best
        self.events.emit(
            "finished",
            step,
            reason=reason,
            best_step=best.get("step"),
            AP=best.get("AP"),
            AP50=best.get("AP50"),
            per_class_AP=best.get("per_class_AP", {}),
            message=f"training finished ({reason}); best AP {best.get('AP', 0):.3f} at step {best.get('step')}",
        )
        return 0

    def _stop(self) -> int:
        step = self.session.step
        saved = self.session.save_checkpoint()
        self.job.stop_flag.unlink(missing_ok=True)
        self.events.emit(
            "stopped", step, checkpoint=saved, message=f"stopped at step {step}; run train again on this job to resume"
        )
        return 0

    def _on_term(self, signum, frame) -> None:
        self.stop_requested = True

    def _plots(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_plot >= PLOT_INTERVAL_S:
            self.last_plot = now
            write_plots(read_events(self.job.events), self.job)


def _scalar(logs: dict, key: str) -> float | None:
    value = logs.get(key)
    return None if value is None else round(float(value), 6)
