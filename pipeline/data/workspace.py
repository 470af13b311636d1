"""Where each step keeps its output inside one dataset's workspace.

Every path is managed here so that a user never types one; the layout follows the
Object Detection API's recommended tree (``data/label_map.pbtxt``, sharded records).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.samples import Sample, samples_from_json, samples_to_json
from pipeline.errors import WorkspaceError
from pipeline.files import write_json

INDEX_VERSION = 1


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def labels(self) -> Path:
        return self.root / "labels.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def label_map(self) -> Path:
        return self.data / "label_map.pbtxt"

    @property
    def preview(self) -> Path:
        return self.root / "preview.jpg"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def shard(self, split: str, index: int, count: int) -> Path:
        return self.data / f"{split}-{index:05d}-of-{count:05d}.tfrecord"

    def records(self, split: str) -> list[Path]:
        return sorted(self.data.glob(f"{split}-*-of-*.tfrecord"))

    def save_samples(self, samples: list[Sample]) -> None:
        write_json(self.index, {"version": INDEX_VERSION, "samples": samples_to_json(samples)})

    def load_samples(self) -> list[Sample]:
        payload = self.read_json(self.index, "inspect")
        return samples_from_json(payload["samples"])

    def read_json(self, path: Path, step: str):
        """Read a step's output, telling the user which step to run when it is missing."""
        if not path.exists():
            raise WorkspaceError(
                f"{path.name} is missing in the workspace {self.root}: run "
                f"`python -m pipeline {step}` on it first (or `prepare`, which runs every step).",
                kind="step_missing",
                details={"file": path.name, "step": step},
            )
        return json.loads(path.read_text(encoding="utf-8"))
