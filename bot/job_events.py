"""Each running job's events.jsonl, mirrored into the store, and what the user should hear of it.

Each new event becomes at most one message (idempotent across restarts); a trainer that
is gone without a last word is an interrupted job, and the end of its log goes to the user.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.executors import Run, RunState
from pipeline.train.events import parse_line
from pipeline.train.job_folder import JobPaths
from storage import Job

from . import texts
from .preferences import Notifications, notifications
from .redact import log_tail, redact

log = logging.getLogger("bot.training")  # the service this is half of

# Failures the trainer could not explain: the end of its log says more than its message.
UNEXPLAINED = frozenset({"internal"})
RESULTS = "results"  # the notice a finished job's results are owed under, until they reach its user


def job_step(store, job: Job) -> int:
    """The last step the job reported (0: none yet)."""
    progress = store.last_event(job.id, "progress")
    return progress.payload["step"] if progress else 0


def due(last: float | None, now: float, interval: float | None) -> bool:
    """Whether something sent at most once per ``interval`` seconds may go at ``now``; ``last``: when it last
    went (None: never); interval None: never."""
    return interval is not None and (last is None or now - last >= interval)


@dataclass(frozen=True)
class Outgoing:
    kind: str  # status | photo | album | alert | text | finished | launch_failed
    job: Job
    text: str = ""
    path: Path | None = None
    extra: dict = field(default_factory=dict)  # album: "photos", [(path, caption)]; finished: "whole"
    silent: bool = False  # without a sound: the user chose quiet, and this is neither a result nor an alert


class JobEventsMixin:
    """TrainingService's watching half; it needs ``store``, ``settings``, ``executor``, ``_last_edit`` and
    ``_last_plot``.

    ``poll`` reads files and writes the store: the watcher calls it off the event loop.
    """

    def poll(self, job: Job) -> list[Outgoing]:
        """Mirror new events of a running job and say what the user should see.

        The status message changes at most once per progress interval (edits never notify, but they move the
        chat); the end of a job, alerts and failures go at once."""
        events = self._mirror(job)
        job = self.store.job_by_id(job.id)
        notify = notifications(self.store, self.settings, job.user_id)
        out = [message for event in events for message in self._on_event(job, event, notify)]
        terminal = next((e for e in events if e["event"] in ("finished", "failed", "stopped")), None)
        state = self.run_state(job) if terminal is None and job.active else None
        if state is not None and not state.active:
            out.append(self._ended_silently(job, state))
            return out
        started = self._left_the_cluster_queue(job, state)
        if terminal is not None or started or self._edit_due(job):  # a job's last state shows at once
            job = self.store.job_by_id(job.id)
            out.append(Outgoing("status", job, self.status_text(job), silent=notify.quiet))
        return out

    def run_state(self, job: Job) -> RunState:
        """What the job's executor says of its trainer: a cluster's run, else the local process."""
        if job.run_id is not None:
            state = self.executor.status(Run("ray", job.run_id))
            if state.active and job.stop_requested and self._hard_stop_due(job, state):
                log.warning("job %s: stopped hard, %s after a graceful stop was asked for", job.id, state.state)
                self.executor.stop(Run("ray", job.run_id))
            return state
        launched = Run("local", f"{job.pid or ''} ", started=job.started or job.created)
        return self.executor.status(launched, JobPaths(job.job_dir))

    def _hard_stop_due(self, job: Job, state: RunState) -> bool:
        # Waiting in the cluster's queue, it has nothing to save: it goes at once.
        return state.state == "pending" or time.time() - job.stop_requested > self.settings.stop_grace_s

    def _left_the_cluster_queue(self, job: Job, state: RunState | None) -> bool:
        """A cluster run left the cluster's queue: the job is running (and shows so at once)."""
        if state is None or state.state != "running" or job.status != "starting" or job.run_id is None:
            return False
        self.store.update_job(job.id, status="running")
        return True

    def _ended_silently(self, job: Job, state: RunState) -> Outgoing:
        """A trainer gone without a last word: interrupted (a killed process, a dead node), or stopped when it
        was stopped before it could say so (still in the cluster's queue)."""
        if state.message:
            log.warning("job %s: its run ended without a last word (%s): %s", job.id, state.state, state.message)
        if job.stop_requested:
            job = self.store.update_job(job.id, status="stopped", finished=time.time())
            return Outgoing("text", job, texts.stopped(job.id, job_step(self.store, job)))
        job = self.store.update_job(job.id, status="interrupted", finished=time.time())
        return Outgoing("text", job, texts.interrupted(job.id, self.log_tail(job)))

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

    def _on_event(self, job: Job, event: dict, notify: Notifications) -> list[Outgoing]:
        kind, step = event["event"], event["step"]
        if kind == "nan" and not self.store.notice_sent(job.id, "nan_alert", step):
            self.store.add_notice(job.user_id, job.chat_id, "nan_alert", job_id=job.id, step=step)
            return [Outgoing("alert", job, texts.nan_alert(job.id, event))]
        if kind in ("eval", "progress"):
            return self._plots(job, event, notify)
        if kind == "finished":
            self.store.update_job(job.id, status="finished", finished=time.time())
            # Owed until the album and the archive reach the user: a restart meanwhile still delivers them, once.
            self.store.add_notice(job.user_id, job.chat_id, RESULTS, job_id=job.id)
            chat, whole = texts.finished(job.id, event)
            return [Outgoing("finished", job, chat, extra={"whole": whole})]
        if kind == "failed":
            self.store.update_job(job.id, status=kind, finished=time.time(), error=event.get("message"))
            trainer_log = texts.trainer_log(self.log_tail(job)) if event.get("cause") in UNEXPLAINED else ""
            message = redact(event.get("message", ""), self._secrets())
            return [Outgoing("text", job, texts.failed(job.id, event, message, trainer_log))]
        if kind == "stopped":
            self.store.update_job(job.id, status=kind, finished=time.time(), error=event.get("message"))
            return [Outgoing("text", job, texts.stopped(job.id, step), silent=notify.quiet)]
        return []

    def _plots(self, job: Job, event: dict, notify: Notifications) -> list[Outgoing]:
        """Curves while training, at most one per the user's plot interval: an evaluation's (the curve and its
        detections, as one album) or else a loss curve."""
        step, job_paths = event["step"], JobPaths(job.job_dir)
        if not job_paths.loss_plot.exists() or not self._plot_due(job, event, notify.plot_interval_s):
            return []
        self._last_plot[job.id] = event["time"]
        self.store.update_job(job.id, last_plot_step=step)
        if event["event"] == "progress":
            return [Outgoing("photo", job, texts.loss_caption(job.id, step), job_paths.loss_plot, silent=notify.quiet)]
        photos = [(job_paths.loss_plot, texts.eval_caption(job.id, step, event))]
        if job_paths.detections.exists():
            photos.append((job_paths.detections, texts.detections_caption(job.id, step)))
        return [Outgoing("album", job, extra={"photos": photos}, silent=notify.quiet)]

    def _plot_due(self, job: Job, event: dict, interval: float | None) -> bool:
        """At most one curve per interval of training time. The first evaluation's goes at once; a loss curve
        one interval into training, and only while evaluations are rarer than two intervals: an evaluation's
        album shows the loss too. After a restart, a job that had curves waits one interval."""
        last = self._last_plot.get(job.id)
        if last is None and job.last_plot_step is not None:
            last = self._last_plot[job.id] = event["time"]
        if event["event"] == "eval":
            return due(last, event["time"], interval)
        evaluation = self.store.last_event(job.id, "eval")
        if evaluation is not None and not due(evaluation.time, event["time"], 2 * (interval or 0) or None):
            return False
        return due(job.started or job.created if last is None else last, event["time"], interval)

    def _edit_due(self, job: Job) -> bool:
        return due(self._last_edit.get(job.id), time.monotonic(), self.settings.progress_interval_s)

    def edited(self, job_id: str) -> None:
        self._last_edit[job_id] = time.monotonic()

    def status_text(self, job: Job) -> str:
        progress = self.store.last_event(job.id, "progress")
        evaluation = self.store.last_event(job.id, "eval")
        return texts.status(
            job.id,
            job.model,
            texts.CLUSTER_QUEUED if job.status == "starting" and job.run_id else job.status,
            progress.payload if progress else None,
            evaluation.payload if evaluation else None,
            self.store.queue_position(job.id),
        )
