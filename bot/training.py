"""Training jobs for the bot: a queue, detached trainer processes, and what to tell the user.

The trainer is ``python -m pipeline train --detach``, in its own session, so a bot
restart never kills it; its stdout and stderr go to its job folder (``train.log``),
and its ``events.jsonl`` is mirrored into the store (``job_events``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.data.workspace import Workspace
from pipeline.errors import ClusterError
from pipeline.executors import LocalExecutor, Run
from pipeline.train.catalogue import Recommendation, get_model, recommend, start_point
from pipeline.train.config import TrainRequest, plan_schedule, summary_facts
from pipeline.train.hardware import detect_visible
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import request_stop, running_pid
from storage import Dataset, Job, Store

from . import texts
from .cli_runner import LAUNCH_LOG
from .cli_runner import run_cli as _run_cli
from .cluster import Cluster
from .config import Settings
from .datasets import ready_dataset
from .errors import ConfigError, Refused, cli_error_text, user_text
from .job_events import JobEventsMixin
from .train_words import checked_request, parse_train_args, request_json, train_args

log = logging.getLogger(__name__)

# Seconds per step at the CPU batch, measured on this 2-core machine; elsewhere ETA comes from progress.
CPU_STEP_S = {"mobilenetv2-fpn": 0.25, "spinenet49-mobile": 0.5, "resnet50-fpn": 1.7, "spinenet49": 1.5}
RESUMABLE = ("interrupted", "stopped", "failed")
LEASE_S = 300.0  # long enough for one submission; a bot that died holding it blocks the job no longer


@dataclass(frozen=True)
class Draft:
    """A /train request and its confirmation card, before the user pressed Start."""

    dataset_id: str
    request: TrainRequest
    card: dict


class TrainingService(JobEventsMixin):
    def __init__(
        self,
        store: Store,
        settings: Settings,
        run_cli: Callable[..., Awaitable] | None = None,
        cluster: Cluster | None = None,
    ):
        """Asks nvidia-smi (up to 10 s), or the cluster's nodes, what one training gets, once: the bot builds it
        off the event loop. ``run_cli`` stands in for ``_run_cli`` (tests record what would be started)."""
        self.store, self.settings, self.cluster = store, settings, cluster
        self._run_cli = run_cli or (cluster.run_cli if cluster else _run_cli)
        self._last_edit: dict[str, float] = {}
        self._last_plot: dict[str, float] = {}  # event time of the last loss curve sent, per job
        if cluster is not None:  # Ray places each training on GPUs of its own: none are handed out here
            self.gpu_ids, self.gpus_per_job = (), cluster.gpus_per_job
            self.executor, self.hardware = cluster.executor, cluster.check()
            return
        self.executor = LocalExecutor()
        detected, self.gpu_ids = detect_visible(settings.visible_devices)  # the ids are what the bot hands out
        self.gpus_per_job = settings.job_gpus(len(self.gpu_ids))
        if self.gpu_ids and self.gpus_per_job > len(self.gpu_ids):
            raise ConfigError(
                f"DETBOT_GPUS_PER_JOB={self.gpus_per_job}, but only {len(self.gpu_ids)} GPUs are "
                "visible, so no training could ever start: lower it (or widen CUDA_VISIBLE_DEVICES)."
            )
        # The card plans for what one training gets, which is what its trainer will detect.
        self.hardware = replace(detected, gpus=self.gpus_per_job) if detected.gpus else detected

    # --- /model and /train: what to train, and the card that asks first ------------------------------

    def recommendation(self, user_id: int) -> Recommendation:
        """For the user's current dataset on the hardware detected at start-up."""
        summary = self.store.current_dataset(user_id).summary or {}
        return recommend(summary.get("labelled_images", 0), self.hardware)

    def choose_model(self, user_id: int, name: str) -> str:
        name = get_model(name).name
        self.store.set_model(user_id, name)
        return name

    def draft(self, user_id: int, words: list[str]) -> Draft:
        """``/train WORDS`` on the current dataset, with the user's model (or the recommended one)."""
        dataset = ready_dataset(self.store, user_id)
        chosen = self.store.get_user(user_id).chosen_model
        name = chosen or recommend(dataset.summary.get("labelled_images", 0), self.hardware).name
        request = parse_train_args(words, name, self.settings.max_steps)
        card = self.card(dataset, request)
        if card["steps"] > self.settings.max_steps:  # epochs, or the default length, planned past the ceiling
            raise Refused(texts.too_many_steps(card["steps"], self.settings.max_steps))
        return Draft(dataset.id, request, card)

    def card(self, dataset: Dataset, request: TrainRequest) -> dict:
        """Planned from the dataset's summary: no shard is read (the trainer counts the records)."""
        spec = get_model(request.model)
        facts = summary_facts(Workspace(dataset.workspace), dataset.summary)
        plan = plan_schedule(spec, facts, self.hardware, request)
        per_step = None if self.hardware.gpus else CPU_STEP_S.get(spec.name)
        splits = dataset.summary["splits"].values()
        return {
            "model": spec.name,
            "dataset": dataset.id,
            "classes": sorted({name for split in splits for name in split["classes"]}),
            "train_images": facts.train_images,
            "val_images": facts.val_images,
            "batch_size": plan.batch_size,
            "steps": plan.steps,
            "epochs": plan.steps * plan.batch_size / facts.train_images,
            "device": self.hardware.device_params,
            "estimate_s": plan.steps * per_step + 60 if per_step else None,
            "overrides": list(request.overrides),
            "start": start_point(spec, self.settings.pretrained).kind,
        }

    # --- the queue -------------------------------------------------------------------------------------

    async def start(self, user_id: int, chat_id: int, message_id: int, draft: Draft) -> tuple[str, list[Job]]:
        """Queue a card's request; the card (``message_id``) becomes the job's status message.

        Returns the status to show on the card, and the jobs whose trainer could not be launched.
        """
        job = self.enqueue(user_id, chat_id, self.store.dataset(user_id, draft.dataset_id), draft.request)
        text = self.status_text(job)
        # Before the job can start, so the watcher edits this message instead of racing to send another.
        self.remember_status(job.id, text, message_id)
        failed = [started for started in await self.start_queued() if started.status == "failed"]
        return text, failed

    def enqueue(self, user_id: int, chat_id: int, dataset: Dataset, request: TrainRequest) -> Job:
        if self.store.count_active(user_id) >= self.settings.max_jobs_per_user:
            raise Refused(texts.job_cap(self.settings.max_jobs_per_user))
        stored = request_json(request)
        checked_request(stored, self.settings.max_steps)  # a request that could never launch is never queued
        # Two jobs queued within a second must not share a folder: the second would "resume" the first.
        name = f"{request.model}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        job_dir = dataset.workspace / "jobs" / name
        return self.store.add_job(user_id, chat_id, dataset.id, job_dir, request.model, stored)

    def remember_status(self, job_id: str, text: str, message_id: int | None = None) -> None:
        """What the job's status message shows now (and which message it is, when that changed)."""
        changes = {"last_status_text": text} | ({"status_message_id": message_id} if message_id else {})
        self.store.update_job(job_id, **changes)

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
        if self.cluster is not None:
            return await asyncio.to_thread(self._submit, job)
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
            argv = ["train", str(dataset.workspace), *train_args(job, self.settings)]
            # The detached trainer inherits this environment, and with it its GPUs.
            out = await self._run_cli(argv, env=_gpu_env(gpus))
        except Exception as error:  # a job that cannot even be launched must not keep its slot
            log.exception("job %s: the trainer could not be launched", job.id)
            known = user_text(error, self._secrets())
            out = {"error": {"message": known or texts.launch_crashed(type(error).__name__)}}
        pid = out.get("pid") if isinstance(out, dict) else None
        if pid is None and isinstance(out, dict) and out.get("running"):
            pid = running_pid(JobPaths(job.job_dir))  # its trainer was still running: nothing was started
        if not isinstance(pid, int):
            return self._launch_failed(job, out)
        return self.store.update_job(job.id, status="running", pid=pid)

    def _submit(self, job: Job) -> Job:
        """The job as a Ray job, under its lease: never submitted twice, never beside a run of it still alive.

        The lease is this submission's own: the watcher's tick and a /resume in the same bot race as two bots
        would. The run's id is stored before it is submitted, so a bot that dies in between finds it lost (and
        the job interrupted), and one that dies after finds it running."""
        holder = f"{self.cluster.holder}-{secrets.token_hex(4)}"
        if not self.store.take_lease(job.id, holder, LEASE_S):
            log.info("job %s is being submitted already; it is looked at again on the next tick", job.id)
            return job
        try:
            job = self.store.job_by_id(job.id)
            if job.status != "queued":
                return job
            if job.run_id and self.executor.status(Run("ray", job.run_id)).active:
                log.info("job %s: its run %s is still alive in the cluster; attached to it", job.id, job.run_id)
                return self.store.update_job(job.id, status="running", stop_requested=None)
            return self._submit_run(job)
        except ClusterError as error:
            if error.kind == "run_exists":  # its stored run is in the cluster after all: followed, not failed
                log.warning("job %s: %s; following that run", job.id, error)
                return self.store.job_by_id(job.id)
            log.warning("job %s could not be submitted to the cluster: %s", job.id, error)
            return self._launch_failed(job, {"error": error.to_json()})
        finally:
            self.store.release_lease(job.id, holder)

    def _submit_run(self, job: Job) -> Job:
        run_id = f"detbot-{job.id}-{job.runs + 1}"
        dataset = self.store.dataset(job.user_id, job.dataset_id)
        argv = ["train", str(dataset.workspace.absolute()), *train_args(job, self.settings, detached=False)]
        self.store.update_job(
            job.id, status="starting", started=time.time(), run_id=run_id, runs=job.runs + 1, stop_requested=None
        )
        self.executor.submit(argv, JobPaths(job.job_dir), gpus=self.gpus_per_job, run_id=run_id)
        log.info("job %s submitted to the cluster as %s", job.id, run_id)
        return self.store.job_by_id(job.id)

    def _launch_failed(self, job: Job, out) -> Job:
        error = out.get("error") if isinstance(out, dict) else None
        reason = cli_error_text(error, self._secrets()) if isinstance(error, dict) and "kind" in error else None
        reason = reason or (error.get("message") if isinstance(error, dict) else None)
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

    # --- one user's jobs ------------------------------------------------------------------------------

    def pick(self, user_id: int, job_id: str | None, statuses: tuple[str, ...] | None = None) -> Job:
        """The job a command names, else the user's newest one in ``statuses`` (any, when None)."""
        if job_id:
            return self.store.job(user_id, job_id)
        for job in self.store.jobs(user_id):
            if statuses is None or job.status in statuses:
                return job
        raise Refused(texts.NO_JOB_YET if statuses is None else texts.no_job_in(statuses))

    def status(self, user_id: int, job_id: str | None) -> str:
        return self.status_text(self.pick(user_id, job_id))

    async def resume(self, user_id: int, job_id: str | None) -> Job:
        """The named job, else the newest that can resume, queued again and started if a slot is free."""
        job = self.pick(user_id, job_id, RESUMABLE)
        if job.status not in RESUMABLE:
            raise Refused(texts.cannot_resume(job.id, job.status))
        failure = self.store.last_event(job.id, "failed") if job.status == "failed" else None
        if failure is not None and not failure.payload.get("resumable", True):
            raise Refused(texts.not_resumable(job.id))
        # No await from here to the update: two /resume at once cannot both pass the cap.
        if self.store.count_active(user_id) >= self.settings.max_jobs_per_user:
            raise Refused(texts.job_cap(self.settings.max_jobs_per_user))
        JobPaths(job.job_dir).stop_flag.unlink(missing_ok=True)
        self.store.update_job(job.id, status="queued", error=None, finished=None)
        await self.start_queued()
        job = self.store.job(user_id, job.id)
        if job.status == "failed":  # its trainer could not even be launched
            raise Refused(texts.launch_failed(job.id, job.error))
        return job

    def stop(self, user_id: int, job_id: str) -> Job:
        job = self.store.job(user_id, job_id)
        if job.status == "queued":
            return self.store.update_job(job.id, status="stopped", finished=time.time())
        if not job.active:
            raise Refused(texts.not_running(job.id, job.status))
        if job.run_id is None:
            request_stop(JobPaths(job.job_dir))
            return job
        # A cluster run: the STOP file asks for a checkpoint first; the watcher stops it hard after the grace
        # period (at once while it still waits in the cluster's queue).
        JobPaths(job.job_dir).stop_flag.touch()
        return self.store.update_job(job.id, stop_requested=time.time())

    # --- the trained model ------------------------------------------------------------------------------

    async def archive(self, job: Job) -> Path:
        """The job's model archive: the one exported already, else exported now."""
        if job.archive and await asyncio.to_thread(job.archive.exists):
            return job.archive
        return await self.export(job)

    async def export(self, job: Job) -> Path:
        archive = job.job_dir / f"model-{job.id}.zip"
        out = await self._run_cli(
            ["export", str(job.job_dir), "--out", str(archive), "--json"], env=self.tool_env("export", job)
        )
        if "error" in out:
            raise Refused(texts.export_failed(job.id, cli_error_text(out["error"], self._secrets())))
        self.store.update_job(job.id, archive=archive)
        return archive

    async def predict(
        self, archive: Path, image: Path, out: Path, job: Job | None = None, threshold: float | None = None
    ) -> list[dict]:
        """In a process of its own (warm models are ``bot/predictor.py``'s). ``job`` made the archive; without
        it, any of the bot's GPUs counts as the job's."""
        lowest = [] if threshold is None else ["--threshold", str(threshold)]
        result = await self._run_cli(
            ["predict", str(archive), str(image), "--out", str(out), *lowest, "--json"],
            env=self.tool_env("predict", job),
        )
        if isinstance(result, dict) and "error" in result:
            raise Refused(cli_error_text(result["error"], self._secrets()))
        return result

    def tool_env(self, what: str, job: Job | None) -> dict[str, str] | None:
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


def _gpu_env(gpus: tuple[str, ...] | None) -> dict[str, str] | None:
    """The environment of a pipeline process on ``gpus`` (empty: the CPU); None keeps the bot's own."""
    if gpus is None:
        return None
    # The ids are nvidia-smi's, which numbers GPUs in PCI bus order; CUDA does so only when told.
    return os.environ | {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
