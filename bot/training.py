"""Training jobs for the bot: a queue, detached trainer processes, and what to tell the user.

The trainer is ``python -m pipeline train --detach``, in its own session, so a bot
restart never kills it; its ``events.jsonl`` is mirrored into the store, and each
new event becomes at most one message (idempotent across restarts).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.data.workspace import Workspace
from pipeline.errors import PipelineError
from pipeline.train.catalogue import get_model
from pipeline.train.chat_overrides import (
    EPOCHS,
    OPTIONS,
    ChatOptionError,
    ChatSettings,
    literal,
    parse_chat_settings,
    parse_value,
    steps_option,
)
from pipeline.train.config import TrainRequest, plan_schedule, workspace_facts
from pipeline.train.events import parse_line
from pipeline.train.hardware import detect_hardware, visible_gpu_ids
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import request_stop, running_pid
from storage import Dataset, Job, Store, StoreError

from . import texts
from .cli_runner import LAUNCH_LOG
from .cli_runner import run_cli as _run_cli
from .config import ConfigError, Settings

log = logging.getLogger(__name__)

# Seconds per step at the CPU batch, measured on this 2-core machine; elsewhere ETA comes from progress.
CPU_STEP_S = {"mobilenetv2-fpn": 0.25, "spinenet49-mobile": 0.5, "resnet50-fpn": 1.7, "spinenet49": 1.5}
STARTUP_GRACE_S = 120.0
UNITS = {"steps": "steps", "step": "steps", "epochs": "epochs", "epoch": "epochs"}
# Some Telegram clients turn a typed "--" into a dash.
OPTION_DASHES = ("-", "\u2014", "\u2013")


class TrainingError(Exception):
    """Something the user can fix or should know; the message says what."""


@dataclass(frozen=True)
class Outgoing:
    kind: str  # status | photo | alert | text | finished
    job: Job
    text: str = ""
    path: Path | None = None
    extra: dict = field(default_factory=dict)


class TrainingService:
    def __init__(self, store: Store, settings: Settings, run_cli: Callable[..., Awaitable] | None = None):
        """``run_cli`` stands in for ``_run_cli`` (tests record what would be started)."""
        self.store, self.settings = store, settings
        self._run_cli = run_cli or _run_cli
        self.gpu_ids = visible_gpu_ids(settings.visible_devices)  # what the bot hands out; () on a CPU host
        self.gpus_per_job = settings.job_gpus(len(self.gpu_ids))
        if self.gpu_ids and self.gpus_per_job > len(self.gpu_ids):
            raise ConfigError(
                f"DETBOT_GPUS_PER_JOB={self.gpus_per_job}, but only {len(self.gpu_ids)} GPUs are "
                "visible, so no training could ever start: lower it (or widen CUDA_VISIBLE_DEVICES)."
            )
        detected = detect_hardware(settings.visible_devices)
        # The card plans for what one training gets, which is what its trainer will detect.
        self.hardware = replace(detected, gpus=self.gpus_per_job) if detected.gpus else detected
        self._last_edit: dict[str, float] = {}
        self._last_plot: dict[str, float] = {}  # event time of the last loss curve sent, per job

    def card(self, dataset: Dataset, request: TrainRequest) -> dict:
        spec = get_model(request.model)
        facts = workspace_facts(Workspace(dataset.workspace))
        plan = plan_schedule(spec, facts, self.hardware, request)
        per_step = None if self.hardware.gpus else CPU_STEP_S.get(spec.name)
        return {
            "model": spec.name,
            "dataset": dataset.id,
            "classes": sorted(dataset.summary["classes"]),
            "train_images": facts.train_images,
            "val_images": facts.val_images,
            "batch_size": plan.batch_size,
            "steps": plan.steps,
            "epochs": plan.steps * plan.batch_size / facts.train_images,
            "device": self.hardware.device,
            "estimate_s": plan.steps * per_step + 60 if per_step else None,
            "overrides": list(request.overrides),
        }

    def enqueue(self, user_id: int, chat_id: int, dataset: Dataset, request: TrainRequest) -> Job:
        if self.store.count_active(user_id) >= self.settings.max_jobs_per_user:
            raise TrainingError(texts.job_cap(self.settings.max_jobs_per_user))
        stored = _request_json(request)
        _checked_request(stored, self.settings.max_steps)  # a request that could never launch is never queued
        # Two jobs queued within a second must not share a folder: the second would "resume" the first.
        name = f"{request.model}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        job_dir = dataset.workspace / "jobs" / name
        return self.store.add_job(user_id, chat_id, dataset.id, job_dir, request.model, stored)

    async def start_queued(self) -> list[Job]:
        started = []
        while len(self.store.active_jobs()) < self.settings.training_slots and self.store.queued_jobs():
            job = await self._launch(self.store.queued_jobs()[0])
            if job.status == "queued":  # too few free GPUs; later jobs need as many, so they wait too
                break
            started.append(job)
        return started

    async def _launch(self, job: Job) -> Job:
        """Start the job's trainer on GPUs no other training holds; with too few free, it stays queued."""
        gpus = None
        if self.gpu_ids:
            gpus = self._free_gpus(self.gpu_ids, self.gpus_per_job)
            if len(gpus) < self.gpus_per_job:
                return job
            log.info("job %s gets GPU %s", job.id, ",".join(gpus))
        # Stored before the await: a launch running meanwhile already counts these GPUs as held.
        self.store.update_job(job.id, status="starting", started=time.time(), gpus=gpus)
        try:
            dataset = self.store.dataset(job.user_id, job.dataset_id)
            argv = ["train", str(dataset.workspace), *_train_args(job, self.settings)]
            # The detached trainer inherits this environment, and with it its GPUs.
            out = await self._run_cli(argv, env=_gpu_env(gpus))
        except Exception as error:  # a job that cannot even be launched must not keep its slot
            log.exception("job %s: the trainer could not be launched", job.id)
            known = isinstance(error, (PipelineError, TrainingError, StoreError))
            out = {"error": {"message": str(error) if known else texts.launch_crashed(type(error).__name__)}}
        pid = out.get("pid") if isinstance(out, dict) else None
        if pid is None and isinstance(out, dict) and out.get("running"):
            pid = running_pid(JobPaths(job.job_dir))  # its trainer was still running: nothing was started
        if not isinstance(pid, int):
            return self._launch_failed(job, out)
        return self.store.update_job(job.id, status="running", pid=pid)

    def _launch_failed(self, job: Job, out) -> Job:
        error = out.get("error") if isinstance(out, dict) else None
        reason = error.get("message") if isinstance(error, dict) else None
        log.warning("job %s could not start: %s (the launch's stderr: %s)", job.id, reason, job.job_dir / LAUNCH_LOG)
        return self.store.update_job(job.id, status="failed", error=reason or texts.NO_TRAINER, finished=time.time())

    def _free_gpus(self, among: tuple[str, ...], count: int) -> tuple[str, ...]:
        """Up to ``count`` of ``among`` that no queued-up or running training holds, in order."""
        held = self._held_gpus()
        return tuple(gpu for gpu in among if gpu not in held)[:count]

    def _held_gpus(self) -> set[str]:
        held = set()
        for job in self.store.active_jobs():
            # A trainer started before GPUs were handed out inherited every one of them.
            held.update(self.gpu_ids if job.gpus is None else job.gpus)
        return held

    async def resume(self, user_id: int, job_id: str) -> Job:
        job = self.store.job(user_id, job_id)
        if job.status not in ("interrupted", "stopped", "failed"):
            raise TrainingError(f"Job {job.id} is {job.status}; only interrupted, stopped or failed jobs resume.")
        failure = self.store.last_event(job.id, "failed") if job.status == "failed" else None
        if failure is not None and not failure.payload.get("resumable", True):
            raise TrainingError(texts.not_resumable(job.id))
        # No await from here to the update: two /resume at once cannot both pass the cap.
        if self.store.count_active(user_id) >= self.settings.max_jobs_per_user:
            raise TrainingError(texts.job_cap(self.settings.max_jobs_per_user))
        JobPaths(job.job_dir).stop_flag.unlink(missing_ok=True)
        self.store.update_job(job.id, status="queued", error=None, finished=None)
        await self.start_queued()
        job = self.store.job(user_id, job_id)
        if job.status == "failed":  # its trainer could not even be launched
            raise TrainingError(texts.launch_failed(job.id, job.error))
        return job

    def stop(self, user_id: int, job_id: str) -> Job:
        job = self.store.job(user_id, job_id)
        if job.status == "queued":
            return self.store.update_job(job.id, status="stopped", finished=time.time())
        if not job.active:
            raise TrainingError(f"Job {job.id} is {job.status}, not running.")
        request_stop(JobPaths(job.job_dir))
        return job

    def poll(self, job: Job) -> list[Outgoing]:
        """Mirror new events of a running job and say what the user should see."""
        events = self._mirror(job)
        job = self.store.job_by_id(job.id)
        out = [message for event in events for message in self._on_event(job, event)]
        terminal = next((e for e in events if e["event"] in ("finished", "failed", "stopped")), None)
        if terminal is None and job.active and not running_pid(JobPaths(job.job_dir)) and self._gone(job):
            job = self.store.update_job(job.id, status="interrupted", finished=time.time())
            out.append(
                Outgoing(
                    "text",
                    job,
                    f"Job {job.id} stopped unexpectedly (the trainer process is gone). "
                    f"/resume {job.id} continues from its last checkpoint.",
                )
            )
        elif self._edit_due(job) or events:
            out.append(Outgoing("status", job, self.status_text(job)))
        return out

    def _gone(self, job: Job) -> bool:
        # A just-launched trainer may not have written its pid yet.
        return time.time() - (job.started or job.created) > STARTUP_GRACE_S or JobPaths(job.job_dir).events.exists()

    def _mirror(self, job: Job) -> list[dict]:
        path = JobPaths(job.job_dir).events
        if not path.exists():
            return []
        with path.open("rb") as stream:
            stream.seek(job.events_offset)
            data = stream.read()
        # A last line without its newline is still being written: it is read whole on a later tick.
        complete = data[: data.rfind(b"\n") + 1]
        events, position = [], job.events_offset
        for line in complete.splitlines(keepends=True):
            position += len(line)
            if not line.strip():
                continue
            event, clean = parse_line(line)
            if event is not None:
                events.append(event)
            if not clean:  # what is skipped is never re-read: the offset moves past it
                log.warning(
                    "job %s: events.jsonl bytes %d-%d are not one event record; %s: %r",
                    job.id,
                    position - len(line),
                    position,
                    "kept the record after the tear" if event else "skipped",
                    line[:120],
                )
        if complete:
            last = self.store.last_event(job.id)
            self.store.add_events(job.id, last.seq + 1 if last else 0, events, position)
        return events

    def _on_event(self, job: Job, event: dict) -> list[Outgoing]:
        kind, step = event["event"], event["step"]
        job_paths = JobPaths(job.job_dir)
        if kind == "nan" and not self.store.notice_sent(job.id, "nan_alert", step):
            self.store.add_notice(job.user_id, job.chat_id, "nan_alert", job_id=job.id, step=step)
            return [Outgoing("alert", job, texts.nan_alert(job.id, event))]
        if kind == "eval" and job_paths.loss_plot.exists():
            self._last_plot[job.id] = event["time"]
            caption = f"Job {job.id}, step {step}: AP {event['AP']:.3f}, AP50 {event['AP50']:.3f}"
            self.store.update_job(job.id, last_plot_step=step)
            out = [Outgoing("photo", job, caption, job_paths.loss_plot)]
            if job_paths.detections.exists():
                out.append(
                    Outgoing(
                        "photo",
                        job,
                        f"Job {job.id}, step {step}: detections on validation images",
                        job_paths.detections,
                    )
                )
            return out
        if kind == "progress" and self._plot_due(job, event):
            self._last_plot[job.id] = event["time"]
            self.store.update_job(job.id, last_plot_step=step)
            return [Outgoing("photo", job, f"Job {job.id}: loss at step {step}", job_paths.loss_plot)]
        if kind == "finished":
            self.store.update_job(job.id, status="finished", finished=time.time())
            return [Outgoing("finished", job, texts.finished(job.id, event))]
        if kind == "failed":
            self.store.update_job(job.id, status=kind, finished=time.time(), error=event.get("message"))
            return [Outgoing("text", job, texts.failed(job.id, event))]
        if kind == "stopped":
            self.store.update_job(job.id, status=kind, finished=time.time(), error=event.get("message"))
            return [Outgoing("text", job, texts.stopped(job.id, step))]
        return []

    def _plot_due(self, job: Job, event: dict) -> bool:
        """A loss curve every plot interval of training time (evaluations send one too)."""
        if not JobPaths(job.job_dir).loss_plot.exists():
            return False
        last = self._last_plot.setdefault(job.id, event["time"])
        return event["time"] - last >= self.settings.plot_interval_s

    def _edit_due(self, job: Job) -> bool:
        return time.monotonic() - self._last_edit.get(job.id, 0.0) >= self.settings.progress_interval_s

    def edited(self, job_id: str) -> None:
        self._last_edit[job_id] = time.monotonic()

    def status_text(self, job: Job) -> str:
        progress = self.store.last_event(job.id, "progress")
        evaluation = self.store.last_event(job.id, "eval")
        return texts.status(
            job.id,
            job.model,
            job.status,
            progress.payload if progress else None,
            evaluation.payload if evaluation else None,
            self.store.queue_position(job.id),
        )

    async def export(self, job: Job) -> Path:
        archive = job.job_dir / f"model-{job.id}.zip"
        out = await self._run_cli(
            ["export", str(job.job_dir), "--out", str(archive), "--json"], env=self._tool_env("export", job)
        )
        if "error" in out:
            raise TrainingError(f"Export of job {job.id} failed: {out['error']['message']}")
        self.store.update_job(job.id, archive=archive)
        return archive

    async def predict(self, archive: Path, image: Path, out: Path, job: Job | None = None) -> list[dict]:
        """``job`` made the archive; without it, any of the bot's GPUs counts as the job's."""
        result = await self._run_cli(
            ["predict", str(archive), str(image), "--out", str(out), "--json"], env=self._tool_env("predict", job)
        )
        if isinstance(result, dict) and "error" in result:
            raise TrainingError(result["error"]["message"])
        return result

    def _tool_env(self, what: str, job: Job | None) -> dict[str, str] | None:
        """An export or prediction runs on one GPU of its job that no training holds, else on the CPU.

        One GPU: both run on a single device, and every other visible GPU would cost a CUDA context.
        """
        if not self.gpu_ids:
            return None
        own = self.gpu_ids if job is None or job.gpus is None else job.gpus
        gpus = self._free_gpus(own, 1)
        name = f"{what} of job {job.id}" if job else what
        log.info("%s runs on %s", name, f"GPU {gpus[0]}" if gpus else "the CPU: trainings hold its GPUs")
        return _gpu_env(gpus)


def parse_train_args(args: list[str], model: str, max_steps: int) -> TrainRequest:
    """``/train [E | N steps | steps=N | epochs=E] [name=value ...]``: every word is data, checked here;
    settings are only those of ``pipeline.train.chat_overrides``, and no word reaches the trainer as typed."""
    lengths: dict[str, int | float] = {}
    settings = []
    words = list(args)
    try:
        while words:
            word = words.pop(0)
            key, sep, value = word.partition("=")
            if sep and key in ("steps", "epochs"):
                lengths[key] = _length(key, value, max_steps, word)
            elif _is_number(word):
                unit = UNITS[words.pop(0)] if words and words[0] in UNITS else "epochs"
                lengths[unit] = _length(unit, word, max_steps, f"{word} {unit}")
            elif word.startswith(OPTION_DASHES):
                raise TrainingError(texts.train_option_refused(word, OPTIONS))
            elif sep:
                settings.append(word)
            else:
                raise TrainingError(texts.train_word_unknown(word, OPTIONS))
        chosen = parse_chat_settings(settings)
    except ChatOptionError as error:
        raise TrainingError(texts.train_setting_refused(error, OPTIONS)) from None
    if len(lengths) > 1:
        raise TrainingError(texts.BOTH_LENGTHS)
    return TrainRequest(
        model=model,
        steps=lengths.get("steps"),
        epochs=lengths.get("epochs"),
        batch_size=chosen.get("batch"),
        early_stop_evals=chosen.get("early_stop") or 0,
        overrides=chosen.words(),
    )


def _length(unit: str, text: str, max_steps: int, word: str) -> int | float:
    return parse_value(steps_option(max_steps) if unit == "steps" else EPOCHS, text, word)


def _is_number(word: str) -> bool:
    """Anything float() reads, "inf" and "nan" too: they are lengths, refused with their range."""
    try:
        float(word)
    except ValueError:
        return False
    return True


def _request_json(request: TrainRequest) -> dict:
    """What is stored: the length and the settings as canonical chat words (batch and early stop included)."""
    return {
        "model": request.model,
        "steps": request.steps,
        "epochs": request.epochs,
        "overrides": list(request.overrides),
    }


def _checked_request(request: dict, max_steps: int) -> tuple[list[str], ChatSettings]:
    """A stored request checked again, as length options and settings: rows may predate the allowlist."""
    try:
        chosen = parse_chat_settings(request.get("overrides") or [])
        for unit in ("steps", "epochs"):
            if request.get(unit) is not None:
                text = str(request[unit])
                return [f"--{unit}", literal(_length(unit, text, max_steps, f"{text} {unit}"))], chosen
        return [], chosen
    except ChatOptionError as error:
        raise TrainingError(texts.train_setting_refused(error, OPTIONS)) from None


def _train_args(job: Job, settings: Settings) -> list[str]:
    """Everything after the workspace, built from checked values only; overrides go after "--", where
    the CLI reads nothing as an option."""
    lengths, chosen = _checked_request(job.request, settings.max_steps)
    return [
        "--model",
        get_model(job.model).name,
        "--job-dir",
        str(job.job_dir),
        "--url-policy",
        settings.url_policy,
        *lengths,
        *chosen.trainer_options(),
        "--detach",
        "--json",
        "--",
        *chosen.overrides(),
    ]


def _gpu_env(gpus: tuple[str, ...] | None) -> dict[str, str] | None:
    """The environment of a pipeline process on ``gpus`` (empty: the CPU); None keeps the bot's own."""
    if gpus is None:
        return None
    # The ids are nvidia-smi's, which numbers GPUs in PCI bus order; CUDA does so only when told.
    return os.environ | {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
