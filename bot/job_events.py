"""Each running job's events.jsonl, mirrored into the store, and what the user should hear of it.

Each new event becomes at most one message (idempotent across restarts); a trainer that
is gone without a last word is an interrupted job, and the end of its log goes to the user.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.train.events import parse_line
from pipeline.train.job_folder import JobPaths
from pipeline.train.job_process import process_start, running_pid
from storage import Job

from . import texts
from .redact import log_tail, redact

log = logging.getLogger("bot.training")  # the service this is half of

STARTUP_GRACE_S = 120.0
# Failures the trainer could not explain: the end of its log says more than its message.
UNEXPLAINED = frozenset({"internal"})


@dataclass(frozen=True)
class Outgoing:
    kind: str  # status | photo | alert | text | finished | launch_failed
    job: Job
    text: str = ""
    path: Path | None = None
    extra: dict = field(default_factory=dict)


class JobEventsMixin:
    """TrainingService's watching half; it needs ``store``, ``settings``, ``_last_edit`` and ``_last_plot``.

    ``poll`` reads files and writes the store: the watcher calls it off the event loop.
    """

    def poll(self, job: Job) -> list[Outgoing]:
        """Mirror new events of a running job and say what the user should see."""
        events = self._mirror(job)
        job = self.store.job_by_id(job.id)
        out = [message for event in events for message in self._on_event(job, event)]
        terminal = next((e for e in events if e["event"] in ("finished", "failed", "stopped")), None)
        if terminal is None and job.active and not running_pid(JobPaths(job.job_dir)) and self._gone(job):
            job = self.store.update_job(job.id, status="interrupted", finished=time.time())
            out.append(Outgoing("text", job, texts.interrupted(job.id, self.log_tail(job))))
        elif self._edit_due(job) or events:
            out.append(Outgoing("status", job, self.status_text(job)))
        return out

    def _gone(self, job: Job) -> bool:
        if job.pid is not None and process_start(job.pid) == "?":  # the process it was launched as has ended
            return True
        # A just-launched trainer may not have written its pid yet.
        return time.time() - (job.started or job.created) > STARTUP_GRACE_S or JobPaths(job.job_dir).events.exists()

    def log_tail(self, job: Job) -> str | None:
        """The end of the job's trainer log (its stdout and stderr), fit for the chat."""
        return log_tail(JobPaths(job.job_dir).log, self._secrets())

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.token,)

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
        if kind == "nan" and not self.store.notice_sent(job.id, "nan_alert", step):
            self.store.add_notice(job.user_id, job.chat_id, "nan_alert", job_id=job.id, step=step)
            return [Outgoing("alert", job, texts.nan_alert(job.id, event))]
        if kind in ("eval", "progress"):
            return self._plots(job, event)
        if kind == "finished":
            self.store.update_job(job.id, status="finished", finished=time.time())
            chat, whole = texts.finished(job.id, event)
            return [Outgoing("finished", job, chat, extra={"whole": whole})]
        if kind == "failed":
            self.store.update_job(job.id, status=kind, finished=time.time(), error=event.get("message"))
            trainer_log = texts.trainer_log(self.log_tail(job)) if event.get("cause") in UNEXPLAINED else ""
            message = redact(event.get("message", ""), self._secrets())
            return [Outgoing("text", job, texts.failed(job.id, event, message, trainer_log))]
        if kind == "stopped":
            self.store.update_job(job.id, status=kind, finished=time.time(), error=event.get("message"))
            return [Outgoing("text", job, texts.stopped(job.id, step))]
        return []

    def _plots(self, job: Job, event: dict) -> list[Outgoing]:
        step, job_paths = event["step"], JobPaths(job.job_dir)
        if event["event"] == "eval" and job_paths.loss_plot.exists():
            self._last_plot[job.id] = event["time"]
            self.store.update_job(job.id, last_plot_step=step)
            out = [Outgoing("photo", job, texts.eval_caption(job.id, step, event), job_paths.loss_plot)]
            if job_paths.detections.exists():
                out.append(Outgoing("photo", job, texts.detections_caption(job.id, step), job_paths.detections))
            return out
        if event["event"] == "progress" and self._plot_due(job, event):
            self._last_plot[job.id] = event["time"]
            self.store.update_job(job.id, last_plot_step=step)
            return [Outgoing("photo", job, texts.loss_caption(job.id, step), job_paths.loss_plot)]
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
