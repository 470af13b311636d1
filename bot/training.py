"""Training jobs for the bot: a queue, detached trainer processes, and what to tell the user.

The trainer is ``python -m pipeline train --detach``, in its own session, so a bot
restart never kills it; its ``events.jsonl`` is mirrored into the store, and each
new event becomes at most one message (idempotent across restarts).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.hardware import detect_hardware, visible_gpu_ids
from pipeline.jobs import JobPaths, request_stop, running_pid
from pipeline.models import get_model
from pipeline.train_config import TrainRequest, plan_schedule, workspace_facts
from pipeline.workspace import Workspace
from storage import Dataset, Job, Store

from . import texts
from .config import ConfigError, Settings

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
# Seconds per step at the CPU batch, measured on this 2-core machine; elsewhere ETA comes from progress.
CPU_STEP_S = {"mobilenetv2-fpn": 0.25, "spinenet49-mobile": 0.5, "resnet50-fpn": 1.7, "spinenet49": 1.5}
STARTUP_GRACE_S = 120.0


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
            raise ConfigError(f"DETBOT_GPUS_PER_JOB={self.gpus_per_job}, but only {len(self.gpu_ids)} GPUs are "
                              "visible, so no training could ever start: lower it (or widen CUDA_VISIBLE_DEVICES).")
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
        return {"model": spec.name, "dataset": dataset.id, "classes": sorted(dataset.summary["classes"]),
                "train_images": facts.train_images, "val_images": facts.val_images,
                "batch_size": plan.batch_size, "steps": plan.steps,
                "epochs": plan.steps * plan.batch_size / facts.train_images, "device": self.hardware.device,
                "estimate_s": plan.steps * per_step + 60 if per_step else None, "overrides": list(request.overrides)}

    def enqueue(self, user_id: int, chat_id: int, dataset: Dataset, request: TrainRequest) -> Job:
        if self.store.count_active(user_id) >= self.settings.max_jobs_per_user:
            raise TrainingError(f"You already have {self.settings.max_jobs_per_user} jobs queued or running; "
                                "wait for one to finish or /stop one.")
        job_dir = dataset.workspace / "jobs" / f"{request.model}-{time.strftime('%Y%m%d-%H%M%S')}"
        return self.store.add_job(user_id, chat_id, dataset.id, job_dir, request.model, _request_json(request))

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
            held = self._held_gpus()
            gpus = tuple(gpu for gpu in self.gpu_ids if gpu not in held)[: self.gpus_per_job]
            if len(gpus) < self.gpus_per_job:
                return job
            log.info("job %s gets GPU %s", job.id, ",".join(gpus))
        # Stored before the await: a launch running meanwhile already counts these GPUs as held.
        self.store.update_job(job.id, status="starting", started=time.time(), gpus=gpus)
        dataset = self.store.dataset(job.user_id, job.dataset_id)
        # The detached trainer inherits this environment, and with it its GPUs.
        out = await self._run_cli(["train", str(dataset.workspace), *_train_args(job), "--detach", "--json"],
                                  env=_gpu_env(gpus))
        if "error" in out:
            return self.store.update_job(job.id, status="failed", error=out["error"]["message"], finished=time.time())
        return self.store.update_job(job.id, status="running", pid=out["pid"])

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
        JobPaths(job.job_dir).stop_flag.unlink(missing_ok=True)
        self.store.update_job(job.id, status="queued", error=None, finished=None)
        await self.start_queued()
        return self.store.job(user_id, job_id)

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
            out.append(Outgoing("text", job, f"Job {job.id} stopped unexpectedly (the trainer process is gone). "
                                             f"/resume {job.id} continues from its last checkpoint."))
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
        complete = data[: data.rfind(b"\n") + 1]
        events = [json.loads(line) for line in complete.splitlines() if line.strip()]
        if events:
            last = self.store.last_event(job.id)
            self.store.add_events(job.id, last.seq + 1 if last else 0, events, job.events_offset + len(complete))
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
                out.append(Outgoing("photo", job, f"Job {job.id}, step {step}: detections on validation images",
                                    job_paths.detections))
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
        return texts.status(job.id, job.model, job.status, progress.payload if progress else None,
                            evaluation.payload if evaluation else None, self.store.queue_position(job.id))

    async def export(self, job: Job) -> Path:
        archive = job.job_dir / f"model-{job.id}.zip"
        out = await self._run_cli(["export", str(job.job_dir), "--out", str(archive), "--json"],
                                  env=self._tool_env("export", job))
        if "error" in out:
            raise TrainingError(f"Export of job {job.id} failed: {out['error']['message']}")
        self.store.update_job(job.id, archive=archive)
        return archive

    async def predict(self, archive: Path, image: Path, out: Path, job: Job | None = None) -> list[dict]:
        """``job`` made the archive; without it, any of the bot's GPUs counts as the job's."""
        result = await self._run_cli(["predict", str(archive), str(image), "--out", str(out), "--json"],
                                     env=self._tool_env("predict", job))
        if isinstance(result, dict) and "error" in result:
            raise TrainingError(result["error"]["message"])
        return result

    def _tool_env(self, what: str, job: Job | None) -> dict[str, str] | None:
        """An export or prediction runs on one GPU of its job that no training holds, else on the CPU.

        One GPU: both run on a single device, and every other visible GPU would cost a CUDA context.
        """
        if not self.gpu_ids:
            return None
        held = self._held_gpus()
        own = self.gpu_ids if job is None or job.gpus is None else job.gpus
        gpus = tuple(gpu for gpu in own if gpu not in held)[:1]
        name = f"{what} of job {job.id}" if job else what
        log.info("%s runs on %s", name, f"GPU {gpus[0]}" if gpus else "the CPU: trainings hold its GPUs")
        return _gpu_env(gpus)


def parse_train_args(args: list[str], model: str) -> TrainRequest:
    """``/train [E | N steps | steps=N | epochs=E] [key=value ...]``."""
    steps = epochs = None
    overrides = []
    words = list(args)
    while words:
        word = words.pop(0)
        if word.startswith(("steps=", "epochs=")):
            key, _, value = word.partition("=")
            words.insert(0, value)
            words.insert(1, key)
            continue
        if _is_number(word) and words and words[0] in ("steps", "step"):
            steps, _ = int(float(word)), words.pop(0)
        elif _is_number(word) and words and words[0] in ("epochs", "epoch"):
            epochs, _ = float(word), words.pop(0)
        elif _is_number(word):
            epochs = float(word)
        elif "=" in word:
            overrides.append(word)
        else:
            raise TrainingError(f"I don't understand '{word}'. Use /train 30 (epochs), /train 500 steps, "
                                "and Model Garden overrides as key=value.")
    if (steps is not None and steps < 1) or (epochs is not None and (epochs <= 0 or math.isnan(epochs))):
        raise TrainingError("Steps and epochs must be positive.")
    return TrainRequest(model=model, steps=steps, epochs=epochs, overrides=tuple(overrides))


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _request_json(request: TrainRequest) -> dict:
    return {"model": request.model, "steps": request.steps, "epochs": request.epochs,
            "overrides": list(request.overrides)}


def _train_args(job: Job) -> list[str]:
    request = job.request
    args = ["--model", job.model, "--job-dir", str(job.job_dir)]
    if request.get("steps"):
        args += ["--steps", str(request["steps"])]
    elif request.get("epochs"):
        args += ["--epochs", str(request["epochs"])]
    return args + list(request.get("overrides", []))


def _gpu_env(gpus: tuple[str, ...] | None) -> dict[str, str] | None:
    """The environment of a pipeline process on ``gpus`` (empty: the CPU); None keeps the bot's own."""
    if gpus is None:
        return None
    # The ids are nvidia-smi's, which numbers GPUs in PCI bus order; CUDA does so only when told.
    return os.environ | {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(gpus)}


async def _run_cli(args: list[str], env: dict[str, str] | None = None):
    """``env`` None: the bot's own environment."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "pipeline", *args, cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, _ = await process.communicate()
    try:
        return json.loads(stdout.decode() or "{}")
    except json.JSONDecodeError:
        return {"error": {"kind": "internal_error", "message": "the pipeline gave no answer; see the bot log"}}
