"""What every executor shares: a run (one submission of a job), its state, and the command it runs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.files import write_json
from pipeline.train.job_folder import JobPaths

# pending: accepted, waiting for resources (a cluster's queue); running; the rest are over.
ACTIVE_STATES = ("pending", "running")
OVER_STATES = ("succeeded", "failed", "stopped", "ended", "lost")


@dataclass(frozen=True)
class Run:
    """One submission of a job: which executor took it and its id there (local: the pid)."""

    executor: str
    id: str
    address: str | None = None  # the cluster's, for a CLI that finds the run from the job folder
    started: float = 0.0

    def save(self, job: JobPaths) -> None:
        write_json(run_file(job), asdict(self))

    @classmethod
    def load(cls, job: JobPaths) -> Run | None:
        path = run_file(job)
        return cls(**json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None


@dataclass(frozen=True)
class RunState:
    """What the executor knows of a run. ``ended``: over, outcome unknown (a local process; its
    events say how it ended); ``lost``: the executor no longer knows the run (a cluster restarted)."""

    state: str
    message: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def run_file(job: JobPaths) -> Path:
    return job.root / "run.json"
