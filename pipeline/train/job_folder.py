"""A training job's folder: where each of its files lives, and the state a resume keeps.

The job folder is the whole truth about a job (config, checkpoints, events), so
a job started by the CLI or the bot can be resumed, watched or stopped by either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.files import write_json


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
    def load(cls, job: JobPaths) -> JobState:
        return cls(**json.loads(job.state.read_text())) if job.state.exists() else cls()

    def save(self, job: JobPaths) -> None:
        write_json(job.state, asdict(self))


def load_job(job_dir: Path) -> tuple[JobPaths, dict]:
    job = JobPaths(Path(job_dir))
    if not job.job.exists():
        raise UsageError(
            f"{job_dir} is not a training job folder (no job.json): start one with "
            "`python -m pipeline train WORKSPACE --model NAME --job-dir DIR`.",
            kind="not_a_job",
        )
    return job, json.loads(job.job.read_text())
