"""The process that owns a training job: started detached, found alive, asked to stop.

A job started by the CLI or the bot can be watched or stopped by either: its folder
holds the pid and the process start time, and that is all they share.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.files import PROJECT_ROOT
from pipeline.train.events import read_events
from pipeline.train.job_folder import JobPaths


def running_pid(job: JobPaths) -> int | None:
    """The pid of the live training process of this job, if any."""
    try:
        pid, started = job.pid.read_text().split()
        pid = int(pid)
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid, started) else None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs, and is the process that started at ``started`` (None: any).

    A pid alone may have been reused by an unrelated process since; its start time may not.
    A zombie (killed, not yet reaped by its parent) is not running either."""
    state, start = _proc_stat(pid)
    return state not in ("?", "Z") and started in (None, start)


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
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=PROJECT_ROOT,
        )
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
    return {
        "job": str(job.root),
        "running": running_pid(job) is not None,
        "state": latest["event"] if latest else "created",
        "step": latest["step"] if latest else 0,
        "last_progress": last.get("progress"),
        "last_eval": last.get("eval"),
        "best": json.loads(job.best_json.read_text()) if job.best_json.exists() else None,
        "events": len(events),
        "last_event": latest,
    }
