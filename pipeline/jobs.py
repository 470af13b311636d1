"""A training job's folder, and starting, watching and stopping the process that owns it.

The job folder is the whole truth about a job (config, checkpoints, events), so
a job started by the CLI or the bot can be resumed, watched or stopped by either.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .dataset import write_json
from .errors import UsageError
from .events import read_events


@dataclass(frozen=True)
class JobPaths:
    root: Path

    job = property(lambda self: self.root / "job.json")
    params = property(lambda self: self.root / "params.yaml")
    state = property(lambda self: self.root / "state.json")
    events = property(lambda self: self.root / "events.jsonl")
    checkpoints = property(lambda self: self.root / "checkpoints")
    best = property(lambda self: self.root / "best")
    best_json = property(lambda self: self.root / "best.json")
    pid = property(lambda self: self.root / "train.pid")
    stop_flag = property(lambda self: self.root / "STOP")
    log = property(lambda self: self.root / "train.log")
    loss_plot = property(lambda self: self.root / "loss.png")
    ap_plot = property(lambda self: self.root / "ap.png")
    confusion = property(lambda self: self.root / "confusion.json")
    detections = property(lambda self: self.root / "detections.jpg")


@dataclass(frozen=True)
class JobState:
    """What the supervisor changed while training; survives a kill so a resume keeps it."""

    lr_scale: float = 1.0
    batch_scale: float = 1.0
    recoveries: int = 0

    @classmethod
    def load(cls, job: JobPaths) -> "JobState":
        return cls(**json.loads(job.state.read_text())) if job.state.exists() else cls()

    def save(self, job: JobPaths) -> None:
        write_json(job.state, asdict(self))


def load_job(job_dir: Path) -> tuple[JobPaths, dict]:
    job = JobPaths(Path(job_dir))
    if not job.job.exists():
        raise UsageError(f"{job_dir} is not a training job folder (no job.json): start one with "
                         "`python -m pipeline train WORKSPACE --model NAME --job-dir DIR`.")
    return job, json.loads(job.job.read_text())


def running_pid(job: JobPaths) -> int | None:
    """The pid of the live training process of this job, if any."""
    try:
        pid, started = job.pid.read_text().split()
        pid = int(pid)
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    # A pid alone may have been reused by an unrelated process since; its start time may not.
    # A zombie (killed, not yet reaped by its parent) is not running either.
    state, start = _proc_stat(pid)
    return pid if start == started and state != "Z" else None


def process_start(pid: int) -> str:
    return _proc_stat(pid)[1]


def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time) from /proc; fields counted after the command name, which may hold spaces."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "?", "?"
    return fields[0], fields[19]


def claim_pid(job: JobPaths) -> None:
    job.pid.write_text(f"{os.getpid()} {process_start(os.getpid())}\n")


def start_detached(argv: list[str], job: JobPaths) -> int:
    """Run ``python -m pipeline ARGV`` in its own session so it outlives its parent (bot or shell)."""
    job.root.mkdir(parents=True, exist_ok=True)
    with job.log.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "pipeline", *argv], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=Path(__file__).resolve().parents[1])
    return process.pid


def request_stop(job: JobPaths) -> bool:
    """Ask the training process to checkpoint and exit; False if nothing is running."""
    job.stop_flag.touch()
    pid = running_pid(job)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    return True


def job_status(job: JobPaths) -> dict:
    events = read_events(job.events)
    last = {event["event"]: event for event in events}
    latest = events[-1] if events else None
    return {"job": str(job.root), "running": running_pid(job) is not None,
            "state": latest["event"] if latest else "created", "step": latest["step"] if latest else 0,
            "last_progress": last.get("progress"), "last_eval": last.get("eval"),
            "best": json.loads(job.best_json.read_text()) if job.best_json.exists() else None,
            "events": len(events), "last_event": latest}
